"""The vLLM plugin entry point and the never-raise setup wrapper (no vLLM needed; tests/vllm/test_plugin.py
runs the real vLLM's load_general_plugins())."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_python

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hardware"


@pytest.fixture(autouse=True)
def _no_compat_env(monkeypatch):
    for var in ("COMPAT_HARDWARE", "COMPAT_AUTOLOAD", "COMPAT_RAY_EXPORTED", "COMPAT_DEBUG"):
        monkeypatch.delenv(var, raising=False)


_py = run_python


def test_pyproject_declares_the_general_plugin_entry_point():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    eps = data["project"]["entry-points"]["vllm.general_plugins"]
    assert eps == {"compat": "compat.integrations.vllm_plugin:register"}
    from compat.integrations import vllm_plugin
    assert callable(vllm_plugin.register)


def test_register_sets_compat_up_and_is_reentrant():
    proc = _py("import os, compat\n"
               "from compat.integrations.vllm_plugin import register\n"
               "assert compat.current() is None\n"
               "a = register(); b = register()\n"
               "assert a is not None and a is b is compat.current(), (a, b)\n"
               "print(os.environ.get('NCCL_P2P_DISABLE'))",
               env={"COMPAT_HARDWARE": str(FIXTURES / "rtx4090-old-driver.toml")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"          # the profile's env reached this process


def test_register_and_import_stay_light():
    proc = _py("import sys\nfrom compat.integrations import vllm_plugin, autoload, shell, verl, ray\n"
               "vllm_plugin.register()\n"
               "bad = [m for m in ('torch', 'vllm', 'ray', 'numpy', 'transformers') if m in sys.modules]\n"
               "assert not bad, bad")
    assert proc.returncode == 0, proc.stderr


def test_register_never_raises(capsys, monkeypatch):
    import compat
    from compat.integrations import vllm_plugin

    def boom(*a, **k):
        raise RuntimeError("detector exploded\nsecond line")

    monkeypatch.setattr(compat, "setup", boom)
    assert vllm_plugin.register() is None
    err = capsys.readouterr().err
    assert err == "compat: warning: setup() from the vLLM plugin failed: RuntimeError: detector exploded second line\n"


def test_debug_shows_the_traceback(capsys, monkeypatch):
    import compat
    from compat.integrations import safe_setup

    monkeypatch.setenv("COMPAT_DEBUG", "1")
    monkeypatch.setattr(compat, "setup", lambda: 1 / 0)
    assert safe_setup("test") is None
    assert "Traceback" in capsys.readouterr().err


def test_keyboard_interrupt_is_not_swallowed():
    from compat.integrations import safe_setup

    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        safe_setup("test", interrupt)
