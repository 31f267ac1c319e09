"""`python -m compat plan` and `python -m compat install` (dispatched from compat/cli.py).

Exit status: 0 done, 1 no set fits this machine (an error finding with its fix; `plan --format json` prints it as
JSON), the install failed (the snapshot was restored) or doctor found errors after it, 2 bad usage or bad input
(one line on stderr saying what to change).
"""

from __future__ import annotations

import json
import os
import sys
from typing import List, Optional

from .._args import ArgumentParser
from ..detect.model import Environment
from ..errors import CompatError
from .planner import INSTALLERS, Plan, PlanRefused, make_plan, refused_as_dict, requested_releases

FORMATS = ("text", "json", "pip", "uv", "constraints")


def _plan_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m compat plan",
                                description="Plan a torch + vLLM + flash-attn set for this GPU and driver (offline).")
    p.add_argument("request", nargs="?", metavar="REQ", help="vllm (newest that fits, default), vllm==X or a specifier")
    p.add_argument("--hardware", metavar="FILE", help="plan for the machine described in FILE")
    p.add_argument("--format", choices=FORMATS, default="text", help="output (default: text)")
    p.add_argument("--python", metavar="VERSION", help="target Python version (default: this interpreter's)")
    p.add_argument("--installer", choices=INSTALLERS, help="installer of `commands` in text/json (default: uv if on PATH)")
    p.add_argument("--no-flash-attn", action="store_true", help="leave flash-attn out of the plan")
    from ..preflight.cli import add_arguments
    add_arguments(p)  # --model PATH: pre-flight that model against the planned release (compat/preflight/)
    return p


def _default_installer() -> str:
    import shutil
    return "uv" if shutil.which("uv") else "pip"


def _detect(hardware: Optional[str]) -> Environment:
    from .. import pipeline
    from ..switches import Switches
    return pipeline.machine(Switches.parse(os.environ, hardware=hardware))  # --hardware '' is an error


def _make(request: Optional[str], hardware: Optional[str], python: Optional[str], no_fa: bool,
          env: Optional[Environment] = None) -> Plan:
    from dataclasses import replace

    plan = make_plan(env or _detect(hardware), request, python=python)
    if no_fa and plan.flash_attn:
        plan = replace(plan, flash_attn=None, explanations=tuple(
            (w, "none: --no-flash-attn" if w == "flash_attn" else y) for w, y in plan.explanations))
    return plan


def render_text(plan: Plan, installer: str) -> str:
    lines = [f"compat plan: vLLM {plan.vllm} + torch {plan.torch} ({plan.torch_variant}) + flash-attn "
             f"{plan.flash_attn or 'none'}",
             f"  for {', '.join(plan.gpus)}; Python {plan.python}; profile {plan.profile}", "", "Why"]
    for what, why in plan.explanations:
        lines.append(f"  {what:<14} {why}")
    if plan.rejected:
        lines += ["", f"Skipped {len(plan.rejected)} newer release(s)"]
        shown = plan.rejected[:3]
        lines += [f"  {v}: {why[:160]}" for v, why in shown]
        if len(plan.rejected) > 3:
            lines.append("  ... (--format json lists all)")
    if plan.findings:
        lines += ["", "Findings"]
        for f in plan.findings:
            lines.append(f"  {f.severity}: {f.message}" + (f"\n        fix: {f.fix}" if f.fix else ""))
    other = "pip" if installer == "uv" else "uv"
    lines += ["", f"Commands ({installer}; --format {other} for {other}, --format constraints for a pip constraints file)"]
    lines += [f"  {c}" for c in plan.commands(installer)]
    return "\n".join(lines)


