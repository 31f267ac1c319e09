"""A flash-attn that is installed but does not load (a build for another torch: "undefined symbol"; a build without
its CUDA extension: "No module named 'flash_attn_2_cuda'"), in each verl env with that env's own transformers and verl.

The flash-attn here is the real flash-attn 2.7.4.post1 source release, built the way its setup.py offers for
machines without CUDA (FLASH_ATTENTION_SKIP_CUDA_BUILD=TRUE, no prebuilt wheel fetched), into a folder put on
PYTHONPATH: installed for transformers (metadata + import spec), and `import flash_attn` fails on its extension.
The one stand-in is the hardware edge: torch.cuda.is_available is `lambda: True` in the child processes
(tests/verl/flash_driver.py, tests/verl/padding_driver.py), so transformers and verl take their CUDA branches.

Without compat: transformers 4.53 (verl 0.4.1) cannot import Qwen2 at all, sdpa requested or not; 4.55 (verl 0.5.0)
loads a flash_attention_2 model and fails its first forward (after asking on stdin for a hub kernel); 4.57 and 5.x
fail the request at load, on flash_attn_2_cuda; verl 0.4.0-0.6.1 die importing flash_attn.bert_padding. With
compat: flash_attn_hide.broken hides it from transformers (compat/hf/flash_load.py) and the model loads with sdpa;
verl_padding.bert_padding serves flash_attn.bert_padding and verl's workers import; each kill switch brings its
failure back.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import promises
from vhelp import FIXTURES, HERE, ROOT, clean_env, table_row, worker_modules

pytest.importorskip("torch")  # every verl env has it (COMPAT_PROMISES torch)

FLASH_ATTN = "flash-attn==2.7.4.post1"   # the release verl 0.4-0.6's install docs name
NO_EXTENSION = "No module named 'flash_attn_2_cuda'"
A100 = FIXTURES / "a100-sxm4.toml"      # a profile that would use flash-attn: the case that needs the hide


@pytest.fixture(scope="module")
def broken() -> Path:
    """flash-attn built from its source release without the CUDA extension, in a folder of its own."""
    uv = os.environ.get("COMPAT_UV") or shutil.which("uv")
    if uv is None:
        promises.need("uv", "no uv on PATH to build flash-attn")
    target = Path(tempfile.mkdtemp(prefix="brokenfa"))
    env = dict(os.environ, FLASH_ATTENTION_SKIP_CUDA_BUILD="TRUE", FLASH_ATTENTION_FORCE_BUILD="TRUE")
    proc = subprocess.run([str(uv), "pip", "install", "--python", sys.executable, "--target", str(target),
                           "--no-deps", "--no-build-isolation", FLASH_ATTN], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0 and (target / "flash_attn" / "__init__.py").exists(), proc.stderr[-3000:]
    yield target
    shutil.rmtree(target, ignore_errors=True)


def _run(script: str, args: list, broken: Path, **env: str) -> dict:
    out = Path(tempfile.mkdtemp(prefix="bfa")) / "out.json"
    # stdin closed: transformers 4.55 asks on stdin whether to fetch a hub kernel when flash_attn will not import
    proc = subprocess.run([sys.executable, str(HERE / script), str(out), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL,
                          env=clean_env(PYTHONPATH=f"{ROOT}:{HERE}:{broken}", COMPAT_HARDWARE=str(A100), **env))
    assert proc.returncode == 0 and out.exists(), proc.stderr[-3000:]
    res = json.loads(out.read_text())
    res["stderr"] = proc.stderr
    return res


def load(broken: Path, mode: str, attn: str, **env: str) -> dict:
    return _run("flash_driver.py", [mode, attn], broken, **env)


def transformers_version() -> str:
    from importlib.metadata import version

    return version("transformers")


def test_the_build_is_installed_and_does_not_load(broken):
    """The premise, in this env's own interpreter: metadata and spec say installed, the import fails."""
    code = ("import importlib.util, importlib.metadata as m, torch\n"
            "print(importlib.util.find_spec('flash_attn') is not None, m.version('flash_attn'))\n"
            "try:\n import flash_attn\nexcept ImportError as e:\n print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=clean_env(PYTHONPATH=str(broken)))
    assert proc.stdout.splitlines() == ["True 2.7.4.post1", NO_EXTENSION], proc.stdout + proc.stderr[-2000:]


def test_without_compat_transformers_fails_on_the_extension(broken):
    res = load(broken, "bare", "flash_attention_2")
    assert res["error"] and "flash_attn_2_cuda" in res["trace"], res
    sdpa = load(broken, "bare", "sdpa")
    from compat import versions

    if versions.parse(transformers_version()) < versions.parse("4.54"):   # 4.53: every Qwen2 import, sdpa too
        assert sdpa["error"] and "flash_attn_2_cuda" in sdpa["trace"], sdpa
    else:
        assert sdpa["error"] is None and sdpa["attn"] == "sdpa", sdpa


@pytest.mark.parametrize("attn", ["flash_attention_2", "sdpa"])
def test_with_compat_the_model_loads_with_sdpa(broken, attn):
    res = load(broken, "compat", attn)
    assert res["error"] is None, res.get("trace")
    assert res["attn"] == "sdpa"
    from compat import versions

    if attn == "sdpa" and versions.parse(transformers_version()) >= versions.parse("4.54"):
        # 4.54+ import flash_attn only to use it: nothing to check, nothing imported or hidden (and no cost)
        assert res["flash_attn_entry"] == "'absent'" and res["status"]["flash_attn_hide.broken"] == "not-applicable"
        return
    assert res["flash_attn_entry"] == "None"                                 # hidden: as if not installed
    assert res["status"]["flash_attn_hide.broken"] == "applied"
    assert "flash-attn 2.7.4.post1 is installed but does not load here" in res["stderr"]
    if attn == "flash_attention_2":   # the request is served with the profile's attention, and says why
        assert res["served"] and "is installed but does not load" in res["served"][0][2], res["served"]
    assert res["entry_after_revert"] == "'absent'"                           # revert() takes the hide back


def test_the_kill_switch_brings_the_transformers_failure_back(broken):
    res = load(broken, "compat", "flash_attention_2", COMPAT_DISABLE_PATCHES="flash_attn_hide.broken")
    assert res["error"] and "flash_attn_2_cuda" in res["trace"], res
    assert res["status"]["flash_attn_hide.broken"] == "disabled"


def _padding(broken: Path, mode: str, **env: str) -> dict:
    return _run("padding_driver.py", [mode, *worker_modules()], broken, **env)


def _imports_at_module_level() -> bool:
    return bool(table_row()["bert_padding_at_import"])


def test_verl_workers_with_a_broken_flash_attn(broken):
    """0.4.0-0.6.1: dead without compat, imported with it (the stand-in serves bert_padding); 0.7+: no import."""
    bare = _padding(broken, "bare")
    res = _padding(broken, "compat")
    if _imports_at_module_level():
        assert bare["error"] and NO_EXTENSION in bare["error"], bare
        assert res["error"] is None, res.get("trace")
        assert res["entry"] == "compat.hf.bert_padding"
        assert res["status"] == {"verl_padding.bert_padding": "applied"}
    else:
        assert bare["error"] is None and res["error"] is None, (bare, res)
        assert res["status"] == {"verl_padding.bert_padding": "not-applicable"}


def test_the_kill_switch_brings_the_verl_failure_back_with_a_broken_flash_attn(broken):
    """Without verl_padding.bert_padding the import reaches flash_attn again: its extension (or, where
    flash_attn_hide acted first, the hidden package)."""
    res = _padding(broken, "compat", COMPAT_DISABLE_PATCHES="verl_padding.bert_padding")
    if _imports_at_module_level():
        assert res["error"] and "flash_attn" in res["error"], res
        assert res["status"] == {"verl_padding.bert_padding": "disabled"}


def test_nothing_is_checked_in_a_process_without_torch(broken):
    """setup(), doctor and `compat patches` never import torch: there the set says it has not checked (not-applicable,
    "whether it loads is checked ..."), and neither torch nor flash_attn was imported."""
    code = ("import sys, compat\ncompat.setup()\nfrom compat.patches import engine\nfrom compat.hf import flash_load\n"
            "row = [r for r in engine.status() if r.id == 'flash_attn_hide.broken'][0]\n"
            "print(row.reason)\n"
            "print(row.status, '|', 'torch' in sys.modules, '|', flash_load._error)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=clean_env(PYTHONPATH=f"{ROOT}:{broken}", COMPAT_HARDWARE=str(A100)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    reason, state = proc.stdout.strip().splitlines()[-2:]
    assert state == "not-applicable | False | None", proc.stdout          # None: flash_attn was never imported
    assert "whether it loads is checked" in reason, reason


def test_doctor_says_so(broken):
    """`doctor --deep` (not setup(), not plain doctor) imports flash_attn in a subprocess where flash-attn and torch
    are installed (here: no GPU, so the GPU probe itself is skipped)."""
    def doctor(pythonpath: str) -> list:
        proc = subprocess.run([sys.executable, "-m", "compat", "doctor", "--json", "--deep"], capture_output=True,
                              text=True,
                              timeout=600, cwd=ROOT, env=clean_env(PYTHONPATH=pythonpath))
        assert proc.returncode in (0, 1), proc.stderr[-2000:]
        return [f for f in json.loads(proc.stdout)["findings"] if f["id"] == "flash-attn-does-not-load"]

    (found,) = doctor(f"{ROOT}:{broken}")
    assert found["severity"] == "warning" and NO_EXTENSION in found["message"], found
    assert "flash-attn 2.7.4.post1 is installed but does not load with torch" in found["message"]
    assert doctor(str(ROOT)) == []                      # not installed: nothing to say
