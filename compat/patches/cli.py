"""`python -m compat patches [--vllm VERSION] [--json] [--verify]`: every patch and its status.

Exit 0, or 1 when a patch is refused (its target drifted). Bad input (a malformed --vllm version, bad usage)
raises compat.errors.CompatError (compat._args makes argparse do the same), which compat/cli.py's main turns into one
`compat patches: error: ...` line and exit 2, like every other command.
"""

from __future__ import annotations

import json
from typing import List, Optional

from .._args import ArgumentParser


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m compat patches", description="vLLM patches compat knows, with their status.")
    p.add_argument("--vllm", metavar="VERSION", help="report for this vLLM version instead of the installed one")
    p.add_argument("--json", action="store_true", help="machine-readable output (a list of objects)")
    p.add_argument("--ledger", action="store_true",
                   help="print the ledger table of every declared patch (markdown, from the Patch fields)")
    p.add_argument("--write", metavar="FILE", help="with --ledger: replace the ledger block in FILE (docs/patches.md)")
    p.add_argument("--verify", action="store_true",
                   help="import the installed vLLM's patch targets and check their fingerprints (slow: imports vLLM)")
    return p


def run(argv: Optional[List[str]] = None) -> int:
    """0 ok, 1 when a patch is refused; CompatError on a bad version string (compat/cli.py: exit 2)."""
    args = _parser().parse_args(argv)
    if args.write and not args.ledger:
        from ..errors import CompatError

        raise CompatError("--write goes with --ledger (python -m compat patches --ledger --write docs/patches.md)")
    if args.ledger:
        from . import ledger
        from .engine import registry

        if args.write:
            changed = ledger.write(args.write, registry())
            print(f"{args.write}: ledger {'updated' if changed else 'already current'}")
        else:
            print(ledger.render(registry()), end="")
        return 0
    from ..switches import Switches
    from .engine import format_status_table, installed_version, status, status_dicts

    Switches.parse().opt_ins()  # a malformed opt-in switch is an error here as in setup() and doctor
    switches = None
    if installed_version("transformers") is not None:  # hf_dtype's default is the profile's (on for V100/T4)
        from ..errors import CompatError
        from ..report.build import build_report

        try:
            switches = dict(build_report().switches)
        except CompatError:  # a bad hardware/profile knob is doctor's to report; statuses then show the env's view
            switches = None
    rows = status(args.vllm, switches, verify=args.verify)
    if args.json:
        print(json.dumps(status_dicts(rows), indent=2))
    else:
        print(format_status_table(rows))
    return 1 if any(r.status == "refused" for r in rows) else 0
