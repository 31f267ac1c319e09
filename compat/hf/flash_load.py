"""A flash-attn that is installed but does not load: found once per process, then hidden as if not installed.

Installed (metadata and an import spec) is all that transformers' is_flash_attn_2_available() and compat's detector
see. Whether `import flash_attn` works shows only when its extension loads: a build for another torch dies with
"undefined symbol", a build that skipped CUDA with "No module named 'flash_attn_2_cuda'". On a CUDA machine
transformers 4.53 then fails to import Qwen2 at all, sdpa requested or not (modeling_flash_attention_utils imports
flash_attn in its body whenever is_flash_attn_2_available()), 4.55 fails the first forward of a flash_attention_2
model, 4.57/5.x fail the request at load, and verl 0.4-0.6 die importing flash_attn.bert_padding
(tests/verl/test_broken_flash_attn.py, with a real flash-attn 2.7.4.post1 built without its CUDA extension).

`load_error()` imports flash_attn once per process, only where torch is imported (flash_attn imports torch; setup(),
doctor and `compat patches` never do). It is asked only where transformers or verl would import flash_attn next:
- right before transformers' modeling_flash_attention_utils runs, for transformers below 4.54 (which imports it
  there: compat/data/flash_attn.toml [transformers_import]);
- at a flash_attention_2 request, for 4.54 and later, which import it only to use it; compat sees the request through
  its transformers_attn redirect (compat/hf/attention.py), so with that set disabled a 4.54+ process is not checked
  (transformers then fails on the flash_attn import, as without compat);
- when verl is imported, for verl_padding.bert_padding (verl 0.4-0.6 import flash_attn.bert_padding next).
Where the import fails, the flash_attn_hide set puts None at sys.modules['flash_attn']: `import flash_attn` then
raises ModuleNotFoundError and importlib.util.find_spec returns None, exactly as when it is not installed, so
transformers takes its no-flash-attn path, which compat already serves. A process that never reaches those points
never imports flash_attn because of compat.
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
_lock = threading.RLock()
_error: Optional[str] = None       # None: not checked yet; "": it loads; else why it does not
_requested = False                 # a flash_attention_2 request was seen in this process


def installed() -> bool:
    """flash_attn has an import spec (a real install), whether or not compat has hidden it since."""
    if sys.modules.get(NAME, False) is None:   # hidden (by compat, or by whoever put None there)
        return bool(_error)
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


def _eager_transformers() -> bool:
    """Whether the installed transformers imports flash_attn in modeling_flash_attention_utils' body."""
    from ..detect.software import installed_version
    from ..knowledge import transformers_imports_flash_attn_eagerly

    tf = installed_version("transformers")
    return tf is not None and transformers_imports_flash_attn_eagerly(tf)


def why_hide_is_needless() -> str:
    """Patch.needless_check of flash_attn_hide.broken: "" where flash-attn is installed, does not load, not hidden,
    and transformers is about to import it (its flash-attention utilities below 4.54, a flash_attention_2 request)."""
    if sys.modules.get(NAME, False) is None:
        return "flash_attn is already hidden in this process"
    if not installed():
        return "flash-attn is not installed"
    if _error is None and not _requested and not _eager_transformers():
        return ("flash-attn is installed; transformers imports it only to use it, so whether it loads is checked "
                "at a flash_attention_2 request")
    err = load_error()   # below 4.54 `import transformers` has imported torch before its flash-attention utils
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


def on_flash_attention_2_request() -> None:
    """transformers 4.54+ import flash_attn only to use it: a flash_attention_2 request is where to check (the
    redirect in compat/hf/attention.py calls this before asking the verdict). Applies flash_attn_hide through the
    engine (kill switch, ledger, revert) where flash-attn does not load."""
    global _requested
    if sys.modules.get(NAME, False) is None or not installed():
        return
    _requested = True
    load_error()                    # outside the engine's lock: the import of flash_attn takes its own locks
    if not _error:
        return
    from ..patches import engine

    engine.apply_named("flash_attn_hide")   # under setup()'s config: kill switch, sets, explicit


def _clear_transformers_caches() -> None:
    """transformers 5.x caches is_flash_attn_*_available() (lru_cache): cleared when the answer changes."""
    utils = sys.modules.get("transformers.utils.import_utils")
    for name in dir(utils) if utils is not None else ():
        clear = getattr(getattr(utils, name, None), "cache_clear", None)
        if name.startswith("is_flash_attn") and callable(clear):
            clear()


def hide(original: object) -> None:
    """flash_attn_hide's make(): the value for sys.modules['flash_attn'] (None), with one warning line."""
    from ..detect.software import installed_version

    log.warning("compat: flash-attn %s is installed but does not load here (%s); compat hides it in this process, so "
                "transformers and verl run without it (sdpa). For FlashAttention-2, install a flash-attn built for "
                "this torch (`python -m compat plan`); disable with COMPAT_DISABLE_PATCHES=flash_attn_hide",
                installed_version("flash-attn") or "?", _error)
    _clear_transformers_caches()
    return None


def unhidden() -> None:
    """flash_attn_hide's undone(): after revert() removed the entry, transformers' cached answers go too."""
    _clear_transformers_caches()
