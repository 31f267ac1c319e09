"""Doctor's checks: compat/checks.py's, plus the installer's "this environment does not match the plan"."""

from __future__ import annotations

from typing import List, Mapping

from ..checks import CHECKS as BASE_CHECKS
from ..checks import Check
from ..choose import Resolved
from ..detect.model import Environment
from ..findings import Finding
from ..hf.checks import hf_loading  # issue 12: what the transformers sets do here
from ..install.check import plan_mismatch  # issue 7: this environment vs the installer's plan

CHECKS: List[Check] = [*BASE_CHECKS, plan_mismatch, hf_loading]


def run_checks(env: Environment, r: Resolved, environ: Mapping[str, str]) -> List[Finding]:
    out: List[Finding] = []
    for check in CHECKS:
        out.extend(check(env, r, environ))
    return out
