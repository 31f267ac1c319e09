"""`python -m compat verl-overrides`: Hydra overrides that make verl's PPO/GRPO trainer fit this machine.

    python -m verl.trainer.main_ppo $(python -m compat verl-overrides --format args) data.train_files=...

Keys, checked in volcengine/verl (verl/trainer/config/ppo_trainer.yaml and its generated reference
_generated_ppo_trainer.yaml; verl/workers/config/model.py; verl/trainer/main_ppo.py run_ppo):
  actor_rollout_ref.rollout.dtype                       vLLM dtype (default bfloat16: refused by vLLM below sm80)
  actor_rollout_ref.model.override_config.attn_implementation
  critic.model.override_config.attn_implementation      read as override_config.get("attn_implementation",
                                                        "flash_attention_2") by the actor/ref and critic builders
  actor_rollout_ref.model.use_remove_padding            the padding-free path monkey-patches flash-attn's varlen
  critic.model.use_remove_padding                       forward; off when HF attention is not flash_attention_2
  actor_rollout_ref.rollout.engine_kwargs.vllm.<opt>    the attention backend where the vLLM release takes it as
                                                        an engine argument rather than an env var
  actor_rollout_ref.rollout.enforce_eager / free_cache_engine
                                                        False/False enables CUDA graphs with vLLM >= 0.7 (verl's
                                                        vLLM 0.7 guide; the threshold is data:
                                                        compat/data/vllm_extras.toml [verl]), with the caveats
                                                        printed as comments
  ray_kwargs.ray_init.runtime_env.env_vars.<NAME>       main_ppo merges ray_kwargs.ray_init.runtime_env into the
  ray_kwargs.ray_init.runtime_env.worker_process_setup_hook   runtime env of ray.init: the profile's env vars and
                                                        compat.setup() reach every Ray worker verl starts
Keys verl's yaml does not declare (override_config.*, engine_kwargs.vllm.*, ray_init.runtime_env.*) use Hydra's
`++` (add or override), so the line works whether or not a config already sets them.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from typing import List, Mapping, Optional, Tuple

from .. import versions
from .._args import ArgumentParser
from ..errors import CompatError

CUDA_GRAPH_CAVEATS = (
    "CUDA graphs in rollout (enforce_eager=False, free_cache_engine=False) need vLLM >= {min_vllm}; caveats:",
    "  - prefix caching is incompatible with sleep mode: keep actor_rollout_ref.rollout.enable_prefix_caching off "
    "when free_cache_engine / sleep mode is used",
    "  - num_scheduler_step > 1 (multi-step scheduling) is unsupported with this setup",
    "  - n > 1 (several samples per prompt) has shown timing instability with CUDA graphs; "
    "measure before relying on it",
)
_HYDRA_PLAIN = re.compile(r"^[A-Za-z0-9_./:+-]+$")


def hydra_value(value: str) -> str:
    """A value Hydra's override grammar reads back as this exact string."""
    if _HYDRA_PLAIN.match(value) and value.lower() not in ("null", "true", "false"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cuda_graph_min_vllm() -> str:
    """The first vLLM release verl runs rollout with CUDA graphs on (compat/data/vllm_extras.toml [verl], sourced)."""
    from .._toml import load_data

    return load_data("vllm_extras")["verl"]["cuda_graph_min_vllm"]


def overrides(rep, environ: Mapping[str, str] = os.environ) -> Tuple[List[str], List[str]]:
    """(overrides, comments) for a compat report; pure, so tests feed simulated machines."""
    from .shell import plan_exports

    r = rep.resolved
    sw = rep.environment.software
    vllm = sw.version("vllm")
    out: List[str] = []
    notes: List[str] = [f"compat profile {r.profile.name}: {r.profile.description}".rstrip(": ")]
    out.append(f"actor_rollout_ref.rollout.dtype={r.dtype}")
    attn = r.hf_attn_implementation
    out.append(f"++actor_rollout_ref.model.override_config.attn_implementation={attn}")
    out.append(f"++critic.model.override_config.attn_implementation={attn}")
    if attn != "flash_attention_2":
        out.append("actor_rollout_ref.model.use_remove_padding=False")
        out.append("critic.model.use_remove_padding=False")
        notes.append(f"use_remove_padding off: verl's padding-free path needs flash-attn varlen; HF attention "
                     f"here is {attn}")
    b = r.attention_backend
    if b is not None and b.option:
        out.append(f"++actor_rollout_ref.rollout.engine_kwargs.vllm.{b.option}={hydra_value(b.name)}")
    if vllm is None:
        notes.append("vLLM not installed: rollout settings that depend on its release are left to verl's defaults")
    elif versions.release(vllm) >= versions.parse(cuda_graph_min_vllm()):
        out.append("actor_rollout_ref.rollout.enforce_eager=False")
        out.append("actor_rollout_ref.rollout.free_cache_engine=False")
        notes.extend(line.format(min_vllm=cuda_graph_min_vllm()) for line in CUDA_GRAPH_CAVEATS)
    else:
        notes.append(f"vLLM {vllm} < {cuda_graph_min_vllm()}: keep verl's eager rollout (no CUDA-graph pair)")
    env_names = []
    for e in plan_exports(rep, environ):
        if e.status == "export":
            out.append(f"++ray_kwargs.ray_init.runtime_env.env_vars.{e.name}={hydra_value(e.value)}")
            env_names.append(e.name)
        elif e.status == "kept":
            out.append(f"++ray_kwargs.ray_init.runtime_env.env_vars.{e.name}={hydra_value(e.user_value or '')}")
            notes.append(f"{e.name}: passing your value {e.user_value!r} to Ray workers; compat would set "
                         f"{e.value!r} ({e.reason})")
        elif e.status == "secret":
            notes.append(f"{e.name}: a secret; not put on the command line")
    if env_names:
        # names compat chose, so each worker's own setup() may re-resolve them for its node (compat.integrations.ray)
        out.append(f"++ray_kwargs.ray_init.runtime_env.env_vars.COMPAT_RAY_EXPORTED={hydra_value(','.join(env_names))}")
    out.append("++ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=compat.integrations.ray.worker_setup")
    for f in rep.findings:
        if f.severity == "error":
            notes.append(f"ERROR {f.message}" + (f" (fix: {f.fix})" if f.fix else ""))
    return out, notes


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m compat verl-overrides",
                                description="Print Hydra overrides for verl's trainer from this machine's profile.")
    p.add_argument("--hardware", metavar="FILE", help="simulate the machine described in FILE")
    p.add_argument("--profile", metavar="NAME", help="use this profile instead of choosing one")
    p.add_argument("--format", choices=("lines", "args"), default="lines",
                   help="lines: one override per line with comments (default); args: one shell-quoted line")
    return p


def run(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    from .._setup import build_report
    rep = build_report(args.hardware, args.profile, environ=os.environ)
    out, notes = overrides(rep, os.environ)
    if args.format == "args":
        sys.stdout.write(" ".join(shlex.quote(o) for o in out) + "\n")
        for n in notes:
            sys.stderr.write(f"# {n}\n")
    else:
        sys.stdout.write("".join(f"# {n}\n" for n in notes) + "".join(f"{o}\n" for o in out))
    return 1 if not rep.ok else 0


__all__ = ["overrides", "run", "hydra_value", "CompatError"]
