"""Real `compat install` into throwaway venvs (tox -e install-e2e; needs uv, its cache or the network, ~8 GB of disk).

Both installers, from STOCK venvs (`python3.11 -m venv`: its bundled pip 23.x, which lacks --uploaded-prior-to), for
vLLM 0.7.2 (torch 2.5.1, triton 3.1) and 0.8.5 (torch 2.6.0, triton 3.2): the matrix envs vllm072/vllm085 resolve
the same sets with the same cutoff, so uv links them from its warm cache. After each install the venv builds a
fused-MoE layer on CPU (the first real step that goes through triton's build path, which needs setuptools).
Each new check is also shown to fail without its fix: the first-use check against a set without also_install, and
pip's cutoff without the pip upgrade. Skipped unless COMPAT_E2E=1 (the tox env sets it).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from compat.detect import detect
from compat.install import executor, planner

ROOT = Path(__file__).resolve().parents[1]
HW = ROOT / "tests" / "fixtures" / "hardware"
V100 = HW / "v100-sxm2.toml"       # sm70, driver 535: the default torch wheel fits; compat picks XFORMERS
A100 = HW / "a100-sxm4.toml"       # sm80: compat picks FLASH_ATTN (vLLM's bundled kernels); flash-attn left out
RELEASE = "0.7.2"
SETS = [("0.7.2", V100), ("0.8.5", A100)]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("COMPAT_E2E") != "1", reason="needs e2e: real installs, run `tox -e install-e2e`"),
    pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv: no uv on PATH"),
]

# The smallest real first-use step that needs setuptools through triton's build path, on CPU: vLLM's FusedMoE
# layer constructed in a one-rank gloo world, with the fused_moe Triton kernel module imported (stand-in for a
# first MoE forward, which needs a GPU). Without setuptools the import of the fused_moe package already fails.
FUSED_MOE = """
import importlib, socket, torch
from vllm.distributed import parallel_state as ps
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
ps.init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                distributed_init_method=f"tcp://127.0.0.1:{port}")
ps.initialize_model_parallel(1, 1, backend="gloo")
from vllm.model_executor.layers.fused_moe import FusedMoE
kernels = importlib.import_module("vllm.model_executor.layers.fused_moe.fused_moe")
import triton.runtime.build
layer = FusedMoE(num_experts=4, top_k=2, hidden_size=64, intermediate_size=128, params_dtype=torch.float16,
                 prefix="moe.0")
