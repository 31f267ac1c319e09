"""Resolve a profile against a machine: the dtype, attention settings and env vars this process should use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, cast

from . import versions
from ._toml import DATA_DIR, load_data
from .detect.model import Environment, Software
from .errors import CompatError
from .findings import Finding
from .knowledge import flash_attn_problems
from .profiles import DTYPES, Profile


@dataclass(frozen=True)
class Backend:
    """The vLLM attention backend for the installed release and how that release is told about it."""
    name: str
    env_var: str = ""          # set this variable (releases that read it)
    option: str = ""           # or pass this engine argument (releases that deprecated/removed the variable)


@dataclass(frozen=True)
class Resolved:
    profile: Profile
    dtype: str
    hf_attn_implementation: str
    attention_backend: Optional[Backend]
    env: Tuple[Tuple[str, str, str], ...]      # (name, value, reason) the profile wants exported
    fp8: bool
    findings: Tuple[Finding, ...] = ()

    def as_dict(self) -> Dict[str, Any]:
        b = self.attention_backend
        return {"name": self.profile.name, "dtype": self.dtype,
                "attention_backend": b.name if b else None,
                "attention_backend_via": (f"env:{b.env_var}" if b and b.env_var else
                                          f"option:{b.option}" if b and b.option else None),
                "hf_attn_implementation": self.hf_attn_implementation, "fp8": self.fp8}


def attention_range(vllm_version: Optional[str]) -> Optional[Dict[str, Any]]:
    """The vllm_attention.toml range a vLLM release falls in, or None."""
    if vllm_version is None or not (DATA_DIR / "vllm_attention.toml").exists():
        return None
    for r in load_data("vllm_attention").get("range", []):
        if versions.in_spec(vllm_version, r["versions"]):
            return cast(Dict[str, Any], r)
    return None


def _column(profile: Profile, choose: Dict[str, Any], sm: Optional[int]) -> str:
    """The vllm_attention.toml column for this GPU: the profile's own, or a more specific one inside the
    profile's range (a Blackwell profile spans sm100 and sm120, which vLLM treats differently)."""
    if sm is None or profile.cpu or profile.sm_min is None:
        return profile.attention
    inside = [int(k[2:]) for k in choose if k.startswith("sm") and k[2:].isdigit()
              and profile.sm_min <= int(k[2:]) <= sm]
    return f"sm{max(inside)}" if inside else profile.attention


def _missing_kernel(r: Dict[str, Any], name: str, software: Optional[Software]) -> Optional[List[str]]:
    """The distributions backend `name` needs that this release does not install by default
    (vllm_attention.toml [range.requires], checked against the harvested dist metadata), when none of them is
    installed (or planned: `software` may be a plan's package set); None when the backend can run.
    Read from package metadata only: never imports the kernel package."""
    dists = r.get("requires", {}).get(name)
    if not dists or software is None:
        return None
    if any(software.version(d) for d in dists):
        return None
    return list(dists)


def _kernel_requirement(vllm_version: str, dists: List[str]) -> str:
    """The exact requirement the release's own metadata gives the kernel package (harvested), else its name."""
    from .harvested import load

    h = load(vllm_version)
    for k in (h.kernels.values() if h else ()):
        if k.requirement and any(k.requirement.lower().startswith(d) for d in dists):
            return k.requirement
    return dists[0]


