from __future__ import annotations

import sys
from pathlib import Path

import pytest

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))


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

