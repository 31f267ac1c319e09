"""Runs in a child process for `doctor --deep`: imports torch and proves the profile's claims on each GPU.

Input (argv[1], JSON): {"dtype": "bfloat16", "fp8": true, "hf_attn": "flash_attention_2", "gpus": [..sm..]}
Output (stdout, last line, JSON): {"gpus": [{"index", "name", "checks": {name: {"ok", "detail"}}}], ...}
Kept dependency-free beyond torch so it runs in any environment that has torch.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback


def _timed_matmul(torch, dev, dtype, n=4096, iters=20):
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


def _check(results, name, fn):
    try:
        detail = fn()
        results[name] = {"ok": True, "detail": detail}
    except Exception as exc:  # each claim is reported, none aborts the others
        results[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}".strip()[:500]}


def probe(spec):
    import torch

    out = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "gpus": []}
    if not torch.cuda.is_available():
        out["error"] = "torch.cuda.is_available() is False"
        return out
    arch_list = torch.cuda.get_arch_list()
    out["arch_list"] = arch_list
    dtype = getattr(torch, spec["dtype"])
    for i in range(torch.cuda.device_count()):
        dev = torch.device("cuda", i)
        major, minor = torch.cuda.get_device_capability(i)
        r = {}
        entry = {"index": i, "name": torch.cuda.get_device_name(i), "sm": f"{major}.{minor}", "checks": r}

        def arch():
            hit = []
            for a in arch_list:  # "sm_80", "sm_90a", "sm_100f"; sm_XY code runs on major X, minor >= Y
                digits = a[3:].rstrip("af")
                if a.startswith("sm_") and digits.isdigit() and int(digits[:-1]) == major and int(digits[-1]) <= minor:
                    hit.append(a)
            if not hit and f"compute_{major}{minor}" not in arch_list:
                raise RuntimeError(f"sm_{major}{minor} not in torch.cuda.get_arch_list() {arch_list}")
            return f"sm_{major}{minor} served by {hit or 'PTX'}"

        _check(r, "arch", arch)
        _check(r, "matmul", lambda: f"{spec['dtype']} 4096^3 matmul {_timed_matmul(torch, dev, dtype):.1f} TFLOP/s")

        def sdpa():
            from torch.nn.attention import SDPBackend, sdpa_kernel

            q = torch.randn(2, 8, 256, 64, device=dev, dtype=dtype)
            works = []
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
            def fa2():
                import flash_attn
                from flash_attn import flash_attn_func

                q = torch.randn(2, 256, 8, 64, device=dev, dtype=dtype)
                flash_attn_func(q, q, q, causal=True)
                return f"flash_attn {flash_attn.__version__} ran"

            _check(r, "flash_attn", fa2)
        if spec.get("fp8"):
            def fp8():
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

    def nccl():
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

    nccl_r = {}
    _check(nccl_r, "nccl", nccl)
    out["nccl"] = nccl_r["nccl"]
    return out


def main() -> None:
    spec = json.loads(sys.argv[1])
    try:
        result = probe(spec)
    except Exception:
        result = {"error": traceback.format_exc(limit=3)[-800:]}
    sys.stdout.flush()
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    main()
