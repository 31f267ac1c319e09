"""The post-install check that exercises first use, not just versions (compat/data/first_use.toml).

Versions can all match the plan while the first real step fails: triton 3.1/3.2 import setuptools undeclared, so
vLLM 0.7/0.8 import fine and the first fused-MoE layer dies. After installing, `compat install` runs these imports
in the target interpreter (a subprocess: compat itself need not be installed there): vllm, triton's build path, the
attention backend compat picked for this GPU and release, flash-attn when planned, and torch's CUDA libraries where a
real GPU is visible. Any failure restores the snapshot (executor.execute) and names what was missing.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from .._toml import load_data

_CUDA = "torch.cuda"   # pseudo-module: torch's CUDA libraries, loaded by touching the device

# Runs in the target interpreter: argv[1] is a JSON list of [name, [module, ...]]; prints a JSON list of
# [name, error-or-null, missing-module-or-null]. Each check imports the first module of its list that works.
_PROBE = r"""
import importlib, json, sys, traceback
out = []
for name, any_of in json.loads(sys.argv[1]):
    errors, missing = [], None
    for mod in any_of:
        try:
            if mod == "torch.cuda":
                import torch
                torch.cuda.init()
                torch.ones(1, device="cuda").sum().item()
            else:
                importlib.import_module(mod)
            errors = []
            break
        except BaseException as exc:  # noqa: BLE001 - a failed import may raise anything; report it
            if isinstance(exc, ModuleNotFoundError) and missing is None:
                missing = exc.name
            line = traceback.format_exception_only(type(exc), exc)[-1].strip()
            errors.append(f"import {mod}: {line}")
    out.append([name, "; ".join(errors) or None, missing if errors else None])
print("COMPAT-FIRST-USE " + json.dumps(out))
"""


@dataclass(frozen=True)
class Check:
    name: str                      # "triton build path"
    any_of: Tuple[str, ...]        # modules; the check passes when one of them imports
    why: str


@dataclass(frozen=True)
class Failure:
    check: str
    error: str
    missing: Optional[str]         # the module a ModuleNotFoundError named ("setuptools")

    def describe(self) -> str:
        head = f"missing module {self.missing!r}; " if self.missing else ""
        return f"{self.check}: {head}{self.error}"


def checks(backend: Optional[str], flash_attn: bool, gpu: bool) -> List[Check]:
    """What first use imports for this set: vllm, triton's build path, the picked backend, flash-attn, CUDA."""
    t = load_data("first_use")

    def row(key: str, name: str) -> Check:
        r = t[key]
        return Check(name, tuple(r["any_of"]), r.get("source") or r["reason"])

    out = [row("vllm", "import vllm"), row("triton_build", "triton build path (vLLM's fused_moe kernels)")]
    if gpu:
        out.append(Check("torch CUDA libraries", (_CUDA,), t["torch_cuda"]["reason"]))
    if backend:
        key = backend[: -len("_VLLM_V1")] if backend.endswith("_VLLM_V1") else backend
        b = t.get("backend", {}).get(key)
        if b:
            out.append(Check(f"attention backend {backend}", tuple(b["any_of"]), b["source"]))
    if flash_attn:
        out.append(row("flash_attn", "flash-attn"))
    return out


def run(python: str, wanted: Sequence[Check], timeout: float = 900) -> List[Failure]:
    """Run the imports in `python`'s environment; the failures (empty: first use works)."""
    arg = json.dumps([[c.name, list(c.any_of)] for c in wanted])
    try:
        out = subprocess.run([python, "-c", _PROBE, arg], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [Failure("first-use check", f"could not run {python}: {exc}", None)]
    line = next((x for x in reversed(out.stdout.splitlines()) if x.startswith("COMPAT-FIRST-USE ")), None)
    if line is None:  # the interpreter died (a segfault in a kernel library, say) before reporting
        tail = (out.stderr or out.stdout).strip()[-400:]
        return [Failure("first-use check", f"the check exited {out.returncode} without a result: {tail}", None)]
    results = json.loads(line[len("COMPAT-FIRST-USE "):])
    return [Failure(name, error, missing) for name, error, missing in results if error]
