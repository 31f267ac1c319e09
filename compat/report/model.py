"""Report: a plain snapshot of what compat found and decided for one process; `as_dict()` is the JSON contract
(docs/json-contract.md).

No caching, switch rules or kwargs builders here (compat/_setup.py, compat/switches.py, compat/kwargs.py).
`checks`, `patches` and `findings` are views computed when read, not when the snapshot is taken: doctor's checks read
the knowledge tables (and packaging), which a Ray or vLLM worker calling setup() should not pay for, and patch
statuses change once vLLM is imported.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, Tuple

from ..apply import env as envmod
from ..choose import Resolved
from ..detect.model import Environment
from ..findings import Finding, errors

JSON_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Report:
    environment: Environment
    resolved: Resolved
    env_set: Tuple[Tuple[str, str], ...]
    env_kept: Tuple[Tuple[str, str, str], ...]
    setup_findings: Tuple[Finding, ...] = ()       # found while detecting, choosing and exporting
    switches: Tuple[Tuple[str, Any], ...] = ()     # opt-in patch-set switches in force ({"fp8": False}: refused)
    vllm_version: Any = None                        # Optional[str]: the release patch statuses are computed for
    extra_findings: Tuple[Finding, ...] = ()        # added later (doctor --deep)

    @property
    def checks(self) -> Tuple[Finding, ...]:
        """Doctor's checks (compat/report/checks.py), run once on first use."""
        cached = self.__dict__.get("_checks")
        if cached is None:
            from .checks import run_checks

            cached = tuple(run_checks(self.environment, self.resolved, envmod.user_environ()))
            object.__setattr__(self, "_checks", cached)
        return cached  # type: ignore[no-any-return]

    @property
    def patched(self) -> bool:
        """Whether any patched package is installed (vLLM, or transformers for the transformers sets)."""
        return self.vllm_version is not None or self.environment.software.version("transformers") is not None

    @property
    def patches(self) -> Tuple[Any, ...]:
        if not self.patched:
            return ()
        from .. import patches as patchmod

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
        return p.as_dict()  # type: ignore[no-any-return]
    return {"id": getattr(p, "id", str(p)), "status": getattr(p, "status", "unknown")}


def _dedupe(findings: Iterable[Finding]) -> Iterator[Finding]:
    seen = set()
    for f in findings:
        key = (f.id, f.message)
        if key not in seen:
            seen.add(key)
            yield f
