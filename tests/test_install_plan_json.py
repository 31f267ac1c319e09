"""`plan --format json` always prints JSON (docs/json-contract.md): nothing fits -> exit 1 with error findings and
fixes; only bad usage / bad input is exit 2. Machines: the hardware fixtures of real boxes (P100 stands for the
GTX 1080 Ti case, both sm_6x; a T4 on driver 470)."""

from __future__ import annotations

import json

import pytest

from compat.cli import main
from helpers import FIXTURES

PLAN_KEYS = {"schema", "ok", "vllm", "vllm_date", "torch", "torch_variant", "torch_requirement", "torch_default_variant",
             "cuda", "flash_attn", "python", "profile", "gpus", "cutoff", "overrides", "also_install", "kernels", "requirements",
             "installer", "commands", "commands_by_installer", "explanations", "rejected", "findings"}


def _plan(capsys, *argv):
    rc = main(["plan", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("fixture, kind, fix", [
    ("p100.toml", "plan-gpu-too-old", "sm70"),
    ("t4-driver470.toml", "plan-driver-too-old", "upgrade the driver to >= 525.60.13"),
    ("cpu-only.toml", "plan-no-gpu", "NVIDIA GPU"),
    ("b200-driver535.toml", "plan-driver-too-old", "upgrade the NVIDIA driver"),
])
def test_nothing_fits_is_json_with_an_error_finding_and_exit_1(capsys, fixture, kind, fix):
    rc, out, _ = _plan(capsys, "--hardware", str(FIXTURES / fixture), "--format", "json")
    d = json.loads(out)
    assert rc == 1 and d["ok"] is False and set(d) == PLAN_KEYS
    assert d["vllm"] is None and d["commands"] == [] and d["commands_by_installer"] == {"uv": [], "pip": []}
    errors = [f for f in d["findings"] if f["severity"] == "error"]
    assert errors and errors[0]["id"] == kind and fix in errors[0]["fix"], errors


def test_t4_on_470_lists_every_release_it_tried(capsys):
    rc, out, _ = _plan(capsys, "--hardware", str(FIXTURES / "t4-driver470.toml"), "--format", "json")
    d = json.loads(out)
    assert rc == 1 and len(d["rejected"]) > 10 and all("driver" in r["why"] for r in d["rejected"])


def test_a_plan_has_the_same_keys_and_ok_true(capsys):
    rc, out, _ = _plan(capsys, "--hardware", str(FIXTURES / "h100-sxm.toml"), "vllm==0.8.5", "--format", "json")
    d = json.loads(out)
    assert rc == 0 and d["ok"] is True and set(d) == PLAN_KEYS
    assert d["requirements"] == ["vllm==0.8.5", "torch==2.6.0", "setuptools"] and d["also_install"] == ["setuptools"]


@pytest.mark.parametrize("fmt", ["text", "pip", "uv", "constraints"])
def test_nothing_fits_is_exit_1_in_every_format(capsys, fmt):
    rc, out, err = _plan(capsys, "--hardware", str(FIXTURES / "t4-driver470.toml"), "--format", fmt)
    assert rc == 1 and "Traceback" not in err
    assert "525.60.13" in (out if fmt == "text" else err)


def test_requested_release_that_cannot_run_here_is_exit_1(capsys):
    rc, out, _ = _plan(capsys, "--hardware", str(FIXTURES / "v100-sxm2.toml"), "vllm==0.20.0", "--format", "json")
    d = json.loads(out)
    assert rc == 1 and d["findings"][0]["severity"] == "error" and "refuses" in d["rejected"][0]["why"]


@pytest.mark.parametrize("argv", [["--hardware", "/nonexistent.toml"], ["vllm==9.9.9"], ["vllm==banana"],
                                  ["--python", "three"]])
def test_bad_input_is_exit_2_and_still_json(capsys, argv):
    rc, out, err = _plan(capsys, *argv, "--format", "json")
    d = json.loads(out)
    assert rc == 2 and d["ok"] is False and d["findings"][0]["id"] == "bad-input"
    assert len(err.strip().splitlines()) == 1


def test_install_on_a_machine_nothing_fits_is_exit_1(capsys, tmp_path):
    import subprocess
    import sys

    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    rc = main(["install", "--hardware", str(FIXTURES / "t4-driver470.toml"), "--python", str(venv / "bin" / "python"),
               "--installer", "pip"])
    err = capsys.readouterr().err
    assert rc == 1 and "525.60.13" in err and "Traceback" not in err
