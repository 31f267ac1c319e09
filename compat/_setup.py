"""compat.setup(): the pipeline's report for this process, cached; its env exported and its patch sets activated.

Runs in every process of a job (Ray workers, vLLM workers), so it imports no torch/vLLM and caches its work. The
decisions live elsewhere: knobs in compat/switches.py, machine -> profile in compat/pipeline.py, the snapshot in
compat/report/model.py, export/activation in compat/apply/, library arguments in compat/kwargs.py.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Dict, Optional, Tuple

from .apply import env as envmod
from .apply.process import apply
from .errors import CompatError
from .findings import errors
from .report.build import build_report
from .report.model import JSON_SCHEMA_VERSION, Report
from .switches import OPT_IN, Switches

__all__ = ["JSON_SCHEMA_VERSION", "SWITCHES", "Report", "build_report", "current", "revert", "setup"]

SWITCHES = OPT_IN
# switches whose default the profile decides (hf_dtype: on where bfloat16 is refused): "off" is a decision to keep
HF_DTYPE = "hf_dtype"
_KEY_PREFIXES = ("COMPAT_", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")

_lock = threading.RLock()
_last: Dict[Tuple[Any, ...], Report] = {}
_current: Optional[Report] = None


def setup(profile: Optional[str] = None, hardware: Optional[str] = None, strict: bool = False,
          dtype: Optional[str] = None, hidden_states: Optional[Any] = None, fp8: Optional[Any] = None,
          patches: bool = True, hf_dtype: Optional[bool] = None) -> Report:
    """Detect the machine, choose its profile, export env vars, register patch sets; return the report.

    hf_dtype: bfloat16 model loading in transformers becomes float16 (default: on where the profile refuses
    bfloat16; COMPAT_HF_DTYPE=0/1 for workers). Idempotent and thread-safe: the same arguments return the same
    report without redoing work. With `strict=True` an error finding raises CompatError. Never imports torch or
    vLLM.
    """
    global _current
    # Every input that changes the answer; variables compat exported itself are left out, so a second
    # identical call finds the first call's report.
    key = (profile, hardware, dtype, hidden_states, fp8, patches, hf_dtype,
           tuple(sorted((k, v) for k, v in envmod.user_environ().items() if k.startswith(_KEY_PREFIXES))))
    with _lock:
        rep = _last.get(key)
        if rep is None:
            # the opt-in switches from keywords, else from env (so spawned workers inherit them); CompatError on a
            # malformed one (compat.switches: the one vocabulary every command reads them with)
            sw = Switches.parse(os.environ, hidden_states=hidden_states, fp8=fp8, hf_dtype=hf_dtype).opt_ins()
            rep = build_report(hardware, profile, dtype, sw.get("fp8"), os.environ, switches=sw)
            rep = apply(rep, os.environ, export=True, patches=patches)
            # workers started later inherit the opt-in switches through the environment; exported like the
            # profile's variables, so revert() removes them and a user's own value is never replaced.
            refused = {s for s, v in rep.switches if v is False and s != HF_DTYPE}  # fp8 below sm89: stay off
            envmod.export([(f"COMPAT_{s.upper()}", "1" if v is True else "0" if v is False else str(v),
                            f"switch {s} for workers") for s, v in sw.items() if s not in refused])
            _last[key] = rep
            for f in rep.setup_findings:
                if f.severity == "error":
                    import logging

                    logging.getLogger("compat").warning("compat: %s (fix: %s)", f.message, f.fix)
        _current = rep
    if strict and not rep.ok:
        raise CompatError("; ".join(f"{f.message} (fix: {f.fix})" for f in errors(rep.findings)))
    return rep


def current() -> Optional[Report]:
    return _current


def revert() -> None:
    """Undo setup(): restore patched vLLM code exactly and remove the env vars compat exported."""
    global _current
    with _lock:
        if "compat.patches" in sys.modules:  # only loaded when a vLLM was installed
            sys.modules["compat.patches"].revert()
        envmod.unexport()
        _last.clear()
        _current = None


def __getattr__(name: str) -> Any:
    """vllm_kwargs/hf_kwargs moved to compat/kwargs.py; kept reachable here without importing it in setup()."""
    if name in ("vllm_kwargs", "hf_kwargs"):
        from . import kwargs

        return getattr(kwargs, name)
    raise AttributeError(f"module 'compat._setup' has no attribute {name!r}")


def report_or_setup() -> Report:
    return _current or setup()


_report_or_setup = report_or_setup
