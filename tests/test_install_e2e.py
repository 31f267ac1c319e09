"""Real `compat install` into throwaway venvs (tox -e install-e2e; needs uv and its cache or the network).

vLLM 0.7.2 + torch 2.5.1 is the cheapest real set here: the matrix env vllm072 resolves the same set with the
same cutoff, so a warm uv cache links it in about 30 s. Skipped unless COMPAT_E2E=1 (the tox env sets it).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HW = ROOT / "tests" / "fixtures" / "hardware"
FIXTURE = HW / "v100-sxm2.toml"     # sm70, driver 535: torch 2.5.1's default cu124 wheel fits, no flash-attn
RELEASE = "0.7.2"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("COMPAT_E2E") != "1", reason="needs e2e: real installs, run `tox -e install-e2e`"),
    pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv: no uv on PATH"),
]


def _venv(path: Path) -> Path:
    subprocess.run(["uv", "venv", "-q", "--python", f"{sys.version_info[0]}.{sys.version_info[1]}", str(path)],
                   check=True)
    return path / "bin" / "python"


def _freeze(python: Path) -> list:
    out = subprocess.run(["uv", "pip", "freeze", "--python", str(python)], check=True, capture_output=True, text=True)
    return sorted(out.stdout.split())


def _compat(*args, env=None, timeout=1500):
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "compat", *args], capture_output=True, text=True, env=e,
                          timeout=timeout, cwd=ROOT)


def test_install_then_doctor_in_that_venv_reports_no_mismatch(tmp_path):
    py = _venv(tmp_path / "venv")
    dry = _compat("install", f"vllm=={RELEASE}", "--hardware", str(FIXTURE), "--python", str(py), "--installer", "uv")
    assert dry.returncode == 0, dry.stderr
    assert "matches the plan" in dry.stderr and _freeze(py) == []          # the default is a dry run
    out = _compat("install", f"vllm=={RELEASE}", "--yes", "--hardware", str(FIXTURE), "--python", str(py),
                  "--installer", "uv")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resolution matches the plan" in out.stderr and "[1/1]" in out.stderr
    frozen = _freeze(py)
    assert f"vllm=={RELEASE}" in frozen and "torch==2.5.1" in frozen
    # doctor inside that venv (compat from the source tree on PYTHONPATH; hardware from the fixture)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    doc = subprocess.run([str(py), "-m", "compat", "doctor", "--json", "--hardware", str(FIXTURE)],
                         capture_output=True, text=True, env=env, timeout=300)
    report = json.loads(doc.stdout)
    assert report["software"]["packages"]["vllm"] == RELEASE
    ids = [f["id"] for f in report["findings"]]
    assert "plan-mismatch" not in ids, report["findings"]
    assert not [f for f in report["findings"] if f["severity"] == "error"], report["findings"]


def test_impossible_pin_fails_before_changing_anything(tmp_path):
    py = _venv(tmp_path / "venv")
    subprocess.run(["uv", "pip", "install", "-q", "--python", str(py), "six==1.16.0"], check=True)
    before = _freeze(py)
    (tmp_path / "c.txt").write_text("torch==0.0.1\n")                     # no such torch: resolution must fail
    out = _compat("install", f"vllm=={RELEASE}", "--yes", "--hardware", str(FIXTURE), "--python", str(py),
                  "--installer", "uv", env={"UV_CONSTRAINT": str(tmp_path / "c.txt")})
    assert out.returncode == 1, out.stderr
    assert "restored" in out.stderr
    assert _freeze(py) == before


def test_failure_after_installing_restores_the_snapshot(tmp_path):
    """uv installs the whole set, then reports failure: compat must put the venv back exactly."""
    py = _venv(tmp_path / "venv")
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
    out = _compat("install", f"vllm=={RELEASE}", "--yes", "--hardware", str(FIXTURE), "--python", str(py),
                  "--installer", "uv", env={"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    assert out.returncode == 1, out.stderr[-3000:]
    assert "failing on purpose" in out.stderr and "restored to the snapshot" in out.stderr
    assert _freeze(py) == before
