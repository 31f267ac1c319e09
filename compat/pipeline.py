"""The one pipeline every command and setup() share: machine + request -> Resolved.

    machine = pipeline.machine(switches)               # detect, or simulate COMPAT_HARDWARE / --hardware
    resolved = pipeline.resolve(machine, request)      # pure: choose the profile, resolve it on this machine

`resolve` reads profiles (files) but changes nothing: no env export, no patch activation, no caching beyond the
parsed profile files. setup(), doctor, env, verl-overrides and plan/install all call it, so they cannot disagree on
the profile, dtype, backend or env a machine gets. Imports nothing of compat.report or compat.install.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Mapping, Optional, Tuple

from .choose import Resolved
from .choose import resolve as resolve_profile
from .detect import detect
from .detect.model import Environment
from .profiles import select_profile
from .switches import Switches


@dataclass(frozen=True)
class Request:
    """What the caller asks for, beyond the machine: every field already validated (compat.switches)."""
    profile: Optional[str] = None          # setup(profile=)/--profile, else COMPAT_PROFILE; None: choose by GPU
    profile_by_user: bool = False          # named by the caller (keyword/flag) rather than COMPAT_PROFILE
    dtype: Optional[str] = None
    fp8: bool = False                      # FP8 asked for (refused with a finding where the GPU has none)
    profile_path: Tuple[str, ...] = ()     # COMPAT_PROFILE_PATH directories


def request(switches: Switches, profile: Optional[str] = None, dtype: Optional[str] = None,
            fp8: Optional[bool] = None) -> Request:
    """A Request from parsed switches; explicit arguments win over the environment's knobs."""
    return Request(profile=profile or switches.profile, profile_by_user=bool(profile), dtype=dtype,
                   fp8=(switches.fp8 is not None) if fp8 is None else fp8, profile_path=switches.profile_path)


def machine(switches: Switches, environ: Optional[Mapping[str, str]] = None) -> Environment:
    """This machine as the process sees it (cached per process), or the one switches.hardware describes."""
    return detect(switches.hardware, os.environ if environ is None else environ)


def resolve(machine: Environment, request: Request) -> Resolved:
    """Profile for the machine's visible GPUs (or the one requested), resolved against its installed packages."""
    profile_env = {"COMPAT_PROFILE_PATH": os.pathsep.join(request.profile_path)}
    prof, pfind = select_profile([g.sm for g in machine.hardware.gpus], profile_env, requested=request.profile)
    if pfind and pfind[0].id == "profile-override" and not request.profile_by_user:
        pfind = (replace(pfind[0], message=f"profile {request.profile!r} chosen by COMPAT_PROFILE"),) + pfind[1:]
    r = resolve_profile(prof, machine, dtype=request.dtype, fp8=True if request.fp8 else None)
    return replace(r, findings=tuple(pfind) + r.findings)
