"""`doctor --deep`: prove the profile's claims on the real GPU, in a subprocess with a timeout.

The subprocess imports torch (doctor itself never does) and runs the dtype's matmul, the attention paths,
FP8 where the profile claims it, the arch check and a single-rank NCCL init; a failed claim becomes an
error finding with the fix. With two or more GPUs it then checks the multi-GPU path for correct data within a
deadline: peer-to-peer copies between every pair, and an NCCL all_reduce with one process per GPU. Wrong data,
a crash or a hang (the processes are killed at the deadline) is an error finding whose fix is the NCCL env;
when the all_reduce fails with P2P allowed it is run again with NCCL_P2P_DISABLE=1 to prove that fix. The
verdict is cached per boot, driver and GPU set (compat/detect/p2p_verdict.py) for setup() to use.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..findings import Finding
from ..switches import DEEP_MULTI_TIMEOUT_S, DEEP_TIMEOUT_S, Switches

TIMEOUT_S = DEEP_TIMEOUT_S  # default; COMPAT_DEEP_TIMEOUT (compat/switches.py) is read when the probe runs
# deadline of each multi-GPU stage (P2P copies; NCCL all_reduce): a healthy node needs a few seconds
MULTI_TIMEOUT_S = DEEP_MULTI_TIMEOUT_S  # default; COMPAT_DEEP_MULTI_TIMEOUT is read when the check runs
P2P_FIX = ("export NCCL_P2P_DISABLE=1 (and NCCL_IB_DISABLE=1 on cards without InfiniBand) for every process of "
           "the job, e.g. through `python -m compat env` or Ray's runtime_env; then re-run `doctor --deep`")

_FIX = {
    "arch": "install a torch build that carries this GPU's architecture (`python -m compat plan`)",
    "matmul": "the profile's dtype does not run here: override it with --dtype/COMPAT_PROFILE, and report it",
    "sdpa": "torch's scaled_dot_product_attention failed: reinstall torch for this CUDA (`python -m compat plan`)",
    "flash_attn": "reinstall flash-attn for this torch (pip install --no-build-isolation --force-reinstall "
                  "flash-attn) or use attn_implementation='sdpa'",
    "fp8": "FP8 matmul failed: check the torch/CUDA build (`python -m compat plan`); serve in bf16 meanwhile",
    "nccl": "NCCL could not initialise: check the nvidia-nccl wheel matches torch, and NCCL_* env vars",
}


def deep_findings(rep: Any) -> List[Finding]:
    env = rep.environment
    if not env.hardware.gpus or env.hardware_file:
        why = "a simulated machine (--hardware)" if env.hardware_file else "no NVIDIA GPU is visible"
        return [Finding("deep-skipped", "info", f"--deep skipped: {why}", "")]
    if env.software.version("torch") is None:
        return [Finding("deep-skipped", "info", "--deep skipped: torch is not installed in this environment",
                        "install torch (`python -m compat plan`) to prove the GPU path")]
    r = rep.resolved
    spec = {"dtype": r.dtype, "fp8": r.fp8, "hf_attn": r.hf_attn_implementation}
    timeout = Switches.parse().deep_timeout  # CompatError (exit 2) on a malformed COMPAT_DEEP_TIMEOUT
    try:
        proc = subprocess.run([sys.executable, "-m", "compat.report._deep_probe", json.dumps(spec)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [Finding("deep-timeout", "error", f"the GPU probe did not finish in {timeout:g}s",
                        "a GPU may be wedged: check nvidia-smi and dmesg for Xid errors")]
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return [Finding("deep-crashed", "error", f"the GPU probe crashed: {proc.stderr.strip()[-400:]}",
                        "run `python -c 'import torch; torch.cuda.init()'` to see the error")]
    out = findings_from_probe(result)
    if len(env.hardware.gpus) >= 2:
        out += multi_gpu_findings(env.hardware.driver, [g.uuid for g in env.hardware.gpus])
    return out


def findings_from_probe(result: Dict[str, Any]) -> List[Finding]:
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


# ----------------------------------------------------------------------------- multi-GPU (>= 2 GPUs)


@dataclass(frozen=True)
class StageRun:
    """What the processes of one stage printed: the last JSON line of each (None if it printed none)."""
    results: Tuple[Optional[Dict[str, Any]], ...]
    hung: bool
    last_stage: str  # the last {"stage": ...} progress line of any process: where a hang happened
    stderr: str


def parse_output(stdout: str) -> Tuple[Optional[Dict[str, Any]], str]:
    """The result (last JSON object line that is not a progress line) and the last progress stage."""
    result: Optional[Dict[str, Any]] = None
    stage = ""
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        if set(obj) == {"stage"}:
            stage = str(obj["stage"])
        else:
            result = obj
    return result, stage


def run_stage(argvs: Sequence[Sequence[str]], timeout: float, env: Mapping[str, str]) -> StageRun:
    """Start one process per argv, together; kill all of them (and their children) at the deadline.

    Ranks of a collective must run at once, so they are started before any is waited for; a hang in one
    rank hangs the others, and all are killed at the same deadline.
    """
    procs = [subprocess.Popen(list(a), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(env), start_new_session=True) for a in argvs]
    hung = False
    outs: List[Tuple[str, str]] = []
    deadline = time.monotonic() + timeout  # one deadline for the stage, not one per rank
    for p in procs:
        try:
            outs.append(p.communicate(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            hung = True
            for q in procs:  # the whole stage is over: kill every rank's process group
                try:
                    os.killpg(q.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            outs.append(p.communicate())
            deadline = time.monotonic() + 5.0  # the killed ranks only need a moment to exit
    results, stages, errs = [], [], []
    for out, err in outs:
        r, st = parse_output(out or "")
        results.append(r)
        stages.append(st)
        errs.append((err or "").strip()[-400:])
    return StageRun(tuple(results), hung, next((st for st in reversed(stages) if st), ""),
                    " | ".join(e for e in errs if e))


def _probe_argv(*args: str) -> List[str]:
    return [sys.executable, "-m", "compat.report._deep_probe", *args]


def check_p2p(timeout: float, env: Mapping[str, str],
              runner: Callable[..., StageRun] = run_stage) -> Dict[str, Any]:
    run = runner([_probe_argv("--p2p")], timeout, env)
    r = run.results[0]
    if run.hung:
        return {"ok": False, "hung": True, "detail": f"peer-to-peer copy hung ({run.last_stage or 'start'}); "
                                                    f"killed after {timeout:g}s"}
    if r is None or "error" in r:
        why = (r or {}).get("error") or run.stderr or "no output"
        return {"ok": False, "hung": False, "detail": f"peer-to-peer probe crashed: {str(why)[-300:]}"}
    pairs = r.get("pairs", [])
    bad = [p for p in pairs if not p.get("ok")]
    if bad:
        worst = ", ".join(f"GPU {p['src']}->{p['dst']} {p['mismatches']} wrong values"
                          f"{'' if p.get('peer_access') else ' (no peer access: staged copy)'}" for p in bad[:4])
        return {"ok": False, "hung": False, "pairs": pairs, "detail": f"peer-to-peer copies returned wrong data: {worst}"}
    speeds = sorted(p.get("gbps", 0.0) for p in pairs)
    peer = sum(1 for p in pairs if p.get("peer_access"))
    return {"ok": True, "hung": False, "pairs": pairs,
            "detail": f"peer-to-peer copies correct on all {len(pairs)} GPU pairs ({peer} with peer access), "
                      f"{speeds[0]:.0f}-{speeds[-1]:.0f} GB/s" if pairs else "no GPU pairs"}


def check_allreduce(world: int, timeout: float, env: Mapping[str, str],
                    runner: Callable[..., StageRun] = run_stage) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="compat-nccl-") as d:
        store = os.path.join(d, "store")
        run = runner([_probe_argv("--nccl-rank", str(r), str(world), store) for r in range(world)], timeout, env)
    if run.hung:
        return {"ok": False, "hung": True,
                "detail": f"{world}-rank NCCL all_reduce hung ({run.last_stage or 'start'}); killed after {timeout:g}s"}
    missing = [i for i, r in enumerate(run.results) if r is None or "error" in r]
    if missing:
        r0 = run.results[missing[0]] or {}
        why = r0.get("error") or run.stderr or "no output"
        return {"ok": False, "hung": False, "detail": f"NCCL all_reduce failed on rank(s) {missing}: {str(why)[-300:]}"}
    bad = [(r["rank"], c) for r in run.results if r for c in r.get("checks", []) if c.get("mismatches")]
    if bad:
        rank, c = bad[0]
        return {"ok": False, "hung": False,
                "detail": f"{world}-rank NCCL all_reduce returned wrong sums (rank {rank}: {c['mismatches']} of "
                          f"{c['numel']} elements)"}
    first = run.results[0] or {}
    sizes = ", ".join(str(c["numel"]) for c in first.get("checks", []))
    return {"ok": True, "hung": False,
            "detail": f"{world}-rank NCCL {first.get('nccl', '?')} all_reduce correct on every rank ({sizes} floats)"}


def multi_gpu_verdict(world: int, timeout: Optional[float] = None, env: Mapping[str, str] = os.environ,
                      runner: Callable[..., StageRun] = run_stage) -> Dict[str, Any]:
    """Run both checks with P2P allowed; if the all_reduce fails, run it again with NCCL_P2P_DISABLE=1."""
    if timeout is None:
        timeout = Switches.parse(env).deep_multi_timeout
    allowed = {k: v for k, v in env.items() if k != "NCCL_P2P_DISABLE"}  # judge P2P itself, not the workaround
    verdict: Dict[str, Any] = {"world": world, "p2p": check_p2p(timeout, allowed, runner),
                               "allreduce": check_allreduce(world, timeout, allowed, runner)}
    if not verdict["allreduce"]["ok"]:
        verdict["allreduce_p2p_disabled"] = check_allreduce(world, timeout, dict(allowed, NCCL_P2P_DISABLE="1"),
                                                            runner)
    verdict["p2p_ok"] = bool(verdict["p2p"]["ok"] and verdict["allreduce"]["ok"])
    return verdict


def verdict_findings(v: Dict[str, Any]) -> List[Finding]:
    out: List[Finding] = []
    fix_note = ""
    retry = v.get("allreduce_p2p_disabled")
    if retry is not None:
        fix_note = (" (checked: with NCCL_P2P_DISABLE=1 the all_reduce is correct)" if retry["ok"]
                    else f" (with NCCL_P2P_DISABLE=1 it still fails: {retry['detail']})")
    for key, fid in (("p2p", "deep-p2p"), ("allreduce", "deep-nccl-allreduce")):
        c = v[key]
        if c["ok"]:
            out.append(Finding(fid, "info", c["detail"], ""))
        else:
            fix = P2P_FIX + (fix_note if key == "allreduce" else "")
            if retry is not None and not retry["ok"] and key == "allreduce":
                fix = ("NCCL fails with P2P off too: check the NCCL/torch build and the NCCL_* env "
                       "(NCCL_DEBUG=INFO shows the transport)")
            out.append(Finding(fid, "error", c["detail"], fix))
    return out


def multi_gpu_findings(driver: Optional[str], gpu_uuids: Sequence[str],
                       env: Mapping[str, str] = os.environ) -> List[Finding]:
    from ..detect.p2p_verdict import write_verdict

    v = multi_gpu_verdict(len(gpu_uuids), env=env)
    out = verdict_findings(v)
    stored = {"p2p_ok": v["p2p_ok"], "p2p": v["p2p"]["detail"], "allreduce": v["allreduce"]["detail"]}
    path = write_verdict(driver, gpu_uuids, stored, env)
    out.append(Finding("deep-p2p-verdict", "info",
                       f"multi-GPU verdict: P2P {'sound' if v['p2p_ok'] else 'BROKEN'}"
                       + (f" (cached for setup() in {path})" if path else " (not cached)"), ""))
    return out
