"""Findings: what compat noticed about a machine, each with the fix when there is one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Tuple

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    id: str
    severity: str  # "error" | "warning" | "info"
    message: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def as_dict(self) -> Dict[str, str]:
        return {"id": self.id, "severity": self.severity, "message": self.message, "fix": self.fix}


def errors(findings: Iterable[Finding]) -> Tuple[Finding, ...]:
    return tuple(f for f in findings if f.severity == "error")
