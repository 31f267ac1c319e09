"""Shared test helpers (a plain module: `conftest` is ambiguous once tests/vllm/conftest.py is loaded too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hardware"
SHARED = ROOT.parent / "shared" / "hardware"


def hardware_fixtures():
    """Our copies, plus any fixture added to ../shared/hardware since (tests must pass without it)."""
    files = {p.name: p for p in FIXTURES.glob("*.toml")}
    if SHARED.is_dir():
        for p in SHARED.glob("*.toml"):
            files.setdefault(p.name, p)
    return [files[k] for k in sorted(files)]


def with_packages(tmp_path, fixture: str, **packages: str):
    """A copy of a hardware fixture with an explicit [packages] table (empty = nothing installed), so a test's
    expectations do not depend on which env (py, vllm072, ...) runs it."""
    src = FIXTURES / (fixture if fixture.endswith(".toml") else f"{fixture}.toml")
    body = "".join(f'"{k.replace("_", "-")}" = "{v}"\n' for k, v in packages.items())
    out = tmp_path / f"{src.stem}-pk.toml"
    out.write_text(src.read_text() + "\n[packages]\n" + body)
    return out


def run_python(code: str, env=None) -> subprocess.CompletedProcess:
    """`python -c code` with this checkout importable and none of the caller's COMPAT_/NCCL_/VLLM_ variables."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("COMPAT_", "NCCL_", "VLLM_"))}
    e["PYTHONPATH"] = str(ROOT)
    e.update(env or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120)


def load_tools_matrix(module_name: str = "compat_tools_matrix"):
    """tools/matrix.py (stdlib-only, not a package) loaded as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(module_name, ROOT / "tools" / "matrix.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
