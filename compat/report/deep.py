"""`doctor --deep`: prove the profile's claims on the real GPU, in a subprocess with a timeout.

The subprocess imports torch (doctor itself never does) and runs the dtype's matmul, the attention paths,
FP8 where the profile claims it, the arch check and a single-rank NCCL init; a failed claim becomes an
error finding with the fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import List

from ..findings import Finding

TIMEOUT_S = float(os.environ.get("COMPAT_DEEP_TIMEOUT", "300"))

_FIX = {
    "arch": "install a torch build that carries this GPU's architecture (`python -m compat plan`)",
    "matmul": "the profile's dtype does not run here: override it with --dtype/COMPAT_PROFILE, and report it",
    "sdpa": "torch's scaled_dot_product_attention failed: reinstall torch for this CUDA (`python -m compat plan`)",
    "flash_attn": "reinstall flash-attn for this torch (pip install --no-build-isolation --force-reinstall "
                  "flash-attn) or use attn_implementation='sdpa'",
    "fp8": "FP8 matmul failed: check the torch/CUDA build (`python -m compat plan`); serve in bf16 meanwhile",
    "nccl": "NCCL could not initialise: check the nvidia-nccl wheel matches torch, and NCCL_* env vars",
}


def deep_findings(rep) -> List[Finding]:
    env = rep.environment
    if not env.hardware.gpus or env.hardware_file:
        why = "a simulated machine (--hardware)" if env.hardware_file else "no NVIDIA GPU is visible"
        return [Finding("deep-skipped", "info", f"--deep skipped: {why}", "")]
    if env.software.version("torch") is None:
        return [Finding("deep-skipped", "info", "--deep skipped: torch is not installed in this environment",
                        "install torch (`python -m compat plan`) to prove the GPU path")]
    r = rep.resolved
    spec = {"dtype": r.dtype, "fp8": r.fp8, "hf_attn": r.hf_attn_implementation}
    try:
        proc = subprocess.run([sys.executable, "-m", "compat.report._deep_probe", json.dumps(spec)],
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return [Finding("deep-timeout", "error", f"the GPU probe did not finish in {TIMEOUT_S:g}s",
                        "a GPU may be wedged: check nvidia-smi and dmesg for Xid errors")]
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return [Finding("deep-crashed", "error", f"the GPU probe crashed: {proc.stderr.strip()[-400:]}",
                        "run `python -c 'import torch; torch.cuda.init()'` to see the error")]
    return findings_from_probe(result)


def findings_from_probe(result: dict) -> List[Finding]:
    if "error" in result:
        return [Finding("deep-torch-cuda", "error", f"torch cannot use the GPU: {result['error']}",
                        "install a torch build this driver runs (`python -m compat plan`)")]
    out: List[Finding] = []
    for g in result.get("gpus", []):
        for name, c in g["checks"].items():
            where = f"GPU {g['index']} ({g['name']})"
            if c["ok"]:
                out.append(Finding(f"deep-{name}", "info", f"{where}: {c['detail']}", ""))
            else:
                out.append(Finding(f"deep-{name}", "error", f"{where}: {name} failed: {c['detail']}", _FIX[name]))
    n = result.get("nccl")
    if n:
        out.append(Finding("deep-nccl", "info" if n["ok"] else "error",
                           n["detail"] if n["ok"] else f"NCCL failed: {n['detail']}", "" if n["ok"] else _FIX["nccl"]))
    return out
