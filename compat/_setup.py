"""compat.setup(): detect -> choose profile -> apply env (and register patches) -> report.

Runs in every process of a job (Ray workers, vLLM workers), so it imports no torch/vLLM and caches its work.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from .apply import env as envmod
from .choose import Resolved, resolve
from .detect import Environment, detect
from .errors import CompatError
from .findings import Finding, errors
from .profiles import select_profile
from .switches import OPT_IN, Switches

JSON_SCHEMA_VERSION = 1
SWITCHES = OPT_IN
# switches whose default the profile decides (hf_dtype: on where bfloat16 is refused): "off" is a decision to keep
HF_DTYPE = "hf_dtype"
_KEY_PREFIXES = ("COMPAT_", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")

_lock = threading.RLock()
_last: Dict[Tuple, Report] = {}
_current: Optional[Report] = None


@dataclass(frozen=True)
class Report:
    """What setup() found and did; `as_dict()` is the documented JSON contract (docs/json-contract.md).

    `findings` and `patches` are computed when first read, not in setup(): doctor's checks read the knowledge
    tables (and packaging), which a Ray or vLLM worker calling setup() should not pay for; patch statuses
    and refusals change once vLLM is imported, so they are read fresh each time.
    """
    environment: Environment
    resolved: Resolved
    env_set: Tuple[Tuple[str, str], ...]
    env_kept: Tuple[Tuple[str, str, str], ...]
    setup_findings: Tuple[Finding, ...] = ()       # found while detecting, choosing and exporting
    switches: Tuple[Tuple[str, Any], ...] = field(default=())
    vllm_version: Optional[str] = None              # the release patch statuses are computed for
    extra_findings: Tuple[Finding, ...] = ()        # added later (doctor --deep)

    @property
    def checks(self) -> Tuple[Finding, ...]:
        """Doctor's checks (compat/report/checks.py), run once on first use."""
        cached = self.__dict__.get("_checks")
        if cached is None:
            from .report.checks import run_checks

            cached = tuple(run_checks(self.environment, self.resolved, envmod.user_environ()))
            object.__setattr__(self, "_checks", cached)
        return cached

    @property
    def patched(self) -> bool:
        """Whether any patched package is installed (vLLM, or transformers for the transformers sets)."""
        return self.vllm_version is not None or self.environment.software.version("transformers") is not None

    @property
    def patches(self) -> Tuple[Any, ...]:
        if not self.patched:
            return ()
        from . import patches as patchmod

        return tuple(patchmod.status(self.vllm_version, dict(self.switches)))

    @property
    def findings(self) -> Tuple[Finding, ...]:
        patch_findings: Tuple[Finding, ...] = ()
        if self.patched and "compat.patches" in sys.modules:
            patch_findings = tuple(sys.modules["compat.patches"].findings())
        return tuple(_dedupe(self.setup_findings + self.checks + patch_findings + self.extra_findings))

    @property
    def ok(self) -> bool:
        return not errors(self.findings)

    def as_dict(self) -> Dict[str, Any]:
        env = {n: envmod.redact(n, v) for n, v in self.env_set}
        return {
            "schema": JSON_SCHEMA_VERSION,
            "hardware": self.environment.hardware.as_dict(),
            "software": self.environment.software.as_dict(),
            "profile": self.resolved.as_dict(),
            "env": env,
            "env_kept": {n: envmod.redact(n, user) for n, user, _ in self.env_kept},
            "patches": [_patch_dict(p) for p in self.patches],
            "findings": [f.as_dict() for f in self.findings],
        }


def _patch_dict(p: Any) -> Dict[str, Any]:
    if hasattr(p, "as_dict"):
        return p.as_dict()
    return {"id": getattr(p, "id", str(p)), "status": getattr(p, "status", "unknown")}


