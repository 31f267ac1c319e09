"""Opt-in autoload: importing this module runs compat.setup() in the current interpreter.

compat-autoload.pth (installed at the root of site-packages by the wheel) imports this module at interpreter start
only when COMPAT_AUTOLOAD=1; with the variable unset the .pth line costs one dict lookup and imports nothing.
Any failure, here or while importing compat, becomes one warning line on stderr: interpreter start never fails.
In a venv CPython's site.py processes site-packages twice (3.11 site.py: venv() and main() both call
addsitepackages; known_paths dedups sys.path, not .pth lines), so the .pth guards itself with sys._compat_autoload.
Use it for processes neither vLLM's plugin mechanism nor Ray reaches (vLLM 0.5.4 workers, torchrun ranks, ...).
"""

from __future__ import annotations

from . import safe_setup

PTH_NAME = "compat-autoload.pth"
ENV_VAR = "COMPAT_AUTOLOAD"

report = safe_setup("COMPAT_AUTOLOAD=1")
