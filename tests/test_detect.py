"""Detection: NVML (fake at the hardware edge), its failure modes, fallbacks, visibility, metadata scan."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import compat.detect as detect
from compat.detect import fallback, software, visible
from compat.detect.model import GPU
from helpers import FIXTURES
import fakenvml


@pytest.fixture
def driver_loaded(monkeypatch):
    """Pretend the kernel driver is loaded so detect_hardware() tries NVML (fake) and fallbacks."""
    monkeypatch.setattr(fallback, "proc_driver_version", lambda path=None: "535.104.05")
    monkeypatch.setattr(fallback, "smi_available", lambda: False)
    monkeypatch.setattr(fallback, "libcuda_driver_cuda", lambda: "12.2")


def use_nvml(monkeypatch, module):
    monkeypatch.setitem(sys.modules, "pynvml", module)


def test_nvml_reads_fixture_machine(monkeypatch, driver_loaded):
    use_nvml(monkeypatch, fakenvml.make(FIXTURES / "v100-sxm2.toml"))
    hw = detect.detect_hardware({"COMPAT_NO_CACHE": "1"})
    assert hw.source == "nvml" and hw.driver == "535.104.05" and hw.cuda == "12.2"
    assert len(hw.gpus) == 8 and {g.sm for g in hw.gpus} == {70}
    assert hw.gpus[3].uuid == "GPU-0003-fake" and hw.gpus[0].memory_mib == 32768


def test_nvml_library_missing_uses_fallbacks(monkeypatch, driver_loaded):
    use_nvml(monkeypatch, fakenvml.make(FIXTURES / "h100-sxm.toml", fail_init=fakenvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    monkeypatch.setattr(fallback, "smi_available", lambda: True)
    monkeypatch.setattr(fallback, "run_smi", lambda timeout: "0, NVIDIA H100 80GB HBM3, 9.0, 81559, GPU-abc, Disabled\n")
    hw = detect.detect_hardware({"COMPAT_NO_CACHE": "1"})
    assert hw.source == "nvidia-smi" and hw.gpus[0].sm == 90 and hw.cuda == "12.2"
    assert [f.id for f in hw.findings] == ["nvml-unavailable"]


def test_driver_library_mismatch_is_an_error_with_fix(monkeypatch, driver_loaded):
    use_nvml(monkeypatch, fakenvml.make(FIXTURES / "h100-sxm.toml",
                                        fail_init=fakenvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH))
    hw = detect.detect_hardware({"COMPAT_NO_CACHE": "1"})
    f = hw.findings[0]
    assert f.severity == "error" and "mismatch" in f.message and "reboot" in f.fix
    assert hw.driver == "535.104.05"  # still known from /proc


def test_no_devices(monkeypatch, driver_loaded):
    use_nvml(monkeypatch, fakenvml.make(FIXTURES / "cpu-only.toml") if False else _no_gpu_nvml())
    hw = detect.detect_hardware({"COMPAT_NO_CACHE": "1"})
    assert hw.gpus == () and hw.source == "nvml"


def _no_gpu_nvml():
    m = fakenvml.make(FIXTURES / "h100-sxm.toml")
    m.nvmlDeviceGetCount = lambda: 0
    return m


def test_gpu_lost_is_reported_and_skipped(monkeypatch, driver_loaded):
    use_nvml(monkeypatch, fakenvml.make(FIXTURES / "v100-sxm2.toml", lost=(2,)))
    hw = detect.detect_hardware({"COMPAT_NO_CACHE": "1"})
    assert len(hw.gpus) == 7
    assert [f.id for f in hw.findings] == ["gpu-unreadable"] and "GPU 2" in hw.findings[0].message


def test_nvml_hang_times_out(monkeypatch, driver_loaded):
    use_nvml(monkeypatch, fakenvml.make(FIXTURES / "h100-sxm.toml", hang_s=5))
    monkeypatch.setattr(detect, "PROBE_TIMEOUT_S", 0.2)
    hw = detect.detect_hardware({"COMPAT_NO_CACHE": "1"})
    assert any(f.id == "nvml-timeout" and f.severity == "error" for f in hw.findings)


def test_nvidia_smi_failure_degrades_to_unknown(monkeypatch, driver_loaded):
    use_nvml(monkeypatch, fakenvml.make(FIXTURES / "h100-sxm.toml", fail_init=fakenvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    monkeypatch.setattr(fallback, "smi_available", lambda: True)

    def hang(timeout):
        raise subprocess.TimeoutExpired("nvidia-smi", timeout)

    monkeypatch.setattr(fallback, "run_smi", hang)
    hw = detect.detect_hardware({"COMPAT_NO_CACHE": "1"})
    ids = [f.id for f in hw.findings]
    assert "smi-failed" in ids and "gpus-unknown" in ids and hw.gpus == ()


def test_mig_instances_listed(monkeypatch, driver_loaded):
    use_nvml(monkeypatch, fakenvml.make(FIXTURES / "a100-mig.toml",
                                        mig_children={0: [("NVIDIA A100-SXM4-40GB MIG 3g.20gb", 19968)]}))
    hw = detect.detect_hardware({"COMPAT_NO_CACHE": "1"})
    assert [g.uuid for g in hw.gpus] == ["MIG-0-0"] and hw.gpus[0].mig and hw.gpus[0].sm == 80


def test_cache_per_boot_and_driver(monkeypatch, driver_loaded, tmp_path):
    fake = fakenvml.make(FIXTURES / "h100-sxm.toml")
    use_nvml(monkeypatch, fake)
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    first = detect.detect_hardware(env)
    second = detect.detect_hardware(env)
    assert first.gpus == second.gpus and fake.calls.count("init") == 1
    monkeypatch.setattr(fallback, "proc_driver_version", lambda path=None: "550.54.15")  # driver upgraded
    detect.detect_hardware(env)
    assert fake.calls.count("init") == 2


def test_no_driver_skips_nvml(monkeypatch):
    monkeypatch.setattr(fallback, "proc_driver_version", lambda path=None: None)
    monkeypatch.setattr(fallback, "smi_available", lambda: False)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # importing it would fail
    assert detect.detect_hardware({}).source == "none"


def test_proc_version_parsing(tmp_path):
    p = tmp_path / "version"
    p.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
                 "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
    assert fallback.proc_driver_version(p) == "535.104.05"
    p.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build\n")
    assert fallback.proc_driver_version(p) == "580.159.04"
    assert fallback.proc_driver_version(tmp_path / "missing") is None


def test_smi_csv_parsing():
    gpus, bad = fallback.parse_smi_csv("0, Tesla V100-SXM2-32GB, 7.0, 32768, GPU-1, [N/A]\n"
                                       "1, NVIDIA A100-SXM4-40GB, 8.0, 40960, GPU-2, Enabled\n"
                                       "garbage line\n")
    assert [g.sm for g in gpus] == [70, 80] and gpus[1].mig and bad == ["garbage line"]


G = [GPU(i, "X", (8, 0), uuid=f"GPU-{i}aa") for i in range(4)]


@pytest.mark.parametrize("env,expect", [
    ({}, [0, 1, 2, 3]),
    ({"CUDA_VISIBLE_DEVICES": "2,0"}, [2, 0]),
    ({"CUDA_VISIBLE_DEVICES": ""}, []),
    ({"CUDA_VISIBLE_DEVICES": "1,7,2"}, [1]),           # CUDA stops at the first invalid entry
    ({"CUDA_VISIBLE_DEVICES": "GPU-3,GPU-1"}, [3, 1]),  # UUID prefixes
    ({"CUDA_VISIBLE_DEVICES": "-1"}, []),
    ({"NVIDIA_VISIBLE_DEVICES": "none"}, []),
    ({"NVIDIA_VISIBLE_DEVICES": "all"}, [0, 1, 2, 3]),
    ({"NVIDIA_VISIBLE_DEVICES": "1,3"}, [1, 3]),
    ({"NVIDIA_VISIBLE_DEVICES": "1,3", "CUDA_VISIBLE_DEVICES": "1"}, [3]),
    ({"NVIDIA_VISIBLE_DEVICES": ""}, [0, 1, 2, 3]),                 # empty = unset
    ({"CUDA_VISIBLE_DEVICES": "GPU-,GPU-2"}, []),                    # ambiguous prefix stops the list
])
def test_visible_devices(env, expect):
    got = visible.visible_gpus(G, env)
    assert [g.uuid for g in got] == [f"GPU-{i}aa" for i in expect]
    assert [g.index for g in got] == list(range(len(expect)))  # CUDA renumbers from 0


def test_detect_honours_cuda_visible_devices_on_fixture():
    env = detect.detect(str(FIXTURES / "mixed-a100-v100.toml"), {"CUDA_VISIBLE_DEVICES": "0,1"})
    assert {g.sm for g in env.hardware.gpus} == {80}


def test_software_scan_reads_dist_info_without_importing(tmp_path):
    site = tmp_path / "site"
    (site / "torch-2.5.1+cu124.dist-info").mkdir(parents=True)
    (site / "vllm-0.7.2.dist-info").mkdir()
    (site / "flash_attn-2.7.4.post1.dist-info").mkdir()
    (site / "nvidia_nccl_cu12-2.21.5.dist-info").mkdir()
    sw = software.detect_software([str(site)])
    assert sw.version("torch") == "2.5.1+cu124" and sw.torch_cuda == "12.4" and sw.torch_variant == "cu124"
    assert sw.version("flash-attn") == "2.7.4.post1" and sw.version("nvidia-nccl-cu12") == "2.21.5"


def test_torch_cuda_from_version_py_for_default_wheels(tmp_path):
    site = tmp_path / "site"
    (site / "torch-2.8.0.dist-info").mkdir(parents=True)
    (site / "torch").mkdir()
    (site / "torch" / "version.py").write_text("__version__ = '2.8.0'\ncuda: Optional[str] = '12.8'\n")
    sw = software.detect_software([str(site)])
    assert sw.torch_cuda == "12.8" and sw.torch_variant == "cu128"


BLOCK_HEAVY = textwrap.dedent("""
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "vllm", "numpy", "transformers", "ray"):
                raise ImportError(f"compat imported {name}")
    sys.meta_path.insert(0, Block())
""")


@pytest.mark.parametrize("fixture", ["h100-vllm0110.toml", "v100-torch211-cu130.toml", "cpu-only.toml"])
def test_setup_and_doctor_import_nothing_heavy(fixture):
    """Even when the machine has torch and vLLM (from the fixture's [packages]), setup() and doctor's checks
    must not import them: a finder that raises on any heavy import proves it (absence alone could be luck)."""
    code = BLOCK_HEAVY + textwrap.dedent(f"""
        import compat
        rep = compat.setup(hardware={str(FIXTURES / fixture)!r})
        rep.as_dict()   # runs doctor's checks and the patch statuses too
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
