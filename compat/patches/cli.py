"""`python -m compat patches [--vllm VERSION] [--json] [--verify]`: every patch and its status.

Exit 0, or 1 when a patch is refused (its target drifted), 2 on bad input (one line, no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from ..errors import CompatError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compat patches", description="vLLM patches compat knows, with their status.")
    p.add_argument("--vllm", metavar="VERSION", help="report for this vLLM version instead of the installed one")
    p.add_argument("--json", action="store_true", help="machine-readable output (a list of objects)")
    p.add_argument("--verify", action="store_true",
                   help="import the installed vLLM's patch targets and check their fingerprints (slow: imports vLLM)")
    return p


def run(argv: Optional[List[str]] = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage + message
        return int(exc.code or 0)
    from .engine import format_status_table, status, status_dicts

    try:
        rows = status(args.vllm, verify=args.verify)
    except CompatError as exc:
        print(f"compat patches: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(status_dicts(rows), indent=2))
    else:
        print(format_status_table(rows))
    return 1 if any(r.status == "refused" for r in rows) else 0
