from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hardware"
SHARED = ROOT.parent / "shared" / "hardware"

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))


def hardware_fixtures():
    """Our copies, plus any fixture added to ../shared/hardware since (tests must pass without it)."""
    files = {p.name: p for p in FIXTURES.glob("*.toml")}
    if SHARED.is_dir():
        for p in SHARED.glob("*.toml"):
            files.setdefault(p.name, p)
    return [files[k] for k in sorted(files)]


@pytest.fixture(autouse=True)
def _isolated_compat(monkeypatch, tmp_path):
    """Each test starts with compat's caches empty and without the user's compat env vars."""
    for var in ("COMPAT_PROFILE", "COMPAT_PROFILE_PATH", "COMPAT_DISABLE_PATCHES", "COMPAT_HIDDEN_STATES",
                "COMPAT_FP8", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "VLLM_ATTENTION_BACKEND",
                "NCCL_P2P_DISABLE", "NCCL_IB_DISABLE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    import compat
    import compat.detect
    compat.detect.clear_cache()
    yield
    compat.revert()
    compat.detect.clear_cache()


def with_packages(tmp_path, fixture: str, **packages: str):
    """A copy of a hardware fixture with an explicit [packages] table (empty = nothing installed), so a test's
    expectations do not depend on which env (py, vllm072, ...) runs it."""
    src = FIXTURES / (fixture if fixture.endswith(".toml") else f"{fixture}.toml")
    body = "".join(f'"{k.replace("_", "-")}" = "{v}"\n' for k, v in packages.items())
    out = tmp_path / f"{src.stem}-pk.toml"
    out.write_text(src.read_text() + "\n[packages]\n" + body)
    return out
