"""build_report: the pipeline's answer for one process as a Report, changing nothing (doctor, env, verl, Ray).

setup() takes the same report and then exports its env and activates its patch sets (compat/_setup.py).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional

from .. import pipeline
from ..apply import env as envmod
from ..apply.process import apply
from ..switches import Switches
from .model import Report


def build_report(hardware: Optional[str] = None, profile: Optional[str] = None, dtype: Optional[str] = None,
                 fp8: Optional[Any] = None, environ: Mapping[str, str] = os.environ,
                 export: bool = False, patches: bool = False, switches: Optional[Dict[str, Any]] = None,
                 vllm_version: Optional[str] = None) -> Report:
    """Detect (or simulate), resolve, and preview the env; `export`/`patches` kept for callers that also apply
    (compat.apply.process.apply does that part)."""
    knobs = Switches.parse(environ, hardware=hardware, profile=profile)  # `hardware=''`/`profile=''`: errors
    knobs.opt_ins()  # the switches setup() would read here: a malformed one is an error for every command alike
    if knobs.get("disable_patches"):
        from ..patches.engine import disabled_ids

        disabled_ids()  # an unknown patch id or set name: an error listing the valid ones, as setup() raises
    env = pipeline.machine(knobs, environ)
    want_fp8 = fp8 not in (None, False) and Switches.parse({}, fp8=fp8).fp8 is not None
    resolved = pipeline.resolve(env, pipeline.request(knobs, knobs.get("profile") if profile is not None else None,
                                                      dtype, fp8=want_fp8))
    res = envmod.preview(resolved.env, environ)  # type: ignore[arg-type]
    sw = dict(switches or {})
    if resolved.fp8 and "fp8" not in sw and want_fp8:
        sw["fp8"] = fp8
    if not resolved.fp8 and sw.get("fp8") not in (None, False):
        sw["fp8"] = False  # refused on this GPU (finding fp8-unsupported): keep the FP8 patch set off, env included
    if "hf_dtype" not in sw and "bfloat16" in resolved.profile.refuse_dtypes:
        sw["hf_dtype"] = True  # bfloat16 loading becomes float16 by default where the profile refuses bfloat16
    findings = env.findings + env.hardware.findings + resolved.findings + res.findings
    rep = Report(environment=env, resolved=resolved, env_set=res.set, env_kept=res.kept,
                 setup_findings=findings, switches=tuple(sorted(sw.items())),
                 vllm_version=vllm_version or env.software.version("vllm"))
    if export or patches:
        rep = apply(rep, environ, export=export, patches=patches)
    return rep
