"""`python -m compat doctor`: the report as text or JSON, exit 0 (no errors), 1 (errors), 2 (bad input)."""

from __future__ import annotations

import json
import os
import sys
from typing import Dict, Iterable, List, Optional, Tuple

from .._args import ArgumentParser
from ..findings import Finding
from .build import build_report
from .model import Report

_MARK = {"error": "ERROR", "warning": "WARN ", "info": "info "}


def render_text(rep: Report) -> str:
    d = rep.as_dict()
    hw, sw, prof = d["hardware"], d["software"], d["profile"]
    lines = ["compat doctor", "", "Hardware" + (f" (simulated from {rep.environment.hardware_file})"
                                                if rep.environment.hardware_file else f" (via {hw['source']})")]
    lines.append(f"  driver {hw['driver'] or 'none'}, CUDA (driver) {hw['cuda'] or 'n/a'}")
    groups: Dict[Tuple[str, str, int, bool], int] = {}
    for g in hw["gpus"]:
        k = (g["name"], g["compute_capability"], g["memory_mib"], g["mig"])
        groups[k] = groups.get(k, 0) + 1
    for (name, cc, mem, mig), n in groups.items():
        lines.append(f"  {n} x {name}  sm_{cc.replace('.', '')}  {mem} MiB{'  MIG' if mig else ''}")
    if not groups:
        lines.append("  no NVIDIA GPU visible")
    lines += ["", f"Software (python {sw['python']})"]
    for name, version in sw["packages"].items():
        extra = f"  [{sw['torch_variant']}]" if name == "torch" else ""
        lines.append(f"  {name:<18} {version}{extra}")
    if not sw["packages"]:
        lines.append("  none of torch, vllm, flash-attn, transformers... installed")
    via = prof["attention_backend_via"] or ""
    lines += ["", f"Profile {prof['name']}: {rep.resolved.profile.description}",
              f"  dtype {prof['dtype']}, HF attn_implementation {prof['hf_attn_implementation']}, "
              f"FP8 {'yes' if prof['fp8'] else 'no'}",
              f"  vLLM attention backend {prof['attention_backend'] or '(vLLM default)'}"
              + (f" via {via}" if via else "")]
    lines += ["", "Environment"]
    lines += [f"  {n}={v}" for n, v in d["env"].items()] or ["  (nothing to export)"]
    lines += [f"  {n}={v} (yours, kept)" for n, v in d["env_kept"].items()]
    if d["patches"]:
        lines += ["", "Patches"]
        for p in d["patches"]:
            reason = f"  ({p['reason']})" if p.get("reason") else ""
            lines.append(f"  {p['id']:<44} {p['status']}{reason}")
    lines += ["", "Findings"]
    for f in d["findings"]:
        lines.append(f"  {_MARK[f['severity']]} {f['message']}")
        if f["fix"]:
            lines.append(f"        fix: {f['fix']}")
    if not d["findings"]:
        lines.append("  none")
    n_err = sum(f["severity"] == "error" for f in d["findings"])
    lines += ["", f"{n_err} error(s)" if n_err else "OK"]
    return "\n".join(lines)


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m compat doctor", description="Report what compat sees and decides.")
    p.add_argument("--json", action="store_true", help="machine-readable report (docs/json-contract.md)")
    p.add_argument("--hardware", metavar="FILE", help="simulate the machine described in FILE")
    p.add_argument("--profile", metavar="NAME", help="use this profile instead of choosing one")
    p.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), help="check this dtype request")
    p.add_argument("--deep", action="store_true", help="prove the profile on the GPU (imports torch, in a subprocess)")
    p.add_argument("--ray", action="store_true", help="gather reports from every node of a running Ray cluster")
    from ..preflight.cli import add_arguments
    add_arguments(p)  # --model PATH, --max-model-len, --gpu-memory-utilization (compat/preflight/)
    return p


def run(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.ray:
        from ..integrations.ray import doctor_ray
        return doctor_ray(args)
    rep = build_report(args.hardware, args.profile, args.dtype, environ=os.environ)
    if args.deep:
        from ..hf.checks import flash_attn_loads
        from .deep import deep_findings
        rep = _with(rep, deep_findings(rep) + flash_attn_loads(rep.environment))  # both import torch, in children
    from ..preflight.cli import for_doctor, render
    pf = for_doctor(rep.environment, args)  # None without --model
    if pf is not None:
        rep = _with(rep, pf.findings)
    if args.json:
        json.dump(dict(rep.as_dict(), **({"model": pf.as_dict()} if pf else {})), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        text = render_text(rep)
        if pf is not None:  # the model section goes before Findings, which hold its findings too
            head, sep, tail = text.rpartition("\nFindings\n")
            text = head + "\n" + "\n".join(render(pf, findings=False)) + "\n" + sep + tail
        print(text)
    return 0 if rep.ok else 1


def _with(rep: Report, extra: Iterable[Finding]) -> Report:
    from dataclasses import replace
    return replace(rep, extra_findings=rep.extra_findings + tuple(extra))