def build_report(hardware: Optional[str] = None, profile: Optional[str] = None, dtype: Optional[str] = None,
                 fp8: Optional[Any] = None, environ: Mapping[str, str] = os.environ,
                 export: bool = False, patches: bool = False, switches: Optional[Dict[str, Any]] = None,
                 vllm_version: Optional[str] = None) -> Report:
    """Everything doctor and setup() share; `export`/`patches` decide whether this process is changed."""
    knobs = Switches.parse(environ, hardware=hardware)  # `hardware=''` is an error, COMPAT_HARDWARE='' is unset
    env = detect(knobs.hardware, environ)  # COMPAT_HARDWARE=FILE: simulate
    prof, pfind = select_profile([g.sm for g in env.hardware.gpus], environ, requested=profile)
    want_fp8 = None if fp8 in (None, False) else True
    resolved = resolve(prof, env, dtype=dtype, fp8=want_fp8)
    res = (envmod.export if export else envmod.preview)(resolved.env, environ)
    env_set, env_kept, efind = res.set, res.kept, res.findings
    findings = list(env.findings) + list(env.hardware.findings) + list(pfind) + list(resolved.findings)
    findings += list(efind)
    sw = dict(switches or {})
    if resolved.fp8 and "fp8" not in sw and fp8:
        sw["fp8"] = fp8
    if not resolved.fp8 and sw.get("fp8") not in (None, False):
        sw["fp8"] = False  # refused on this GPU (finding fp8-unsupported): keep the FP8 patch set off, env included
    if HF_DTYPE not in sw and "bfloat16" in resolved.profile.refuse_dtypes:
        sw[HF_DTYPE] = True  # bfloat16 loading becomes float16 by default where the profile refuses bfloat16
    vllm = vllm_version or env.software.version("vllm")
    patched = vllm is not None or env.software.version("transformers") is not None
    if patched and patches:  # nothing to patch installed: the engine is not even imported
        from . import patches as patchmod

        patchmod.activate(sw)
    return Report(environment=env, resolved=resolved, env_set=tuple(env_set), env_kept=tuple(env_kept),
                  setup_findings=tuple(findings), switches=tuple(sorted(sw.items())), vllm_version=vllm)


def _dedupe(findings):
    seen = set()
    for f in findings:
        key = (f.id, f.message)
        if key not in seen:
            seen.add(key)
            yield f


def setup(profile: Optional[str] = None, hardware: Optional[str] = None, strict: bool = False,
          dtype: Optional[str] = None, hidden_states: Optional[Any] = None, fp8: Optional[Any] = None,
          patches: bool = True, hf_dtype: Optional[bool] = None) -> Report:
    """Detect the machine, choose its profile, export env vars, register patch sets; return the report.

    hf_dtype: bfloat16 model loading in transformers becomes float16 (default: on where the profile refuses
    bfloat16; COMPAT_HF_DTYPE=0/1 for workers). Idempotent and thread-safe: the same arguments return the same
    report without redoing work. With
    `strict=True` an error finding raises CompatError. Never imports torch or vLLM.
    """
    global _current
    # Every input that changes the answer; variables compat exported itself are left out, so a second
    # identical call finds the first call's report.
    key = (profile, hardware, dtype, hidden_states, fp8, patches, hf_dtype,
           tuple(sorted((k, v) for k, v in envmod.user_environ().items() if k.startswith(_KEY_PREFIXES))))
    with _lock:
        rep = _last.get(key)
        if rep is None:
            # the switches from keywords, else from env (so spawned workers inherit them); CompatError on a
            # malformed one (compat.switches: the one vocabulary every command reads them with)
            sw = Switches.parse(os.environ, hidden_states=hidden_states, fp8=fp8, hf_dtype=hf_dtype).opt_ins()
            rep = build_report(hardware, profile, dtype, sw.get("fp8"), os.environ, export=True,
                               patches=patches, switches=sw)
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


def _report_or_setup() -> Report:
    return _current or setup()


def vllm_kwargs(model: Optional[str] = None, **overrides: Any) -> Dict[str, Any]:
    """Engine arguments for vllm.LLM(...) / AsyncEngineArgs: dtype, and the attention backend where the
    installed release takes it as an argument rather than an env var. With model=PATH (local dir or its
    config.json) also what the model needs here: tensor_parallel_size, quantization, max_model_len when it
    must shrink (compat/preflight/, docs/preflight.md)."""
    rep = _report_or_setup()
    r = rep.resolved
    out: Dict[str, Any] = {"dtype": r.dtype}
    b = r.attention_backend
    if b is not None and b.option:
        out[b.option] = b.name
    if r.fp8 and dict(rep.switches).get("fp8") not in (None, False):
        # serve the (bf16) checkpoint in block FP8: vLLM builds block-FP8 layers, the vllm_fp8 set quantizes on load
        from . import versions
        from .patches.sets.vllm_fp8 import PATCH_SET, engine_kwargs
        if versions.in_spec(rep.environment.software.version("vllm"), PATCH_SET.versions):
            out.update(engine_kwargs())
    if model is not None:
        from .preflight import engine_kwargs as preflight_kwargs
        out.update(preflight_kwargs(rep.environment, r.profile, model, overrides))
    out.update(overrides)
    return out


def hf_kwargs(**overrides: Any) -> Dict[str, Any]:
    """from_pretrained() arguments: the dtype and attention implementation this GPU and install can run."""
    rep = _report_or_setup()
    r = rep.resolved
    tf = rep.environment.software.version("transformers")
    from . import versions
    from ._toml import load_data

    since = load_data("hf")["from_pretrained"]["dtype_kwarg_since"]  # the torch_dtype -> dtype rename
    key = "dtype" if tf and versions.release(tf) >= versions.parse(since) else "torch_dtype"
    out: Dict[str, Any] = {key: r.dtype, "attn_implementation": r.hf_attn_implementation}
    out.update(overrides)
    return out
