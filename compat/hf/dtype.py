"""bfloat16 model loading becomes float16 on profiles that refuse bfloat16 (V100, T4), switchable (hf_dtype).

Two steps, in `PreTrainedModel.from_pretrained` and `PreTrainedModel._from_config` (what AutoModel*.from_config
calls), every release 4.44 - 5.x:
1. a bfloat16 request (`torch_dtype=` before 4.56, `dtype=` from 4.56 on; torch.bfloat16 or "bfloat16") is passed
   on as float16, so transformers itself loads in float16 (its fp16 rules, e.g. `_keep_in_fp32_modules`, apply);
2. bfloat16 the request did not name (dtype="auto" with a bfloat16 checkpoint, transformers 5's default "auto",
   5.x `_from_config` defaulting to config.dtype) is cast after loading: floating parameters and buffers in
   bfloat16 become float16 and the config says float16. Quantized models are left alone.
Other requests (float32, float16, none on 4.x) pass through untouched. compat does not add loss scaling: see
docs/hf.md for what float16 training needs.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Callable, Dict, List, Tuple

from .verdict import verdict

log = logging.getLogger("compat")
KWARGS = ("torch_dtype", "dtype")
_lock = threading.Lock()
_events: List[Tuple[str, str]] = []  # (model class, what changed)


def events() -> Tuple[Tuple[str, str], ...]:
    with _lock:
        return tuple(_events)


def _record(owner: str, what: str, profile: str) -> None:
    with _lock:
        first = not _events
        _events.append((owner, what))
    if first:  # one line per process
        log.warning("compat: %s on profile %s, which refuses bfloat16; loading in float16 instead (float16 "
                    "training needs loss scaling, see compat docs/hf.md; keep bfloat16 with COMPAT_HF_DTYPE=0)",
                    what, profile)


def _is_bf16(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip() in ("bfloat16", "torch.bfloat16")
    import torch

    return value is torch.bfloat16


def rewrite(kwargs: Dict[str, Any], owner: str) -> Dict[str, Any]:
    """kwargs with bfloat16 dtype requests replaced by float16 (the same spelling: str stays str)."""
    hits = [k for k in KWARGS if k in kwargs and _is_bf16(kwargs[k])]
    if not hits:
        return kwargs
    v = verdict()
    if not v.hf_dtype:
        return kwargs
    import torch

    out = dict(kwargs)
    for k in hits:
        out[k] = "float16" if isinstance(kwargs[k], str) else torch.float16
        _record(owner, f"{k}=bfloat16 requested", v.profile)
    return out


def cast_leftover_bf16(model: Any, owner: str) -> Any:
    """Cast bfloat16 floating parameters/buffers the request did not name ("auto", config default) to float16."""
    import torch

    if not isinstance(model, torch.nn.Module) or getattr(model, "is_quantized", False):
        return model
    tensors = [t for t in list(model.parameters()) + list(model.buffers()) if t.dtype is torch.bfloat16]
    if not tensors:
        return model
    v = verdict()
    if not v.hf_dtype:
        return model
    for t in tensors:
        t.data = t.data.to(torch.float16)
    config = getattr(model, "config", None)
    if config is not None:
        for name in KWARGS:
            if getattr(config, name, None) is torch.bfloat16:
                try:
                    setattr(config, name, torch.float16)
                except Exception:  # a release where one of the two names is a read-only alias
                    pass
    _record(owner, "bfloat16 weights loaded (dtype 'auto' or the config's default)", v.profile)
    return model


def _wrap(original: Any) -> Any:
    func: Callable[..., Any] = original.__func__

    @functools.wraps(func)
    def wrapper(cls: Any, *args: Any, **kwargs: Any) -> Any:
        out = func(cls, *args, **rewrite(kwargs, cls.__name__))
        if isinstance(out, tuple) and out:  # from_pretrained(..., output_loading_info=True) -> (model, info)
            return (cast_leftover_bf16(out[0], cls.__name__),) + out[1:]
        return cast_leftover_bf16(out, cls.__name__)

    return classmethod(wrapper)


def make_from_pretrained(original: Any) -> Any:
    return _wrap(original)


def make_from_config(original: Any) -> Any:
    return _wrap(original)
