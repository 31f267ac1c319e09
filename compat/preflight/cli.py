"""`--model PATH` for `python -m compat doctor` and `python -m compat plan`: arguments, the release to check
against (installed, else planned) and the text section. The commands call these in a few lines."""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict, List, Optional, Sequence

from ..detect.model import Environment
from ..findings import Finding
from . import Preflight, for_environment
from .fit import gib

_MARK = {"error": "ERROR", "warning": "WARN ", "info": "info "}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="PATH", help="pre-flight a model: local model directory or its config.json "
                                                    "(no weights read, no network)")
    p.add_argument("--max-model-len", metavar="N", type=int, help="context length to fit (default: the model's)")
    p.add_argument("--gpu-memory-utilization", metavar="F", type=float,
                   help="fraction of GPU memory vLLM may use (default 0.9, vLLM's)")


def _kw(args: Any) -> Dict[str, Any]:
    return {"max_model_len": args.max_model_len, "gpu_memory_utilization": args.gpu_memory_utilization}


def for_doctor(env: Environment, args: Any) -> Optional[Preflight]:
    """The installed vLLM release; without one, the release (and kernel packages) `compat plan` would install."""
    if not getattr(args, "model", None):
        return None
    vllm, source = env.software.version("vllm"), "installed"
    planned: Sequence[str] = ()
    if vllm is None:
        from ..errors import CompatError
        from ..install.planner import make_plan
        try:
            plan = make_plan(env, None)
            vllm, source, planned = plan.vllm, "planned", plan.kernels
        except CompatError:
            vllm = None
    return for_environment(args.model, env, vllm=vllm, source=source, environ=os.environ, planned=planned,
                           **_kw(args))


def for_plan(env: Environment, vllm: str, args: Any, planned: Sequence[str] = ()) -> Optional[Preflight]:
    """The release the plan installs, with the kernel packages it plans (`planned`), on its machine."""
    if not getattr(args, "model", None):
        return None
    return for_environment(args.model, env, vllm=vllm, source="planned", environ=os.environ, planned=planned,
                           **_kw(args))


def render(pf: Preflight, findings: bool = True) -> List[str]:
    m, t, fit = pf.model, pf.target, pf.fit
    from .size import params

    q = m.quantization
    lines = [f"Model {m.path}",
             f"  {m.architecture} ({m.model_type}), {params(m).total / 1e9:.2f} B parameters, checkpoint "
             f"{m.torch_dtype or 'dtype not stated'}" + (f", {q.method} {q.bits or '?'}-bit" if q else ""),
             f"  checked against vLLM {t.vllm or '(none)'} ({t.vllm_source})"
             + (f", facts {os.path.basename(pf.facts_file)}" if pf.facts_file else ", no harvested facts")]
    if fit is not None and fit.options:
        lines.append(f"  memory per GPU ({fit.gpu_count} x {fit.gpu_memory_mib} MiB), max_model_len {fit.max_model_len}:")
        for o in fit.options:
            mark = " <-" if fit.chosen is not None and o.tp == fit.chosen.tp else ""
            lines.append(f"    tp={o.tp}: usable {gib(o.usable)}, weights {gib(o.weights)}, overhead "
                         f"{gib(o.overhead)}, KV {o.kv_per_token / 1024:.0f} KiB/token -> {o.tokens} tokens{mark}")
    kw = ", ".join(f"{k}={v!r}" for k, v in pf.engine_kwargs)
    lines.append(f"  engine arguments: {kw}")
    if findings:
        lines += render_findings(pf.findings)
    return lines


def render_findings(fs: Sequence[Finding]) -> List[str]:
    out = []
    for f in fs:
        out.append(f"  {_MARK[f.severity]} [{f.id}] {f.message}")
        if f.fix:
            out.append(f"        fix: {f.fix}")
    return out
