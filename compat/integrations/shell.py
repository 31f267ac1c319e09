"""`python -m compat env`: the profile's env exports for shell scripts.

    eval "$(python -m compat env)"                 # bash, zsh, sh
    python -m compat env --shell fish | source     # fish
    python -m compat env --shell dotenv > .env     # docker --env-file, systemd EnvironmentFile, python-dotenv

Replaces the machine-specific lines hand-edited into train scripts. A variable you already set to another value
is never printed as an export (a comment says what compat would have set); secrets are never printed.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Mapping, Optional, Tuple

from .._args import ArgumentParser
from ..apply.env import keeps_user_value, redact
from ..errors import CompatError

if TYPE_CHECKING:
    from ..report.model import Report

SHELLS = ("bash", "fish", "dotenv")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Export:
    """One variable the profile wants, and what to do with it for a process started from `environ`."""
    name: str
    value: str
    reason: str
    status: str          # "export" | "kept" (the user set another value) | "secret" | "bad-name"
    user_value: Optional[str] = None


def plan_exports(rep: Report, environ: Mapping[str, str] = os.environ) -> Tuple[Export, ...]:
    """The profile's variables (report.resolved.env), each marked export / kept / secret against `environ`.

    Shared by `env`, ray_runtime_env() and verl-overrides, so all three agree on what reaches another process.
    """
    out: List[Export] = []
    for name, value, reason in rep.resolved.env:
        user = environ.get(name)
        if not _NAME.match(name):
            status = "bad-name"
        elif redact(name, value) != value:
            status = "secret"
        elif keeps_user_value(name, str(value), environ):
            status = "kept"
        else:
            status = "export"
        out.append(Export(name, str(value), reason, status, user))
    return tuple(out)


def _comment(text: str) -> str:
    return "# " + " ".join(str(text).split())


def _fish_quote(value: str) -> str:
    # fish single quotes: only \\ and \' are special inside them
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _dotenv_quote(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./:,+=@%-]*", value):
        return value
    if "'" not in value and "\n" not in value:
        return "'" + value + "'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")
    return '"' + escaped.replace("\n", "\\n") + '"'


def format_line(shell: str, name: str, value: str) -> str:
    if shell == "bash":
        return f"export {name}={shlex.quote(value)}"
    if shell == "fish":
        return f"set -gx {name} {_fish_quote(value)}"
    if shell == "dotenv":
        return f"{name}={_dotenv_quote(value)}"
    raise CompatError(f"unknown shell {shell!r}; use one of {', '.join(SHELLS)}")


def render(rep: Report, shell: str = "bash", environ: Mapping[str, str] = os.environ,
           extra: Tuple[Tuple[str, str, str], ...] = ()) -> str:
    """The whole script: a header, one export per line (reason as a comment above), comments for the rest."""
    if shell not in SHELLS:
        raise CompatError(f"unknown shell {shell!r}; use one of {', '.join(SHELLS)}")
    r = rep.resolved
    b = r.attention_backend
    lines = [_comment(f"compat profile {r.profile.name}: dtype {r.dtype}, HF attn_implementation "
                      f"{r.hf_attn_implementation}, vLLM attention backend "
                      f"{b.name if b else '(vLLM default)'}"
                      + (f" (pass {b.option}={b.name} to vLLM; this release does not read an env var)"
                         if b and b.option else ""))]
    plan = plan_exports(rep, environ)
    for name, value, reason in extra:
        plan += (Export(name, value, reason, "kept" if keeps_user_value(name, value, environ) else "export",
                        environ.get(name)),)
    for e in plan:
        if e.status == "export":
            lines += [_comment(e.reason), format_line(shell, e.name, e.value)] if e.reason else \
                [format_line(shell, e.name, e.value)]
        elif e.status == "kept":
            lines.append(_comment(f"{e.name}: kept your value {redact(e.name, e.user_value or '')!r}; compat "
                                  f"would set {e.value!r} ({e.reason}). Unset {e.name} to use compat's choice."))
        elif e.status == "secret":
            lines.append(_comment(f"{e.name}: a secret; not printed ({e.reason})"))
        else:
            lines.append(_comment(f"{e.name!r} is not a valid variable name; skipped"))
    if not any(e.status == "export" for e in plan):
        lines.append(_comment("nothing to export for this machine"))
    for f in rep.findings:
        if f.severity == "error":
            lines.append(_comment(f"ERROR {f.message}" + (f" (fix: {f.fix})" if f.fix else "")))
    return "\n".join(lines) + "\n"


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m compat env",
                                description="Print the profile's env exports: eval \"$(python -m compat env)\".")
    p.add_argument("--shell", choices=SHELLS, default="bash", help="output syntax (default bash; also zsh/sh)")
    p.add_argument("--hardware", metavar="FILE", help="simulate the machine described in FILE")
    p.add_argument("--profile", metavar="NAME", help="use this profile instead of choosing one")
    return p


def run(argv: Optional[List[str]] = None) -> int:
    """Exit 0, or 1 when the report has error findings (the exports are printed either way), 2 on bad input."""
    args = parser().parse_args(argv)
    from ..report.build import build_report
    rep = build_report(args.hardware, args.profile, environ=os.environ)
    extra: Tuple[Tuple[str, str, str], ...] = ()
    if args.profile:
        # later `compat.setup()` calls in the processes this shell starts pick the same profile
        extra = (("COMPAT_PROFILE", args.profile, "profile chosen with --profile"),)
    sys.stdout.write(render(rep, args.shell, os.environ, extra))
    errors = [f for f in rep.findings if f.severity == "error"]
    for f in errors:
        sys.stderr.write(f"compat env: {f.message}\n")
    return 1 if errors else 0
