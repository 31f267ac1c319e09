"""`python -m compat doctor`: findings on real-machine fixtures, JSON contract, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from compat.cli import main
from helpers import FIXTURES, ROOT, hardware_fixtures, with_packages


def doctor(capsys, *args):
    code = main(["doctor", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def findings(capsys, fixture, *extra):
    code, out, _ = doctor(capsys, "--json", "--hardware", str(FIXTURES / fixture), *extra)
    d = json.loads(out)
    return code, {f["id"]: f for f in d["findings"]}, d


@pytest.mark.parametrize("path", hardware_fixtures(), ids=lambda p: p.stem)
def test_json_contract_on_every_fixture(capsys, path):
    code, out, _ = doctor(capsys, "--json", "--hardware", str(path))
    d = json.loads(out)
    assert d["schema"] == 1
    assert set(d["profile"]) >= {"name", "dtype", "attention_backend", "hf_attn_implementation"}
    assert all(set(p) >= {"id", "status"} for p in d["patches"])
    for f in d["findings"]:
        assert set(f) == {"id", "severity", "message", "fix"} and f["severity"] in ("error", "warning", "info")
        if f["severity"] == "error":
            assert f["fix"], f
    assert code == (1 if any(f["severity"] == "error" for f in d["findings"]) else 0)


def test_text_report(capsys, tmp_path):
    code, out, _ = doctor(capsys, "--hardware", str(with_packages(tmp_path, "rtx4090-old-driver")))
    assert code == 0
    assert "2 x NVIDIA GeForce RTX 4090" in out and "Profile ada" in out and "NCCL_P2P_DISABLE=1" in out


def test_torch_cu130_on_v100_lacks_arch(capsys):
    code, f, d = findings(capsys, "v100-torch211-cu130.toml")
    assert code == 1 and "torch-lacks-arch" in f and "sm_70" in f["torch-lacks-arch"]["message"]
    assert "vllm-gpu-unsupported" in f  # vLLM 0.20 refused on V100


def test_driver_470_cannot_run_cu124_torch(capsys):
    code, f, _ = findings(capsys, "t4-driver470-torch-cu124.toml")
    assert code == 1 and "525.60.13" in f["driver-too-old-for-torch"]["fix"]
    assert "flash-attn-unsupported-gpu" in f


def test_driver_535_runs_cu124_torch(capsys, tmp_path):
    fx = tmp_path / "v100-cu124.toml"
    fx.write_text((FIXTURES / "v100-sxm2.toml").read_text() + '\n[packages]\ntorch = "2.5.1+cu124"\nvllm = "0.7.3"\n')
    code, f, _ = findings(capsys, str(fx))
    assert "driver-too-old-for-torch" not in f and "torch-lacks-arch" not in f


def test_torch25_on_b200_lacks_arch(capsys):
    code, f, _ = findings(capsys, "b200-torch25.toml")
    assert code == 1 and "torch-lacks-arch" in f


def test_b200_on_old_driver(capsys, tmp_path):
    code, f, _ = findings(capsys, str(with_packages(tmp_path, "b200-driver535")))
    assert code == 1 and "driver-too-old-for-gpu" in f


def test_vllm_torch_pin_mismatch(capsys, tmp_path):
    fx = tmp_path / "h100-mismatch.toml"
    fx.write_text((FIXTURES / "h100-sxm.toml").read_text() + '\n[packages]\ntorch = "2.9.0+cu128"\nvllm = "0.11.0"\n')
    code, f, _ = findings(capsys, str(fx))
    assert code == 1 and "2.8.0" in f["vllm-torch-mismatch"]["message"]


def test_matching_install_is_clean(capsys):
    code, f, d = findings(capsys, "h100-vllm0110.toml")
    assert code == 0, f
    assert d["profile"]["attention_backend"] == "FLASH_ATTN"
    assert d["profile"]["hf_attn_implementation"] == "flash_attention_2"


def test_flash_attn_built_for_other_torch(capsys, tmp_path):
    fx = tmp_path / "a100-fa.toml"
    fx.write_text((FIXTURES / "a100-sxm4.toml").read_text()
                  + '\n[packages]\ntorch = "2.5.1+cu124"\nflash-attn = "2.6.3+cu123torch2.4cxx11abiFALSE"\n')
    code, f, _ = findings(capsys, str(fx))
    assert code == 1 and "flash-attn-torch-mismatch" in f


@pytest.mark.parametrize("backend,expect", [("FLASH_ATTN", "attention-backend-unsupported"),
                                            ("NOT_A_BACKEND", "attention-backend-unknown")])
def test_user_attention_backend_checked(capsys, monkeypatch, tmp_path, backend, expect):
    monkeypatch.setenv("VLLM_ATTENTION_BACKEND", backend)
    fx = tmp_path / "v100-vllm.toml"
    fx.write_text((FIXTURES / "v100-sxm2.toml").read_text() + '\n[packages]\ntorch = "2.5.1+cu124"\nvllm = "0.7.2"\n')
    code, f, _ = findings(capsys, str(fx))
    assert code == 1 and expect in f


def test_unsupported_old_gpu_exit_1(capsys, tmp_path):
    code, f, _ = findings(capsys, str(with_packages(tmp_path, "p100")))
    assert code == 1 and f["gpu-unsupported"]["severity"] == "error"


def test_unknown_newer_gpu_warns(capsys, tmp_path):
    code, f, d = findings(capsys, str(with_packages(tmp_path, "future-gpu")))
    assert code == 0 and "gpu-unknown-newer" in f and d["profile"]["name"] == "blackwell"


@pytest.mark.parametrize("args,msg", [
    (["doctor", "--hardware", "/nonexistent.toml"], "does not exist"),
    (["doctor", "--profile", "nope"], "unknown profile"),
    (["doctor", "--bogus"], ""),
    (["frobnicate"], "unknown command"),
])
def test_bad_usage_exit_2(capsys, args, msg):
    assert main(args) == 2
    assert msg in capsys.readouterr().err


def test_malformed_hardware_file_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[driver\nversion=")
    assert main(["doctor", "--hardware", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not valid TOML" in err and "Traceback" not in err
    bad.write_text('[driver]\nversion = "535.1"\n[[gpus]]\nname = "X"\ncompute_capability = "eight"\n')
    assert main(["doctor", "--hardware", str(bad)]) == 2


def test_bad_version_in_fixture_exit_2(capsys, tmp_path):
    bad = tmp_path / "badver.toml"
    bad.write_text((FIXTURES / "h100-sxm.toml").read_text() + '\n[packages]\ntorch = "not-a-version"\nvllm = "0.7.2"\n')
    assert main(["doctor", "--hardware", str(bad)]) == 2
    assert "not a valid version" in capsys.readouterr().err


def test_module_entry_point_runs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "compat", "doctor", "--hardware", str(with_packages(tmp_path, "h100-sxm"))],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "Profile hopper" in r.stdout


@pytest.mark.parametrize("vllm,fixture,backend,via", [
    ("0.5.4", "v100-sxm2", "XFORMERS", "env:VLLM_ATTENTION_BACKEND"),
    ("0.10.1.1", "t4-driver470", "XFORMERS", "env:VLLM_ATTENTION_BACKEND"),
    ("0.10.2", "v100-sxm2", "FLEX_ATTENTION", "env:VLLM_ATTENTION_BACKEND"),
    ("0.11.0", "t4-driver470", "FLEX_ATTENTION", "env:VLLM_ATTENTION_BACKEND"),
    ("0.12.0", "v100-sxm2", "TRITON_ATTN", "env:VLLM_ATTENTION_BACKEND"),
    ("0.7.2", "a100-sxm4", "FLASH_ATTN", "env:VLLM_ATTENTION_BACKEND"),
    ("0.11.0", "h100-sxm", "FLASH_ATTN", "env:VLLM_ATTENTION_BACKEND"),
    ("0.11.0", "b200", "FLASH_ATTN", None),  # flashinfer is only an extra of 0.11.0: vLLM's own pick, nothing set
    ("0.11.0", "rtx5090", "FLASH_ATTN", "env:VLLM_ATTENTION_BACKEND"),  # sm120 column inside the Blackwell profile
])
def test_backend_named_and_set_the_way_the_release_reads_it(capsys, tmp_path, vllm, fixture, backend, via):
    fx = tmp_path / "fx.toml"
    fx.write_text((FIXTURES / f"{fixture}.toml").read_text() + f'\n[packages]\nvllm = "{vllm}"\n')
    _, _, d = findings(capsys, str(fx))
    assert (d["profile"]["attention_backend"], d["profile"]["attention_backend_via"]) == (backend, via)
    if via and via.startswith("env:"):
        assert d["env"]["VLLM_ATTENTION_BACKEND"] == backend
    if via is None:
        assert "VLLM_ATTENTION_BACKEND" not in d["env"]


def test_backend_passed_as_engine_option_where_the_env_var_is_gone(tmp_path):
    import compat

    fx = tmp_path / "fx.toml"
    fx.write_text((FIXTURES / "h100-sxm.toml").read_text() + '\n[packages]\nvllm = "0.33.0"\n')
    rep = compat.setup(hardware=str(fx), patches=False)
    b = rep.resolved.attention_backend
    assert b.option and not b.env_var
    assert compat.vllm_kwargs()[b.option] == "FLASH_ATTN"
    assert "VLLM_ATTENTION_BACKEND" not in dict(rep.env_set)


@pytest.mark.parametrize("body,msg", [
    ('[driver]\nversion = "535.104.05"\ncuda = 12.2\n', "quoted dotted version"),
    ('[driver]\nversion = "535.104.05"\ncuda = "12.2"\n[[gpus]]\nname = "X"\ncompute_capability = "8.0"\ncount = -1\n',
     "count = -1 is not a whole number >= 1"),
    ('[driver]\nversion = "535.104.05"\ncuda = "12.2"\n[packages]\nvllm = "banana"\n', "[packages]: vllm = 'banana'"),
])
def test_hardware_file_errors_name_the_file_and_field(capsys, tmp_path, body, msg):
    bad = tmp_path / "bad.toml"
    bad.write_text(body)
    assert main(["doctor", "--hardware", str(bad)]) == 2
    err = capsys.readouterr().err
    assert msg in err and str(bad) in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["doctor", "--bogus"], ["patches", "--vllm"], ["patches", "--vllm", "x.y"], ["plan", "--format", "xml"],
    ["plan", "vllm==notaversion"], ["install", "--bogus"], ["env", "--shell", "zsh"],
    ["verl-overrides", "--format", "nope"],
])
def test_every_command_reports_bad_usage_in_one_line_exit_2(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"compat {argv[0]}: error:"), err


def test_ci_runs_exactly_the_readme_test_command():
    import re

    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == blocks[1].strip().splitlines()
    assert "compat doctor" in blocks[0]
