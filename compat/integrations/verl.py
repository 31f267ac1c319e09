"""`python -m compat verl-overrides`: Hydra overrides that make verl's PPO/GRPO trainer fit this machine.

    python -m verl.trainer.main_ppo $(python -m compat verl-overrides --format args) data.train_files=...

Which keys a verl release reads is data: compat/data/verl.toml, one entry per release (0.4.0 -> newest), each fact
sourced to the release's file. The installed verl (or `--verl VERSION`) picks the entry; only keys that release
reads are printed. What a release does not expose, compat carries another way, and a comment says which:
  - attention: verl 0.4.x-0.6.0 hard-code attn_implementation="flash_attention_2" -> compat's transformers patch
    set (applied when transformers is imported in a process where compat is set up) serves it with the profile's
    HF attention;
  - Ray: verl 0.4.x-0.5.x start Ray with a fixed runtime_env -> the profile's env and COMPAT_AUTOLOAD=1 in the
    launching shell (`compat env`), which the local raylet and so every worker inherits;
  - vLLM rollout workers: the vllm.general_plugins entry point.
Env var values for Ray are written as Hydra quoted strings ('1'): Hydra reads a bare 1 as an int, and ray.init
rejects it ("runtime_env['env_vars'] must be of type Dict[str, str]").
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

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
_HYDRA_NONSTRING = re.compile(r"^[-+]?(\d[\d_]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?$|^(null|true|false|[-+]?inf|nan)$",
                              re.IGNORECASE)
RUNTIME_ENV = "++ray_kwargs.ray_init.runtime_env"
HOOK = "compat.integrations.ray.worker_setup"


@dataclass(frozen=True)
class VerlRelease:
    """What one verl release reads (an entry of compat/data/verl.toml)."""
    version: str
    rollout_dtype: str
    attn_honoured: bool
    attn_keys: Tuple[str, ...]
    remove_padding: Tuple[str, ...]
    fsdp_dtype: Tuple[Tuple[str, str], ...]        # (role, key)
    model_dtype: Tuple[Tuple[str, str], ...]
    loss_scaling: bool
    ray_runtime_env: str                           # "hard-coded" | "ray_kwargs"
    attn_source: str
    ray_source: str


def hydra_value(value: str) -> str:
    """A value Hydra's override grammar reads back as this exact string (never as an int, float, bool or null)."""
    if _HYDRA_PLAIN.match(value) and not _HYDRA_NONSTRING.match(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cuda_graph_min_vllm() -> str:
    """The first vLLM release verl runs rollout with CUDA graphs on (compat/data/vllm_extras.toml [verl], sourced)."""
    from .._toml import load_data

    return str(load_data("vllm_extras")["verl"]["cuda_graph_min_vllm"])


def _entry(raw: Mapping[str, Any]) -> VerlRelease:
    return VerlRelease(
        version=raw["version"], rollout_dtype=raw["rollout_dtype"], attn_honoured=bool(raw["attn_honoured"]),
        attn_keys=tuple(raw.get("attn_keys", ())), remove_padding=tuple(raw["remove_padding"]),
        fsdp_dtype=tuple(raw["fsdp_dtype"].items()), model_dtype=tuple(raw.get("model_dtype", {}).items()),
        loss_scaling=bool(raw["loss_scaling"]), ray_runtime_env=raw["ray_runtime_env"],
        attn_source=raw["attn_source"], ray_source=raw["ray_source"])


def releases() -> List[VerlRelease]:
    """Every verl release of compat/data/verl.toml, oldest first."""
    from .._toml import load_data

    rows = [_entry(r) for r in load_data("verl")["release"]]
    return sorted(rows, key=lambda r: versions.parse(r.version))


def release_for(version: Optional[str]) -> Tuple[VerlRelease, Optional[str]]:
    """The table entry for a verl version (newest entry not after it), and a note when it is not an exact match."""
    rows = releases()
    newest = rows[-1]
    if version is None:
        return newest, (f"verl is not installed here: keys of verl {newest.version}, the newest compat knows; "
                        f"pass --verl VERSION for another release")
    wanted = versions.release(version)
    if wanted < versions.parse(rows[0].version):
        raise CompatError(f"verl {version} is older than every release compat knows ({rows[0].version} -> "
                          f"{newest.version}); upgrade verl or pass --verl with a known release")
    match = [r for r in rows if versions.parse(r.version) <= wanted][-1]
    if versions.parse(match.version) == wanted:
        return match, None
    if match is newest:
        return match, (f"verl {version} is newer than compat's table (checked up to {newest.version}): "
                       f"using {newest.version}'s keys")
    return match, f"verl {version}: using the keys of verl {match.version}, the nearest older release compat read"


def _runtime_env_vars(rep: Any, environ: Mapping[str, str]) -> Tuple[Dict[str, str], List[str], List[str]]:
    """(env vars for Ray workers, names compat chose, notes): the profile's exports plus the COMPAT_* switches."""
    from .ray import EXPORTED_VAR
    from .shell import plan_exports

    env: Dict[str, str] = {}
    ours: List[str] = []
    notes: List[str] = []
    for e in plan_exports(rep, environ):
        if e.status == "export":
            env[e.name] = e.value
            ours.append(e.name)
        elif e.status == "kept":
            env[e.name] = e.user_value or ""
            notes.append(f"{e.name}: passing your value {e.user_value!r} to Ray workers; compat would set "
                         f"{e.value!r} ({e.reason})")
        elif e.status == "secret":
            notes.append(f"{e.name}: a secret; not put on the command line")
    for name, value in sorted(environ.items()):
        if name.startswith("COMPAT_") and name not in (EXPORTED_VAR, "COMPAT_AUTOLOAD", "COMPAT_MATRIX_ENV"):
            env[name] = value
    if ours:
        env[EXPORTED_VAR] = ",".join(ours)
    return env, ours, notes


def overrides(rep: Any, environ: Mapping[str, str] = os.environ,
              verl: Optional[str] = None) -> Tuple[List[str], List[str]]:
    """(overrides, comments) for a compat report and a verl version (None: the installed one); pure."""
    r = rep.resolved
    sw = rep.environment.software
    installed = sw.version("verl")
    rel, why = release_for(verl or installed)
    vllm = sw.version("vllm")
    out: List[str] = []
    notes: List[str] = [f"compat profile {r.profile.name}: {r.profile.description}".rstrip(": ")]
    notes.append(f"verl {verl or installed or rel.version}: keys read by verl {rel.version} "
                 f"(compat/data/verl.toml)")
    if why:
        notes.append(why)
    dtype = r.dtype
    out.append(f"{rel.rollout_dtype}={dtype}")

    # attention
    attn = r.hf_attn_implementation
    if rel.attn_honoured:
        out.extend(f"{key}={hydra_value(attn)}" for key in rel.attn_keys)
    elif attn != "flash_attention_2":
        notes.append(f"attention: verl {rel.version} hard-codes attn_implementation=\"flash_attention_2\" "
                     f"({rel.attn_source}); no key reaches it: compat's transformers patch set serves that request "
                     f"with {attn} in every process where compat is set up (the Ray workers, see below)")
    if attn != "flash_attention_2":
        out.extend(f"{key}=False" for key in rel.remove_padding)
        notes.append(f"use_remove_padding off: verl's padding-free path needs flash-attn varlen; HF attention "
                     f"here is {attn}")

    # FSDP training dtype (and load dtype where the release loads a role in bfloat16)
    for _role, key in rel.fsdp_dtype:
        out.append(f"{key}={dtype}")
    if dtype != "bfloat16":
        for _role, key in rel.model_dtype:
            out.append(f"{key}={dtype}")
        if rel.loss_scaling:
            notes.append(f"FSDP trains in {dtype}: verl {rel.version}'s actor scales the loss for float16 "
                         f"(GradScaler); compat adds no loss scaling of its own")
        else:
            notes.append(f"FSDP trains in {dtype}: verl {rel.version} has no loss scaling for float16 (its actor "
                         f"has no GradScaler): watch for gradient underflow; compat adds none")

    # rollout engine
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
    notes.append("vLLM rollout workers: compat is set up there by the vllm.general_plugins entry point "
                 "(vLLM >= 0.5.5)")

    # Ray workers
    env, _ours, env_notes = _runtime_env_vars(rep, environ)
    notes.extend(env_notes)
    if rel.ray_runtime_env == "ray_kwargs":
        out.extend(f"{RUNTIME_ENV}.env_vars.{name}={hydra_value_str(value)}" for name, value in env.items())
        out.append(f"{RUNTIME_ENV}.worker_process_setup_hook={HOOK}")
    else:
        shell_env = " ".join(f"{n}={shlex.quote(v)}" for n, v in env.items() if n != "COMPAT_RAY_EXPORTED")
        notes.append(f"Ray: verl {rel.version} starts Ray with a fixed runtime_env ({rel.ray_source}); no key "
                     f"reaches its workers. Start verl (or `ray start` on each node) from a shell with the "
                     f"profile's env and compat's autoload, which the raylet passes on to every worker: "
                     f"eval \"$(python -m compat env)\"; export COMPAT_AUTOLOAD=1"
                     + (f"   (here: {shell_env})" if shell_env else ""))
    for f in rep.findings:
        if f.severity == "error":
            notes.append(f"ERROR {f.message}" + (f" (fix: {f.fix})" if f.fix else ""))
    return out, notes


def hydra_value_str(value: str) -> str:
    """Always a Hydra quoted string: env var values must reach ray.init as str, whatever they look like."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m compat verl-overrides",
                       description="Print Hydra overrides for verl's trainer from this machine's profile.")
    p.add_argument("--hardware", metavar="FILE", help="simulate the machine described in FILE")
    p.add_argument("--profile", metavar="NAME", help="use this profile instead of choosing one")
    p.add_argument("--verl", metavar="VERSION", help="the verl release to write for (default: the installed one)")
    p.add_argument("--format", choices=("lines", "args"), default="lines",
                   help="lines: one Hydra override per line, verbatim, with comments (default); "
                        "args: one shell-quoted line")
    return p


def run(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.verl is not None:
        versions.parse(args.verl, what="--verl")
    from .._setup import build_report
    rep = build_report(args.hardware, args.profile, environ=os.environ)
    out, notes = overrides(rep, os.environ, verl=args.verl)
    if args.format == "args":
        sys.stdout.write(" ".join(shlex.quote(o) for o in out) + "\n")
        for n in notes:
            sys.stderr.write(f"# {n}\n")
    else:
        sys.stdout.write("".join(f"# {n}\n" for n in notes) + "".join(f"{o}\n" for o in out))
    return 1 if not rep.ok else 0


__all__ = ["overrides", "run", "hydra_value", "hydra_value_str", "release_for", "releases", "VerlRelease",
           "CompatError"]
