"""Doctor's "this environment does not match the plan" check (registered in compat/report/checks.py CHECKS).

Cheap: tables only, no network, nothing imported; runs only when vLLM is installed. The installed set matches
when torch is vLLM's pin, its CUDA variant passes the planner's rules for this machine (arch, driver, vLLM's CUDA
major) and any flash-attn is a release built for that torch and CUDA on an sm80+ GPU; the rules are the planner's
own (planner.variant_refusal, planner.flash_attn_refusal). The fix is one command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Mapping, Optional

from .. import versions
from ..detect.model import Environment
from ..errors import CompatError
from ..findings import Finding

if TYPE_CHECKING:
    from .planner import Plan


def _command(env: Environment, request: Optional[str]) -> str:
    hw = f" --hardware {env.hardware_file}" if env.hardware_file else ""
    req = f" {request}" if request else ""
    return f"python -m compat install{req} --yes{hw}"


def plan_mismatch(env: Environment, r: object, environ: Mapping[str, str]) -> List[Finding]:
    sw = env.software
    vv = sw.version("vllm")
    if not vv or not env.hardware.gpus:
        return []
    from . import planner  # local: doctor without vLLM never loads the planner tables

    try:
        plan = planner.make_plan(env, f"vllm=={versions.release(vv)}", python=sw.python, environ=environ)
    except planner.PlanRefused as exc:
        try:
            newest = planner.make_plan(env, None, python=sw.python, environ=environ)
        except CompatError:
            return [Finding("plan-mismatch", "error", f"vLLM {vv} cannot run here and no vLLM set fits this machine: "
                            f"{exc.reason}", exc.fix)]
        return [Finding("plan-mismatch", "error",
                        f"this environment does not match the plan: vLLM {vv} does not fit this machine "
                        f"({exc.reason}); the plan is vLLM {newest.vllm} + torch {newest.torch} ({newest.torch_variant})",
                        _command(env, f"vllm=={newest.vllm}"))]
    except CompatError:
        return []  # a release compat does not know: vllm_vs_torch reports it
    problems = []
    tv = sw.version("torch")
    if tv is None or versions.release(tv) != versions.release(plan.torch):
        problems.append(f"torch is {tv or 'missing'}, vLLM {vv} needs {plan.torch}")
    elif sw.torch_variant and sw.torch_variant != plan.torch_variant and not _variant_ok(env, plan, sw.torch_variant):
        problems.append(f"torch {tv} is the {sw.torch_variant} build; this machine needs {plan.torch_variant}")
    fa = sw.version("flash-attn")
    if fa and not _flash_attn_ok(fa, plan, env):
        problems.append(f"flash-attn {fa} does not fit (plan: {plan.flash_attn or 'none'})")
    if not problems:
        return []
    return [Finding("plan-mismatch", "error", "this environment does not match the plan: " + "; ".join(problems),
                    _command(env, f"vllm=={versions.release(vv)}"))]


def _variant_ok(env: Environment, plan: Plan, variant: str) -> bool:
    """Another variant of the pin is fine when it passes the planner's rules (arch, driver, vLLM's CUDA major)."""
    from .planner import variant_refusal

    return variant_refusal(plan.torch, variant, env.hardware)[0] is None


def _flash_attn_ok(fa: str, plan: Plan, env: Environment) -> bool:
    """The planner's flash-attn rules: an sm80+ GPU, and a listed release built for the plan's torch and CUDA."""
    from .planner import flash_attn_refusal

    return flash_attn_refusal(fa, plan.torch, plan.cuda, env.hardware.min_sm or 0) is None
