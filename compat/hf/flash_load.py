"""A flash-attn that is installed but does not load: found once per process, then hidden as if not installed.

Installed (metadata and an import spec) is all that transformers' is_flash_attn_2_available() and compat's detector
see. Whether `import flash_attn` works shows only when its extension loads: a build for another torch dies with
"undefined symbol", a build that skipped CUDA with "No module named 'flash_attn_2_cuda'". On a CUDA machine
transformers 4.53 then fails to import Qwen2 at all, sdpa requested or not (its flash-attention utilities import
flash_attn whenever is_flash_attn_2_available()), 4.57/5.x fail a flash_attention_2 request with that error instead
of their own, and verl 0.4-0.6 die importing flash_attn.bert_padding (tests/verl/test_broken_flash_attn.py, with a
real flash-attn 2.7.4.post1 built without its CUDA extension).

`load_error()` imports flash_attn once, only in a process that has already imported torch (flash_attn imports torch;
setup() never does). Two patches ask it, from hooks that run after torch: flash_attn_hide.broken, right before
transformers' modeling_flash_attention_utils runs, which where it fails puts None at sys.modules['flash_attn'] (then
`import flash_attn` raises ModuleNotFoundError and importlib.util.find_spec returns None, exactly as when it is not
installed, so transformers takes its no-flash-attn path, which compat already serves); and verl_padding.bert_padding,
when verl is imported, which then serves flash_attn.bert_padding as where flash-attn is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import threading
from typing import Optional

log = logging.getLogger("compat")
NAME = "flash_attn"
_lock = threading.Lock()
_error: Optional[str] = None  # None: not checked yet; "": it loads; else why it does not


def installed() -> bool:
    """flash_attn has an import spec (a real install), whether or not compat has hidden it since."""
    if sys.modules.get(NAME, False) is None:   # hidden (by compat, or by whoever put None there)
        return _error is not None and _error != ""
    try:
        return importlib.util.find_spec(NAME) is not None
    except (ImportError, ValueError):
        return False


def load_error() -> Optional[str]:
    """Why the installed flash_attn does not import ("" when it does); None when it is not installed or torch is not
    imported in this process yet (then nothing is checked: importing flash_attn would import torch)."""
    global _error
    with _lock:
        if _error is not None:
            return _error
        if "torch" not in sys.modules or not installed():
            return None
        if sys.modules.get(NAME) is not None:
            _error = ""                      # already imported by the user's code: it loads
            return _error
        try:
            importlib.import_module(NAME)
        except Exception as exc:             # ImportError (undefined symbol, no extension), OSError (a CUDA lib)
            first = (str(exc).strip().splitlines() or [""])[0]
            _error = f"{type(exc).__name__}: {first[:240]}"
        else:
            _error = ""
        return _error


def hidden() -> str:
    """Why flash_attn is hidden in this process ("" when it is not)."""
    if sys.modules.get(NAME, False) is None and _error:
        return _error
    return ""


def why_hide_is_needless() -> str:
    """Patch.needless_check of flash_attn_hide.broken: "" where flash-attn is installed, does not load, not hidden."""
    if sys.modules.get(NAME, False) is None:
        return "flash_attn is already hidden in this process"
    if not installed():
        return "flash-attn is not installed"
    err = load_error()
    if err is None:
        return "flash-attn is installed; whether it loads is checked once torch is imported"
    return "" if err else "flash-attn is installed and loads"


def why_stand_in_is_needless() -> str:
    """Patch.needless_check of verl_padding.bert_padding: "" where flash-attn is not installed, or does not load."""
    if sys.modules.get(NAME, False) is None or not installed():
        return ""
    err = load_error()
    if err:
        return ""
    if err is None:
        return "flash_attn is installed: its own flash_attn.bert_padding serves (whether it loads is checked once " \
               "torch is imported)"
    return "flash_attn is installed and loads: its own flash_attn.bert_padding serves"


def hide(original: object) -> None:
    """The hide patches' make(): the value for sys.modules['flash_attn'] (None), with one warning line. transformers
    5.x caches is_flash_attn_*_available() (lru_cache); those caches are cleared so its next answer sees the hide."""
    from ..detect.software import installed_version

    log.warning("compat: flash-attn %s is installed but does not load here (%s); compat hides it in this process, so "
                "transformers and verl run without it (sdpa). For FlashAttention-2, install a flash-attn built for "
                "this torch (`python -m compat plan`); disable with COMPAT_DISABLE_PATCHES=flash_attn_hide",
                installed_version("flash-attn") or "?", _error)
    utils = sys.modules.get("transformers.utils.import_utils")
    for name in dir(utils) if utils is not None else ():
        clear = getattr(getattr(utils, name, None), "cache_clear", None)
        if name.startswith("is_flash_attn") and callable(clear):
            clear()
    return None


def reset_for_tests() -> None:
    global _error
    with _lock:
        _error = None
