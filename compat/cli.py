"""Command line: `python -m compat <command>` (also the `compat` console script).

Exit status: 0 fine, 1 error findings, 2 bad usage or bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import importlib
import sys
from typing import List, Optional

from .errors import CompatError

# command -> "module:function" taking argv and returning an exit status; imported only when used
COMMANDS = {
    "doctor": ("compat.report.doctor:run", "report hardware, software, profile, env, patches and findings"),
    "patches": ("compat.patches.cli:run", "list patch sets and their status for the installed or given vLLM"),
    "plan": ("compat.install.cli:plan", "plan a torch + vLLM + flash-attn set for this GPU and driver"),
    "install": ("compat.install.cli:install", "carry out the plan (dry-run unless --yes)"),
    "env": ("compat.integrations.shell:run", "print the profile's env exports for shell scripts"),
    "verl-overrides": ("compat.integrations.verl:run", "print Hydra overrides for verl"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return f"usage: python -m compat <command> [options]\n\ncommands:\n{rows}\n"


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(_usage())
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        sys.stderr.write(f"compat: unknown command {cmd!r}\n{_usage()}")
        return 2
    target, _ = COMMANDS[cmd]
    mod, func = target.split(":")
    try:
        fn = getattr(importlib.import_module(mod), func)
    except (ImportError, AttributeError):
        sys.stderr.write(f"compat: command {cmd!r} is not available in this build\n")
        return 2
    try:
        return int(fn(rest) or 0)
    except BrokenPipeError:  # `python -m compat plan | head -1`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush cannot fail again
        return 141
    except CompatError as exc:
        sys.stderr.write(f"compat {cmd}: error: {exc}\n")
        return 2
    except SystemExit as exc:  # argparse: --help is 0, bad usage 2
        return exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
