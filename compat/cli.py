"""Command line: `python -m compat <command>` (also the `compat` console script).

Exit status: 0 fine, 1 error findings, 2 bad usage or bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, List, Optional

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


def _guard_streams() -> None:
    """Output can always be written: a closed stdout/stderr (`>&-`) becomes /dev/null (the exit status still
    answers), and text the output encoding cannot carry (an ASCII locale) is escaped instead of raising."""
    import io
    import os

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
        elif isinstance(stream, io.TextIOWrapper):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


def _say(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr itself is closed or full: the exit status is all that is left


def _silence_stdout() -> None:
    """After stdout failed, point fd 1 at /dev/null so the interpreter's exit-time flush cannot fail again."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Optional[List[str]] = None) -> int:
    _guard_streams()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        _say(f"compat: error: no command given; commands: {', '.join(COMMANDS)} (python -m compat --help)\n")
        return 2
    if argv[0] in ("-h", "--help"):
        return _finish(lambda: sys.stdout.write(_usage()) and 0, "compat")
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        _say(f"compat: error: unknown command {cmd!r}; commands: {', '.join(COMMANDS)} (python -m compat --help)\n")
        return 2
    target, _ = COMMANDS[cmd]
    mod, func = target.split(":")
    try:
        fn = getattr(importlib.import_module(mod), func)
    except (ImportError, AttributeError):
        _say(f"compat: command {cmd!r} is not available in this build\n")
        return 2
    return _finish(lambda: int(fn(rest) or 0), f"compat {cmd}")


def _finish(run: Callable[[], int], who: str) -> int:
    """Run a command with compat's exit contract: 0/1 its answer, 2 bad input or unwritable output (one line on
    stderr), 141 a reader that left (`| head`), 130 Ctrl-C. Never a traceback for these."""
    try:
        code = run()
        sys.stdout.flush()  # a full disk or /dev/full shows up here, not at interpreter exit
        return code
    except BrokenPipeError:  # `python -m compat plan | head -1`: the reader left; not an error of ours
        _silence_stdout()
        return 141
    except CompatError as exc:
        _say(f"{who}: error: {' '.join(str(exc).split())}\n")
        return 2
    except SystemExit as exc:  # argparse: --help is 0, bad usage 2
        return exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # writing the answer failed: /dev/full, a closed or revoked terminal
        _silence_stdout()
        _say(f"{who}: error: cannot write the output ({exc.strerror or exc}); check where stdout goes\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