def choose_backend(profile: Profile, vllm_version: Optional[str],
                   sm: Optional[int] = None,
                   software: Optional[Software] = None) -> Tuple[Optional[Backend], List[Finding]]:
    if vllm_version is None:
        return None, []
    r = attention_range(vllm_version)
    if r is None:
        return None, [Finding("vllm-release-unknown", "warning",
                              f"compat has no attention-backend data for vLLM {vllm_version}",
                              "upgrade compat; vLLM will pick its own attention backend")]
    choose = r.get("choose", {})
    column = _column(profile, choose, sm)
    name = choose.get(column, "")
    if not name:
        return None, []
    missing = _missing_kernel(r, name, software)
    if missing:
        # Exporting a backend whose kernel package is absent makes the engine fail at start (vLLM 0.9.1-0.11.0
        # on B200: FLASHINFER is an optional extra). Leave the choice to vLLM, which then picks `fallback`.
        own = r.get("fallback", {}).get(column, "")
        return (Backend(own) if own else None), [Finding(
            "attention-backend-not-installed", "warning",
            f"vLLM {vllm_version} prefers {name} on this GPU, but {' / '.join(missing)} is not installed "
            f"(not a default dependency of this release); compat exports no backend and vLLM picks "
            f"{own or 'its own'}", f"pip install '{_kernel_requirement(vllm_version, missing)}' for the "
            f"{name} backend")]
    if r.get("env_var") and r.get("env_var_status", "read") == "read":
        return Backend(name, env_var=r["env_var"]), []
    if r.get("config_option"):
        return Backend(name, option=r["config_option"]), []
    return Backend(name), []


def _p2p_verdict(env: Environment) -> Optional[bool]:
    """doctor --deep's cached multi-GPU verdict for this boot, driver and GPU set (None: never checked)."""
    if env.hardware_file:
        return None  # a simulated machine follows its data, not this machine's cache
    from .detect.p2p_verdict import p2p_ok

    return p2p_ok(env.hardware.driver, [g.uuid for g in env.hardware.gpus])


def resolve(profile: Profile, env: Environment, dtype: Optional[str] = None,
            fp8: Optional[bool] = None) -> Resolved:
    """Apply the profile's rules to this machine and its installed packages."""
    findings: List[Finding] = []
    sw, hw = env.software, env.hardware
    chosen_dtype = dtype or profile.dtype
    if chosen_dtype not in DTYPES:
        raise CompatError(f"dtype {chosen_dtype!r} is not one of {', '.join(DTYPES)}")
    if chosen_dtype in profile.refuse_dtypes:
        findings.append(Finding("dtype-unsupported", "error",
                                f"{chosen_dtype} was requested but profile {profile.name!r} cannot run it "
                                f"(bfloat16 needs sm80 or newer)", f"use dtype={profile.dtype!r}"))
    hf_attn = profile.hf_attn_implementation
    fa = sw.version("flash-attn")
    if profile.flash_attention_2 and fa is not None and not flash_attn_problems(fa, sw.version("torch"), hw.min_sm):
        hf_attn = "flash_attention_2"
    backend, more = choose_backend(profile, sw.version("vllm"), hw.min_sm, sw)
    findings += more
    env_rules = []
    names = [g.name for g in hw.gpus]
    for rule in profile.env:
        if rule.names and not any(n in gpu for n in rule.names for gpu in names):
            continue
        if len(hw.gpus) < rule.min_gpus:
            continue
        measured = _p2p_verdict(env) if rule.p2p_check else None
        if measured is not None:
            if measured:  # doctor --deep proved P2P sound on this machine: no workaround
                continue
        elif rule.driver_below and (hw.driver is None or
                                    versions.driver_tuple(hw.driver) >= versions.driver_tuple(rule.driver_below)):
            continue
        env_rules.append((rule.name, rule.value, rule.reason if measured is None
                          else f"{rule.reason}; doctor --deep found P2P broken on this machine"))
    if backend and backend.env_var:
        env_rules.append((backend.env_var, backend.name, f"attention backend for vLLM {sw.version('vllm')} "
                          f"on profile {profile.name}"))
    want_fp8 = profile.fp8 if fp8 is None else fp8
    if fp8 and not profile.fp8:
        findings.append(Finding("fp8-unsupported", "error", profile.refuse_fp8 or
                                f"profile {profile.name!r} has no FP8 compute",
                                "serve in bf16/fp16 on this GPU, or use an sm89+ GPU (L40S, H100) for FP8"))
        want_fp8 = False
    return Resolved(profile=profile, dtype=chosen_dtype, hf_attn_implementation=hf_attn,
                    attention_backend=backend, env=tuple(env_rules), fp8=want_fp8, findings=tuple(findings))
