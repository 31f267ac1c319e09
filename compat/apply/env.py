"""Export env vars for this process and the workers it starts, never overwriting what the user set."""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, MutableMapping, Tuple

from ..findings import Finding

_SECRET = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.I)
_lock = threading.Lock()
_ours: Dict[str, str] = {}   # variables compat exported in this process, so a later setup() may update them


@dataclass(frozen=True)
class EnvResult:
    set: Tuple[Tuple[str, str], ...]          # exported by compat now (or earlier in this process)
    kept: Tuple[Tuple[str, str, str], ...]    # (name, user's value, compat's value) left as the user had it
    findings: Tuple[Finding, ...]


def redact(name: str, value: str) -> str:
    return "***" if _SECRET.search(name) else value


def keeps_user_value(name: str, value: str, environ: Mapping[str, str]) -> bool:
    """The one rule for "export or keep": a value the user set to something else is theirs. A value compat exported
    itself in this process is not the user's (a later setup() may update it). Used by setup()/doctor and by
    `compat env` / ray_runtime_env / verl-overrides (compat/integrations/shell.py)."""
    current = environ.get(name)
    return not (current is None or current == value or _ours.get(name) == current)


def _split(wanted: Iterable[Tuple[str, str, str]], environ: MutableMapping[str, str]) -> EnvResult:
    """Which of (name, value, reason) compat may set here, and which the user already set otherwise."""
    done: List[Tuple[str, str]] = []
    kept: List[Tuple[str, str, str]] = []
    findings: List[Finding] = []
    for name, value, reason in wanted:
        current = environ.get(name)
        if not keeps_user_value(name, value, environ):
            done.append((name, value))
        else:
            assert current is not None
            kept.append((name, current, value))
            findings.append(Finding(
                "env-conflict", "warning",
                f"{name}={redact(name, current)} is set by you; compat would set {redact(name, value)} "
                f"({reason})", f"unset {name} to use compat's choice, or keep yours deliberately"))
    return EnvResult(tuple(done), tuple(kept), tuple(findings))


def preview(wanted: Iterable[Tuple[str, str, str]], environ: MutableMapping[str, str] = os.environ) -> EnvResult:
    """What export() would do, without changing anything (doctor)."""
    with _lock:
        return _split(wanted, environ)


def export(wanted: Iterable[Tuple[str, str, str]], environ: MutableMapping[str, str] = os.environ) -> EnvResult:
    """Set each (name, value, reason) unless the user already set the name to something else."""
    with _lock:
        result = _split(wanted, environ)
        for name, value in result.set:
            if environ.get(name) != value:  # unset, or compat's own earlier value: ours to (re)set
                environ[name] = value
                _ours[name] = value
        return result


def user_environ(environ: MutableMapping[str, str] = os.environ) -> Dict[str, str]:
    """The environment without the variables compat exported itself: what the *user* set, for the checks."""
    with _lock:
        return {k: v for k, v in environ.items() if _ours.get(k) != v}


def unexport(environ: MutableMapping[str, str] = os.environ) -> None:
    """Remove the variables compat set (used by compat.revert())."""
    with _lock:
        for name, value in list(_ours.items()):
            if environ.get(name) == value:
                del environ[name]
            del _ours[name]