print("FUSED-MOE", type(kernels.fused_moe_kernel).__name__, tuple(layer.w13_weight.shape))
"""


def _uv_cache_at_import() -> str:
    """uv's cache dir as the tox env gives it, read before conftest points XDG_CACHE_HOME (which uv also honours)
    into each test's tmp dir: without this every install here started from a cold, private uv cache (5-6 GB each,
    never removed), and CI ran out of disk on the fourth install."""
    if shutil.which("uv") is None:
        return ""
    out = subprocess.run(["uv", "cache", "dir"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else ""


UV_CACHE = _uv_cache_at_import()


@pytest.fixture(autouse=True)
def _shared_uv_cache(monkeypatch, tmp_path):
    """Every uv call (the tests' own and compat's) uses the shared cache; compat's own cache (snapshots) stays
    per test and is removed after it."""
    if UV_CACHE:
        monkeypatch.setenv("UV_CACHE_DIR", UV_CACHE)
    yield
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


@pytest.fixture
def venv_dir(tmp_path):
    """The test's venv (6-9 GB once vLLM is in): removed whatever the outcome, so a failed test does not leave the
    next one without disk (pytest keeps failed tests' tmp dirs)."""
    path = tmp_path / "venv"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _disk(path: Path) -> str:
    """Free disk where the venvs live, for failure messages: a full disk fails an install in unrelated-looking ways."""
    return f"[{shutil.disk_usage(path).free / 2**30:.1f} GiB free under {path}]"


def _base_python() -> str:
    """The interpreter the tox env was made from: a real CPython whose `-m venv` makes a stock venv."""
    return getattr(sys, "_base_executable", sys.executable)


def _stock_venv(path: Path) -> Path:
    subprocess.run([_base_python(), "-m", "venv", str(path)], check=True, timeout=300)
    return path / "bin" / "python"


def _uv_venv(path: Path) -> Path:
    subprocess.run(["uv", "venv", "-q", "--python", _base_python(), str(path)], check=True)
    return path / "bin" / "python"


def _freeze(python: Path) -> list:
    out = subprocess.run(["uv", "pip", "freeze", "--python", str(python)], check=True, capture_output=True, text=True)
    return sorted(out.stdout.split())


def _pip_version(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import pip; print(pip.__version__)"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _clean_env(**extra: str) -> dict:
    """This box's pip configuration adds local file indexes (no upload times: --uploaded-prior-to cannot filter
    them, so pip would take a transformers newer than the cutoff) and a global constraints file; pip resolves from
    the package index alone, as on a user's machine, and uv never reads pip's configuration anyway."""
    env = {k: v for k, v in os.environ.items() if not (k.startswith("PIP_") and k not in ("PIP_CERT",
                                                                                             "PIP_DEFAULT_TIMEOUT"))}
    # no pip cache: a torch family is ~3 GB of wheels and the shared box's disk is tight; uv keeps its own cache
    env.update(PYTHONPATH=str(ROOT), PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_CACHE_DIR="1", **extra)
    return env


def _compat(*args, env=None, timeout=1800):
    return subprocess.run([sys.executable, "-m", "compat", *args], capture_output=True, text=True,
                          env=_clean_env(**(env or {})), timeout=timeout, cwd=ROOT)


def _fused_moe(python: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-c", FUSED_MOE], capture_output=True, text=True, timeout=900,
                          env=_clean_env())


@pytest.mark.parametrize("installer", ["uv", "pip"])
@pytest.mark.parametrize("release, fixture", SETS, ids=[r for r, _ in SETS])
def test_install_from_a_stock_venv_then_a_fused_moe_layer_builds(venv_dir, installer, release, fixture):
    py = _stock_venv(venv_dir)
    assert int(_pip_version(py).split(".")[0]) < 26          # the stock pip: no --uploaded-prior-to
    common = [f"vllm=={release}", "--hardware", str(fixture), "--python", str(py), "--installer", installer,
              "--no-flash-attn"]
    dry = _compat("install", *common)
    assert dry.returncode == 0, _disk(venv_dir) + dry.stderr[-3000:]
    assert "resolution matches the plan" in dry.stderr, dry.stderr[-3000:]
    assert "vllm" not in " ".join(_freeze(py))                                                  # changed nothing
    out = _compat("install", *common, "--yes")
    assert out.returncode == 0, _disk(venv_dir) + out.stderr[-4000:]
    assert "ok first use" in out.stderr and "environment matches the plan" in out.stderr, out.stderr[-3000:]
    frozen = _freeze(py)
    assert f"vllm=={release}" in frozen and any(x.startswith("setuptools==") for x in frozen)
    moe = _fused_moe(py)
    assert moe.returncode == 0 and "FUSED-MOE JITFunction" in moe.stdout, _disk(venv_dir) + moe.stderr[-3000:]
    if installer == "uv" and release == RELEASE:  # doctor inside that venv (compat from the source tree)
        doc = subprocess.run([str(py), "-m", "compat", "doctor", "--json", "--hardware", str(fixture)],
                             capture_output=True, text=True, env=_clean_env(), timeout=600)
        report = json.loads(doc.stdout)
        assert report["software"]["packages"]["vllm"] == release
        assert not [f for f in report["findings"] if f["severity"] == "error"], report["findings"]


def test_first_use_check_fails_without_also_install_and_restores(venv_dir):
    """Without its fix (the plan's also_install) the set installs, matches the plan by version, and the first-use
    check catches the missing setuptools (a uv venv has none); the snapshot comes back exactly."""
    py = _uv_venv(venv_dir)
    subprocess.run(["uv", "pip", "install", "-q", "--python", str(py), "six==1.16.0"], check=True)
    before = _freeze(py)
    plan = planner.make_plan(detect(str(V100)), f"vllm=={RELEASE}", python=f"{sys.version_info[0]}.{sys.version_info[1]}")
    assert plan.also_install == ("setuptools",)
    lines: list = []
    with pytest.raises(executor.InstallFailed) as exc:
        executor.execute(replace(plan, also_install=()), executor.probe(str(py)), "uv", True, str(V100),
                         progress=lines.append)
    msg = str(exc.value)
    assert "fails on first use" in msg and "missing module 'setuptools'" in msg and "restored to the snapshot" in msg
    assert any("ok compat install" in x or "ok install vLLM" in x for x in lines), lines   # it did install first
    assert _freeze(py) == before


def test_pip_cutoff_without_the_pip_upgrade_fails_and_changes_nothing(venv_dir):
    """Without its fix (upgrading the stock pip first) pip rejects --uploaded-prior-to; nothing is changed."""
    py = _stock_venv(venv_dir)
    target = executor.probe(str(py))
    before = _freeze(py)
    plan = planner.make_plan(detect(str(V100)), f"vllm=={RELEASE}", python=target.version)
    with pytest.raises(executor.InstallFailed) as exc:
        executor.execute(plan, replace(target, pip="26.0"), "pip", True, str(V100), progress=lambda s: None)
    assert "no such option: --uploaded-prior-to" in str(exc.value) and _freeze(py) == before


def test_impossible_pin_fails_before_changing_anything(tmp_path, venv_dir):
    py = _uv_venv(venv_dir)
    subprocess.run(["uv", "pip", "install", "-q", "--python", str(py), "six==1.16.0"], check=True)
    before = _freeze(py)
    (tmp_path / "c.txt").write_text("torch==0.0.1\n")                     # no such torch: resolution must fail
    out = _compat("install", f"vllm=={RELEASE}", "--yes", "--hardware", str(V100), "--python", str(py),
                  "--installer", "uv", env={"UV_CONSTRAINT": str(tmp_path / "c.txt")})
    assert out.returncode == 1, out.stderr
    assert "restored" in out.stderr
    assert _freeze(py) == before


def test_failure_after_installing_restores_the_snapshot(tmp_path, venv_dir):
    """uv installs the whole set, then reports failure: compat must put the venv back exactly."""
    py = _uv_venv(venv_dir)
    subprocess.run(["uv", "pip", "install", "-q", "--python", str(py), "six==1.16.0", "packaging==23.2"], check=True)
    before = _freeze(py)
    real_uv = shutil.which("uv")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "uv"
    shim.write_text("#!/bin/sh\n"
                    f"\"{real_uv}\" \"$@\" || exit $?\n"
                    "case \" $* \" in *\" --dry-run \"*) exit 0;; *\" vllm==\"*) echo 'shim: failing on purpose' >&2;"
                    " exit 3;; esac\n")
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    out = _compat("install", f"vllm=={RELEASE}", "--yes", "--hardware", str(V100), "--python", str(py),
                  "--installer", "uv", env={"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    assert out.returncode == 1, out.stderr[-3000:]
    assert "failing on purpose" in out.stderr and "restored to the snapshot" in out.stderr, \
        _disk(tmp_path) + out.stderr[-3000:]
    assert _freeze(py) == before
