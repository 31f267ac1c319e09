"""The machine's verdict for Hugging Face model loading, read at call time inside any process.

The transformers sets are applied when transformers.modeling_utils is imported, which can be before or after
setup() ran in this process (a Ray worker may import transformers first). So the replacements ask `verdict()` on
every model load: it reads compat.current() (the report setup() made), or, in a process that activated the patch
engine without setup(), a preview report of the same machine (detected or COMPAT_HARDWARE, nothing exported).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

SWITCH = "hf_dtype"
_lock = threading.Lock()
_preview: Dict[Tuple[str, ...], Any] = {}


@dataclass(frozen=True)
class Verdict:
    profile: str
    flash_attn: bool        # flash-attn can serve this machine: a flash_attention_2 request is left alone
    attn: str               # the profile's HF attention, what a flash_attention_2 request is served with
    why: str                # why flash-attn cannot serve ("" when it can)
    refuse_bf16: bool       # the profile refuses bfloat16 (V100, T4)
    hf_dtype: bool          # bfloat16 loading requests become float16


def switch_value(environ: Mapping[str, str]) -> Optional[bool]:
    """COMPAT_HF_DTYPE read with compat's one switch vocabulary (compat.switches): True/False, None when unset."""
    from ..switches import Switches

    return Switches.parse(environ).hf_dtype


def _report() -> Any:
    from .. import _setup

    rep = _setup.current()
    if rep is not None:
        return rep
    key = tuple(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("COMPAT_"))
    with _lock:
        rep = _preview.get(key)
        if rep is None:
            rep = _preview[key] = _setup.build_report(environ=os.environ, export=False, patches=False)
    return rep


def why_no_flash_attn(r: Any, env: Any) -> str:
    """Why the profile's HF attention (Resolved r) is not flash_attention_2 on this machine, in one clause."""
    from ..knowledge import flash_attn_problems

    if r.hf_attn_implementation == "flash_attention_2":
        return ""
    sm = env.hardware.min_sm
    fa = env.software.version("flash-attn")
    if not r.profile.flash_attention_2:
        gpu = f"sm{sm}" if sm is not None else "no NVIDIA GPU"
        return f"profile {r.profile.name} ({gpu}) has no FlashAttention-2 (flash-attn needs sm80+)"
    if fa is None:
        return "flash-attn is not installed"
    problems = flash_attn_problems(fa, env.software.version("torch"), sm)
    return "; ".join(msg for _, msg in problems) or f"profile {r.profile.name} does not use flash-attn {fa}"


def from_report(rep: Any) -> Verdict:
    from .flash_load import hidden

    r = rep.resolved
    refuse = "bfloat16" in r.profile.refuse_dtypes
    sw = dict(rep.switches)  # setup()'s decision (the profile's default filled in), else the environment's
    given = sw[SWITCH] if SWITCH in sw else switch_value(os.environ)
    flash, attn, why = r.hf_attn_implementation == "flash_attention_2", r.hf_attn_implementation, \
        why_no_flash_attn(r, rep.environment)
    broken = hidden()   # setup() could not see it (no torch there): a flash-attn that does not load, hidden since
    if flash and broken:
        fa = rep.environment.software.version("flash-attn")
        flash, attn, why = False, r.profile.hf_attn_implementation, \
            f"flash-attn {fa} is installed but does not load ({broken})"
    return Verdict(profile=r.profile.name, flash_attn=flash, attn=attn, why=why, refuse_bf16=refuse,
                   hf_dtype=refuse if given is None else given)


def verdict() -> Verdict:
    return from_report(_report())
