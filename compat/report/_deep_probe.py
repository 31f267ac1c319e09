"""Runs in a child process for `doctor --deep`: imports torch and proves the profile's claims on each GPU.

Input (argv[1], JSON): {"dtype": "bfloat16", "fp8": true, "hf_attn": "flash_attention_2", "gpus": [..sm..]}
Output (stdout, last line, JSON): {"gpus": [{"index", "name", "checks": {name: {"ok", "detail"}}}], ...}
Multi-GPU modes (run by deep.py, each under its own deadline): `--p2p [JSON]` copies between every pair of
GPUs; `--nccl-rank RANK WORLD STORE` is one rank of an NCCL all_reduce. Progress lines ({"stage": ...})
come before the result line so that a killed (hung) run still says where it stopped.
Kept dependency-free beyond torch so it runs in any environment that has torch.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, TypedDict

if TYPE_CHECKING:
    import torch  # untyped where mypy runs (quick env): these annotations read as Any there


class CheckResult(TypedDict):
    ok: bool
    detail: str


def _timed_matmul(torch: ModuleType, dev: torch.device, dtype: torch.dtype, n: int = 4096, iters: int = 20) -> float:
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(dev)
    t = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize(dev)
    dt = (time.perf_counter() - t) / iters
    return 2 * n ** 3 / dt / 1e12


def _check(results: Dict[str, CheckResult], name: str, fn: Callable[[], str]) -> None:
    try:
        detail = fn()
        results[name] = {"ok": True, "detail": detail}
    except Exception as exc:  # each claim is reported, none aborts the others
        results[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}".strip()[:500]}


def probe(spec: Mapping[str, Any]) -> Dict[str, Any]:
    import torch

    out: Dict[str, Any] = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "gpus": []}
    if not torch.cuda.is_available():
        out["error"] = "torch.cuda.is_available() is False"
        return out
    arch_list = torch.cuda.get_arch_list()
    out["arch_list"] = arch_list
    dtype = getattr(torch, spec["dtype"])
    for i in range(torch.cuda.device_count()):
        dev = torch.device("cuda", i)
        major, minor = torch.cuda.get_device_capability(i)
        r: Dict[str, CheckResult] = {}
        entry: Dict[str, Any] = {"index": i, "name": torch.cuda.get_device_name(i), "sm": f"{major}.{minor}", "checks": r}

        def arch() -> str:
            hit: List[str] = []
            for a in arch_list:  # "sm_80", "sm_90a", "sm_100f"; sm_XY code runs on major X, minor >= Y
                digits = a[3:].rstrip("af")
                if a.startswith("sm_") and digits.isdigit() and int(digits[:-1]) == major and int(digits[-1]) <= minor:
                    hit.append(a)
            if not hit and f"compute_{major}{minor}" not in arch_list:
                raise RuntimeError(f"sm_{major}{minor} not in torch.cuda.get_arch_list() {arch_list}")
            return f"sm_{major}{minor} served by {hit or 'PTX'}"

        _check(r, "arch", arch)
        _check(r, "matmul", lambda: f"{spec['dtype']} 4096^3 matmul {_timed_matmul(torch, dev, dtype):.1f} TFLOP/s")

        def sdpa() -> str:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            q = torch.randn(2, 8, 256, 64, device=dev, dtype=dtype)
            works: List[str] = []
            for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH"):
                try:
                    with sdpa_kernel(getattr(SDPBackend, name)):
                        torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
                    works.append(name.lower())
                except RuntimeError:
                    pass
            if not works:
                raise RuntimeError("no SDPA backend ran")
            return "sdpa backends: " + ", ".join(works)

        _check(r, "sdpa", sdpa)
        if spec.get("hf_attn") == "flash_attention_2":
            def fa2() -> str:
                import flash_attn
                from flash_attn import flash_attn_func

                q = torch.randn(2, 256, 8, 64, device=dev, dtype=dtype)
                flash_attn_func(q, q, q, causal=True)
                return f"flash_attn {flash_attn.__version__} ran"

            _check(r, "flash_attn", fa2)
        if spec.get("fp8"):
            def fp8() -> str:
                n = 4096
                a = torch.randn(n, n, device=dev).to(torch.float8_e4m3fn)
                b = torch.randn(n, n, device=dev).to(torch.float8_e4m3fn).t()
                one = torch.tensor(1.0, device=dev)
                for _ in range(3):
                    torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
                torch.cuda.synchronize(dev)
                t = time.perf_counter()
                for _ in range(20):
                    torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
                torch.cuda.synchronize(dev)
                return f"fp8 e4m3 _scaled_mm {2 * n ** 3 / ((time.perf_counter() - t) / 20) / 1e12:.1f} TFLOP/s"

            _check(r, "fp8", fp8)
        out["gpus"].append(entry)

    def nccl() -> str:
        import torch.distributed as dist

        with tempfile.TemporaryDirectory() as d:
            dist.init_process_group("nccl", init_method=f"file://{d}/store", rank=0, world_size=1)
            try:
                t = torch.ones(4, device="cuda:0")
                dist.all_reduce(t)
                torch.cuda.synchronize()
                return f"NCCL {'.'.join(map(str, torch.cuda.nccl.version()))} single-rank all_reduce ok"
            finally:
                dist.destroy_process_group()

    nccl_r: Dict[str, CheckResult] = {}
    _check(nccl_r, "nccl", nccl)
    out["nccl"] = nccl_r["nccl"]
    return out


# ----------------------------------------------------------------------------- multi-GPU (>= 2 GPUs)


def _progress(stage: str) -> None:
    """A line the parent reads back if this process hangs and is killed: it names the stage that hung."""
    print(json.dumps({"stage": stage}), flush=True)


def p2p_probe(spec: Mapping[str, Any]) -> Dict[str, Any]:
    """Copy a patterned buffer from every GPU to every other one and compare it on the host.

    `torch.Tensor.to(other_device)` takes the peer-to-peer path where the driver enables peer access
    (cudaMemcpyPeer), which is where consumer boards on some drivers return corrupt data or hang.
    """
    import torch

    n = torch.cuda.device_count()
    numel = int(spec.get("numel", 16 * 1024 * 1024))  # 64 MiB of int32 per copy
    pairs: List[Dict[str, Any]] = []
    for i in range(n):
        src = torch.arange(numel, dtype=torch.int32, device=f"cuda:{i}").mul_(2654435761 % 2**31).add_(i)
        want = src.cpu()
        for j in range(n):
            if i == j:
                continue
            _progress(f"p2p {i}->{j}")
            peer = torch.cuda.can_device_access_peer(i, j)
            dst = src.to(f"cuda:{j}")
            torch.cuda.synchronize(j)
            t = time.perf_counter()
            for _ in range(5):
                dst.copy_(src)
            torch.cuda.synchronize(i)
            torch.cuda.synchronize(j)
            gbps = 5 * src.numel() * 4 / (time.perf_counter() - t) / 1e9
            bad = int((dst.cpu() != want).sum())
            pairs.append({"src": i, "dst": j, "peer_access": bool(peer), "ok": bad == 0, "mismatches": bad,
                          "gbps": round(gbps, 1)})
            del dst
    return {"gpus": n, "pairs": pairs}


def nccl_rank(rank: int, world: int, store: str) -> Dict[str, Any]:
    """One rank of the all_reduce check: sums whose exact result is known, on two sizes (two NCCL algorithms)."""
    import torch
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    _progress(f"nccl init rank {rank}/{world}")
    dist.init_process_group("nccl", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        checks: List[Dict[str, int]] = []
        for numel in (1024 + 3, 32 * 1024 * 1024):  # small (latency path) and 128 MiB (bandwidth path)
            _progress(f"nccl all_reduce {numel} rank {rank}")
            t = torch.arange(numel, dtype=torch.float32, device="cuda").remainder_(1024).add_(rank + 1)
            dist.all_reduce(t)
            torch.cuda.synchronize()
            # every element: world * (i % 1024) + sum(1..world), exact in float32 at these magnitudes
            want = torch.arange(numel, dtype=torch.float32, device="cuda").remainder_(1024).mul_(world)
            want.add_(world * (world + 1) // 2)
            checks.append({"numel": numel, "mismatches": int((t != want).sum())})
        return {"rank": rank, "world": world, "nccl": ".".join(map(str, torch.cuda.nccl.version())),
                "checks": checks, "ok": all(c["mismatches"] == 0 for c in checks)}
    finally:
        dist.destroy_process_group()


def main() -> None:
    args = sys.argv[1:]
    result: Dict[str, Any]
    try:
        if args[:1] == ["--p2p"]:
            result = p2p_probe(json.loads(args[1]) if len(args) > 1 else {})
        elif args[:1] == ["--nccl-rank"]:
            result = nccl_rank(int(args[1]), int(args[2]), args[3])
        else:
            result = probe(json.loads(args[0]))
    except Exception:
        result = {"error": traceback.format_exc(limit=3)[-800:]}
    sys.stdout.flush()
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    main()
