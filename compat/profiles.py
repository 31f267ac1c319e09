"""Profiles: per-GPU-family settings kept as TOML in the top-level profiles/ directory.

Shipped profiles live in compat/profiles inside the wheel (profiles/ in a source checkout). Directories in
COMPAT_PROFILE_PATH (os.pathsep-separated) add profiles or override shipped ones by name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ._toml import load_toml
from .errors import CompatError
from .findings import Finding
from .schema import Table
from .switches import Switches

_HERE = Path(__file__).resolve().parent
DTYPES = ("float16", "bfloat16", "float32")
HF_ATTN = ("flash_attention_2", "sdpa", "eager")


@dataclass(frozen=True)
class EnvRule:
    """An env var a profile exports, optionally only for some GPU names / old drivers / multi-GPU."""
    name: str
    value: str
    reason: str = ""
    names: Tuple[str, ...] = ()
    driver_below: Optional[str] = None
    min_gpus: int = 1
    p2p_check: bool = False  # works around broken P2P: doctor --deep's cached verdict overrides driver_below


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    path: str
    dtype: str
    hf_attn_implementation: str
    flash_attention_2: bool
    attention: str                      # column of vllm_attention.toml [range.choose]
    fp8: bool
    sm_min: Optional[int] = None
    sm_max: Optional[int] = None
    cpu: bool = False
    env: Tuple[EnvRule, ...] = ()
    refuse_dtypes: Tuple[str, ...] = ()
    refuse_vllm: Optional[str] = None   # specifier of vLLM releases that cannot run here
    refuse_fp8: str = ""                # why FP8 is refused ("" = allowed when fp8 is true)

    def matches_sm(self, sm: int) -> bool:
        return (not self.cpu and self.sm_min is not None and self.sm_max is not None
                and self.sm_min <= sm <= self.sm_max)


def profile_dirs(environ: Mapping[str, str] = os.environ) -> List[Path]:
    """Shipped directory first, then user directories, so user profiles win by name."""
    shipped = _HERE / "profiles"
    dirs = [shipped if shipped.is_dir() else _HERE.parent / "profiles"]
    for d in Switches.parse(environ).profile_path:
        p = Path(d).expanduser()
        if not p.is_dir():
            raise CompatError(f"COMPAT_PROFILE_PATH names {p}, which is not a directory; fix or unset it")
        dirs.append(p)
    return dirs


FIX = "see profiles/README.md"


def _parse(path: Path) -> Profile:
    """One typed schema per profile file: a wrong type or value is an error naming file, field and value."""
    d = Table(load_toml(path, what="profile"), f"profile {path}", FIX)
    d.only(("name", "description", "match", "settings", "env", "refuse"))
    match, s, refuse = d.table("match"), d.table("settings"), d.table("refuse")
    match.only(("sm_min", "sm_max", "cpu"))
    s.only(("dtype", "hf_attn_implementation", "flash_attention_2", "attention", "fp8"))
    refuse.only(("dtypes", "vllm", "fp8"))
    if not d.has("settings"):
        raise CompatError(f"profile {path} lacks `settings`; {FIX}")
    dtype = s.text("dtype", required=True)
    if dtype not in DTYPES:
        raise s.error("dtype", dtype, f"one of {', '.join(DTYPES)}")
    hf = s.text("hf_attn_implementation", required=True)
    if hf not in HF_ATTN:
        raise s.error("hf_attn_implementation", hf, f"one of {', '.join(HF_ATTN)}")
    rules = []
    for r in d.tables("env"):
        r.only(("name", "value", "reason", "names", "driver_below", "min_gpus", "p2p_check"))
        rules.append(EnvRule(name=r.text("name", required=True, nonempty=True), value=r.text("value", required=True),
                             reason=r.text("reason", ""), names=r.strings("names"),
                             driver_below=r.text("driver_below"), min_gpus=r.whole("min_gpus", 1, minimum=0),
                             p2p_check=bool(r.flag("p2p_check"))))
    cpu = match.flag("cpu")
    sm_min, sm_max = match.whole("sm_min", minimum=0), match.whole("sm_max", minimum=0)
    if not cpu and (sm_min is None or sm_max is None):
        raise CompatError(f"profile {path}: [match] needs sm_min and sm_max (or cpu = true); {FIX}")
    return Profile(
        name=d.text("name", required=True, nonempty=True), description=d.text("description", ""), path=str(path),
        dtype=dtype, hf_attn_implementation=hf, flash_attention_2=s.flag("flash_attention_2"),
        attention=s.text("attention", required=True, nonempty=True), fp8=s.flag("fp8"),
        sm_min=sm_min, sm_max=sm_max, cpu=cpu, env=tuple(rules),
        refuse_dtypes=refuse.strings("dtypes", choices=DTYPES), refuse_vllm=refuse.text("vllm"),
        refuse_fp8=refuse.text("fp8", ""))


_loaded: Dict[Tuple[str, ...], Dict[str, Profile]] = {}


def load_profiles(environ: Mapping[str, str] = os.environ) -> Dict[str, Profile]:
    """All profiles by name; later directories override earlier ones. Parsed once per directory list."""
    dirs = profile_dirs(environ)
    key = tuple(str(d) for d in dirs)
    if key not in _loaded:
        out: Dict[str, Profile] = {}
        for d in dirs:
            for path in sorted(d.glob("*.toml")):  # a FIFO or device named *.toml: an error, never a hang
                p = _parse(path)
                out[p.name] = p
        _loaded[key] = out
    return _loaded[key]


def get_profile(name: str, environ: Mapping[str, str] = os.environ) -> Profile:
    profiles = load_profiles(environ)
    if name not in profiles:
        raise CompatError(f"unknown profile {name!r}; known profiles: {', '.join(sorted(profiles))} "
                          "(add your own with COMPAT_PROFILE_PATH)")
    return profiles[name]


def select_profile(sms: Sequence[int], environ: Mapping[str, str] = os.environ,
                   requested: Optional[str] = None) -> Tuple[Profile, Tuple[Finding, ...]]:
    """Profile for the visible GPUs (their compute capabilities as 80, 90...).

    A mixed node gets the profile of its oldest GPU, whose settings every GPU can run. An unknown newer GPU
    gets the nearest lower profile plus a warning; a GPU older than sm70 an error.
    """
    profiles = load_profiles(environ)
    name = requested or Switches.parse(environ).profile
    findings: List[Finding] = []
    if name:
        p = get_profile(name, environ)
        findings.append(Finding("profile-override", "info", f"profile {name!r} chosen by "
                                f"{'setup(profile=...)/--profile' if requested else 'COMPAT_PROFILE'}"))
        return p, tuple(findings)
    if not sms:
        cpu = [p for p in profiles.values() if p.cpu]
        if not cpu:
            raise CompatError("no CPU profile found; a user profile directory must not remove it")
        return cpu[0], ()
    sm = min(sms)
    if len(set(sms)) > 1:
        findings.append(Finding("mixed-gpus", "warning",
                                f"GPUs of different generations are visible (sm {sorted(set(sms))}); using "
                                f"settings of the oldest (sm{sm}), which every GPU supports",
                                "set CUDA_VISIBLE_DEVICES to one GPU model per job for full speed"))
    gpu_profiles = sorted((p for p in profiles.values() if not p.cpu), key=lambda p: p.sm_min or 0)
    for p in gpu_profiles:
        if p.matches_sm(sm):
            return p, tuple(findings)
    lower = [p for p in gpu_profiles if (p.sm_max or 0) < sm]
    if not lower:  # older than the oldest profile (sm70: the oldest GPU vLLM and current torch builds support)
        findings.append(Finding("gpu-unsupported", "error",
                                f"GPU compute capability sm{sm} is older than sm70, the oldest vLLM and current "
                                "PyTorch CUDA builds support", "use a GPU of sm70 (V100) or newer, or run on CPU "
                                "with COMPAT_PROFILE=cpu"))
        if not gpu_profiles:
            raise CompatError("no GPU profile found; a user profile directory must not remove them all")
        return gpu_profiles[0], tuple(findings)
    p = lower[-1]
    findings.append(Finding("gpu-unknown-newer", "warning",
                            f"no profile knows sm{sm}; using the nearest older one, {p.name!r}",
                            "upgrade compat, or add a profile in COMPAT_PROFILE_PATH"))
    return p, tuple(findings)
