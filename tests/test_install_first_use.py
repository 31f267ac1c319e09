"""The post-install first-use check (compat/install/first_use.py) on real interpreters: this one (no vLLM in the
quick env) and a throwaway venv. The check against a real vLLM env missing setuptools, with the restore, is in
tests/test_install_e2e.py (tox -e install-e2e)."""

from __future__ import annotations

import subprocess
import sys

from compat._toml import load_data
from compat.install import first_use


def test_every_entry_cites_a_source_or_reason():
    t = load_data("first_use")
    rows = [t[k] for k in ("vllm", "triton_build", "torch_cuda", "flash_attn")] + list(t["backend"].values())
    assert all((r.get("source") or r.get("reason") or "").strip() for r in rows)


def test_checks_follow_the_backend_the_plan_and_the_gpu():
    names = [c.name for c in first_use.checks("FLASHINFER_VLLM_V1", flash_attn=True, gpu=True)]
    assert names == ["import vllm", "triton build path (vLLM's fused_moe kernels)", "torch CUDA libraries",
                     "attention backend FLASHINFER_VLLM_V1", "flash-attn"]
    (backend,) = [c for c in first_use.checks("FLASHINFER_VLLM_V1", False, False) if "backend" in c.name]
    assert backend.any_of == ("flashinfer",)
    assert [c.name for c in first_use.checks(None, False, False)] == ["import vllm",
                                                                    "triton build path (vLLM's fused_moe kernels)"]


def test_a_missing_module_fails_and_is_named(tmp_path):
    """A bare venv (no vllm, no triton, no setuptools): every import fails, each names the missing module."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "v")], check=True)
    failures = first_use.run(str(tmp_path / "v" / "bin" / "python"), first_use.checks("XFORMERS", False, False))
    assert [(f.check, f.missing) for f in failures] == [
        ("import vllm", "vllm"), ("triton build path (vLLM's fused_moe kernels)", "triton"),
        ("attention backend XFORMERS", "xformers")]
    assert "missing module 'vllm'" in failures[0].describe()


def test_any_of_passes_when_one_module_imports():
    ok = first_use.Check("stdlib", ("compat_no_such_module", "json"), "test")
    bad = first_use.Check("absent", ("compat_no_such_module",), "test")
    assert first_use.run(sys.executable, [ok]) == []
    (f,) = first_use.run(sys.executable, [ok, bad])
    assert f.check == "absent" and f.missing == "compat_no_such_module"


def test_an_interpreter_that_dies_is_a_failure_not_a_pass(tmp_path):
    assert first_use.run(str(tmp_path / "nope"), first_use.checks(None, False, False))[0].check == "first-use check"
