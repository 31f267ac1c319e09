"""flash_attention_2 requests served with the profile's HF attention where flash-attn cannot serve the machine.

transformers checks a requested attn_implementation in one place per release range, and both ways of asking
(a from_pretrained/from_config kwarg, or a config built with attn_implementation=...) pass through it:
- 4.44 - 4.53: the classmethod `PreTrainedModel._autoset_attn_implementation(config, ...)`, called by
  from_pretrained, _from_config and __init__ (transformers/modeling_utils.py). It raises "FlashAttention2 has been
  toggled on, but it cannot be used" (from `_check_and_enable_flash_attn_2`) when flash_attn is missing.
- 4.54 - 5.x: `PreTrainedModel._check_and_adjust_attn_implementation(self, attn_implementation, ...)`, called by
  __init__ and set_attn_implementation; the same ImportError comes from `_flash_attn_2_can_dispatch` (4.x) /
  `_flash_attn_can_dispatch` (5.x).
The replacement changes the request before the release's own code runs: "flash_attention_2" becomes no request
(None: transformers' own default, sdpa where the model supports it, else eager) when the profile's HF attention is
sdpa, or "eager" when it is eager. Any other request, or a machine where flash-attn serves, is passed on untouched.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from typing import Any, Callable, List, Optional, Tuple

from . import flash_load
from .verdict import Verdict, verdict

log = logging.getLogger("compat")
FA2 = "flash_attention_2"
_lock = threading.Lock()
_served: List[Tuple[str, str, str]] = []  # (model class, served with, why) for every redirect in this process


def served() -> Tuple[Tuple[str, str, str], ...]:
    """The flash_attention_2 requests this process served with another attention: (class, attention, why)."""
    with _lock:
        return tuple(_served)


def _record(owner: str, v: Verdict) -> None:
    with _lock:
        first = not _served
        _served.append((owner, v.attn, v.why))
    if first:  # one line per process
        log.warning("compat: attn_implementation='flash_attention_2' requested but flash-attn cannot serve this "
                    "machine (%s); using %s instead (disable with COMPAT_DISABLE_PATCHES=transformers_attn)",
                    v.why, "sdpa, else eager" if v.attn == "sdpa" else repr(v.attn))


def _instead(v: Verdict) -> Optional[str]:
    """What a flash_attention_2 request becomes: None = transformers' default (sdpa, else eager)."""
    return None if v.attn == "sdpa" else v.attn


def _redirect(value: Any, owner: str) -> Tuple[Any, bool]:
    """(new request, changed) for a request string or a per-sub-config dict of them."""
    if value == FA2 or (isinstance(value, dict) and FA2 in value.values()):
        flash_load.on_flash_attention_2_request()  # transformers 4.54+: a flash-attn that does not load shows now
        v = verdict()
        if v.flash_attn:
            return value, False
        _record(owner, v)
        if isinstance(value, dict):
            return {k: (_instead(v) if x == FA2 else x) for k, x in value.items()}, True
        return _instead(v), True
    return value, False


def make_autoset(original: Any) -> Any:
    """transformers 4.44 - 4.53: `_autoset_attn_implementation(cls, config, [use_flash_attention_2,] ...)`."""
    func: Callable[..., Any] = original.__func__
    sig = inspect.signature(func)

    @functools.wraps(func)
    def _autoset_attn_implementation(cls: Any, config: Any, *args: Any, **kwargs: Any) -> Any:
        bound = sig.bind(cls, config, *args, **kwargs)
        internal = getattr(config, "_attn_implementation_internal", None)
        legacy = bool(bound.arguments.get("use_flash_attention_2"))  # <= 4.49: use_flash_attention_2=True
        new, changed = _redirect(FA2 if legacy and internal is None else internal, cls.__name__)
        if changed:
            config._attn_implementation_internal = new
            if legacy:
                bound.arguments["use_flash_attention_2"] = False
            return func(*bound.args, **bound.kwargs)
        return func(cls, config, *args, **kwargs)

    return classmethod(_autoset_attn_implementation)


def make_check_and_adjust(original: Any) -> Any:
    """transformers 4.54 - 5.x: `_check_and_adjust_attn_implementation(self, attn_implementation, ...)`."""
    func: Callable[..., Any] = original

    @functools.wraps(func)
    def _check_and_adjust_attn_implementation(self: Any, attn_implementation: Any, *args: Any, **kwargs: Any) -> Any:
        new, _ = _redirect(attn_implementation, type(self).__name__)
        return func(self, new, *args, **kwargs)

    return _check_and_adjust_attn_implementation