def _json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def plan(argv: Optional[List[str]] = None) -> int:
    """Exit 0 a plan, 1 nothing fits (error findings with fixes; JSON too), 2 bad usage or bad input."""
    import platform

    args = _plan_parser().parse_args(argv)
    installer = args.installer or _default_installer()
    try:
        env = _detect(args.hardware)
        p = _make(args.request, args.hardware, args.python, args.no_flash_attn, env)
    except PlanRefused as exc:
        if args.format == "json":
            _json(refused_as_dict(exc, env.hardware, args.python or platform.python_version(), installer))
        elif args.format == "text":
            print(f"compat plan: no vLLM set fits this machine\n\nFindings\n  error: {exc.reason}\n        fix: {exc.fix}")
        else:
            sys.stderr.write(f"compat plan: error: {exc}\n")
        return 1
    except CompatError as exc:
        if args.format == "json":  # bad input: still JSON on stdout, the one line on stderr, exit 2
            _json({"schema": 1, "ok": False, "error": str(exc),
                   "findings": [{"id": "bad-input", "severity": "error", "message": str(exc), "fix": None}]})
        raise
    from ..preflight.cli import for_plan, render
    pf = for_plan(env, p.vllm, args, p.kernels)  # None without --model
    if args.format == "json":
        d = p.as_dict(installer)
        if pf is not None:  # the model's pre-flight (docs/json-contract.md): its errors make the answer not ok
            d.update(model=pf.as_dict(), ok=d["ok"] and pf.ok)
        _json(d)
    elif args.format in INSTALLERS:
        sys.stdout.write("\n".join(p.commands(args.format)) + "\n")
    elif args.format == "constraints":
        sys.stdout.write(p.constraints())
    else:
        print(render_text(p, installer) + ("\n\n" + "\n".join(render(pf)) if pf else ""))
    return 1 if pf is not None and not pf.ok else 0


def _install_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m compat install",
                                description="Install the plan with pip or uv: dry run unless --yes; snapshot, verify, "
                                            "install, check, restore on failure.")
    p.add_argument("request", nargs="?", metavar="REQ", help="vllm (newest that fits, default), vllm==X or a specifier")
    p.add_argument("--yes", action="store_true", help="act (default: show the installer's dry-run resolution only)")
    p.add_argument("--installer", choices=INSTALLERS, help="default: uv if on PATH, else pip")
    p.add_argument("--python", metavar="PATH", default=sys.executable, help="interpreter of the target environment")
    p.add_argument("--hardware", metavar="FILE", help="plan for the machine described in FILE instead of this one")
    p.add_argument("--allow-system", action="store_true",
                   help="allow installing into a non-virtual or externally-managed interpreter")
    p.add_argument("--no-flash-attn", action="store_true", help="leave flash-attn out")
    return p


def install(argv: Optional[List[str]] = None) -> int:
    from . import executor

    args = _install_parser().parse_args(argv)
    requested_releases(args.request)  # a bad request is reported before anything about the target interpreter
    target = executor.probe(args.python)
    executor.check_consent(target, args.allow_system)
    installer = executor.choose_installer(args.installer, target)
    try:
        p = _make(args.request, args.hardware, target.version, args.no_flash_attn)
    except PlanRefused as exc:  # not bad usage: the machine cannot run any set; nothing was changed
        print(f"compat install: error: {exc}", file=sys.stderr)
        return 1

    def say(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    say(f"compat install: vLLM {p.vllm} + torch {p.torch} ({p.torch_variant}) + flash-attn {p.flash_attn or 'none'} "
        f"into {target.prefix} with {installer}")
    for what, why in p.explanations:
        say(f"  {what:<14} {why}")
    try:
        out = executor.execute(p, target, installer, args.yes, args.hardware, progress=say)
    except executor.InstallFailed as exc:
        say(f"compat install: error: {exc}")
        return 1
    if not out.acted:
        return 0
    errors = [f for f in out.findings if f.severity == "error"]
    for f in out.findings:
        if f.severity != "info":
            say(f"  {f.severity}: {f.message}" + (f" (fix: {f.fix})" if f.fix else ""))
    say(f"compat install: done; doctor: {len(errors)} error(s)" + ("" if errors else ", environment matches the plan"))
    return 1 if errors else 0


__all__ = ["plan", "install", "CompatError"]
