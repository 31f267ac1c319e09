"""Model-aware pre-flight: will this model run on this machine with this vLLM release, and with which engine
arguments? Answered offline from the model's config.json, the machine description and the facts harvested
out of the real vLLM releases (compat/data/harvested/). See docs/preflight.md.

    from compat.preflight import for_environment
    pf = for_environment("/models/Qwen2.5-7B-Instruct-AWQ", env, vllm="0.11.0")
    pf.findings, pf.kwargs()
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Union

from ..choose import choose_backend
from ..detect.model import Environment, Software, packages_tuple
from ..profiles import Profile, select_profile
from .checks import Machine, Preflight, Target, run
from .config import ModelConfig, load_model

__all__ = ["Machine", "Target", "Preflight", "ModelConfig", "load_model", "run", "for_environment",
           "machine_of", "target_for"]


def machine_of(env: Environment) -> Machine:
    gpus = env.hardware.gpus
    return Machine(sm=env.hardware.min_sm, gpu_count=len(gpus),
                   memory_mib=min((g.memory_mib for g in gpus), default=0))


def target_for(profile: Profile, vllm: Optional[str], source: str, sm: Optional[int],
               software: Optional[Software] = None, planned: Sequence[str] = ()) -> Target:
    """compat's choices for this release. The installed packages decide the backend (a kernel package that is
    only an extra may be missing); for a planned or given release, what the plan installs: vLLM and the
    `planned` requirements ("flashinfer-python==0.3.1")."""
    if software is None or source != "installed":
        pk = {"vllm": vllm} if vllm else {}
        for req in planned:
            name, _, ver = req.partition("==")
            pk[name.strip()] = ver.strip() or "0"
        software = Software(python=software.python if software else "", packages=packages_tuple(pk))
    backend, _ = choose_backend(profile, vllm, sm, software)
    return Target(vllm=vllm, vllm_source=source, profile=profile.name, dtype=profile.dtype,
                  bf16_ok="bfloat16" not in profile.refuse_dtypes and profile.dtype != "float16",
                  backend=backend, refuse_vllm=profile.refuse_vllm, packages=software.packages)


def for_environment(model: Union[str, Path, ModelConfig], env: Environment, vllm: Optional[str] = None,
                    source: Optional[str] = None, profile: Optional[Profile] = None,
                    max_model_len: Optional[int] = None, gpu_memory_utilization: Optional[float] = None,
                    environ: Mapping[str, str] = os.environ, harvest_dir: Optional[Path] = None,
                    planned: Sequence[str] = ()) -> Preflight:
    """Pre-flight for a detected or simulated machine; vllm defaults to the installed release."""
    m = model if isinstance(model, ModelConfig) else load_model(model)
    if profile is None:
        profile, _ = select_profile([g.sm for g in env.hardware.gpus], environ)
    if vllm is None:
        vllm, source = env.software.version("vllm"), "installed"
    if max_model_len is not None and max_model_len <= 0:
        from ..errors import CompatError
        raise CompatError(f"--max-model-len must be a positive number of tokens, got {max_model_len}")
    if gpu_memory_utilization is not None and not 0 < gpu_memory_utilization <= 1:
        from ..errors import CompatError
        raise CompatError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    mach = machine_of(env)
    return run(m, mach, target_for(profile, vllm, source or "given", mach.sm, env.software, planned), max_model_len,
               gpu_memory_utilization, harvest_dir)


def engine_kwargs(env: Environment, profile: Profile, model: Union[str, Path],
                  overrides: Mapping[str, object]) -> Dict[str, object]:
    """compat.vllm_kwargs(model=PATH): the engine arguments pre-flight derives for the installed vLLM; its
    error findings are logged (as setup() logs its own), the arguments are returned all the same."""
    mml, util = overrides.get("max_model_len"), overrides.get("gpu_memory_utilization")
    pf = for_environment(model, env, profile=profile, max_model_len=mml if isinstance(mml, int) else None,
                         gpu_memory_utilization=float(util) if isinstance(util, (int, float)) else None)
    import logging

    for f in pf.findings:
        if f.severity == "error":
            logging.getLogger("compat").warning("compat pre-flight: %s (fix: %s)", f.message, f.fix)
    return pf.kwargs()
