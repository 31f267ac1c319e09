"""Benchmark: builds of the CUDA ragged-row block-FP8 kernel (compat/fp8/ragged.cu) against each other and a copy.

Run on a CUDA GPU (sm89+) from the repo root: `python benchmarks/fp8_cuda_variants.py --out DIR`. For each build
(compiler defines) it checks the output bit-equal to the torch reference on edge shapes (bf16 and fp16), then
times the ragged shapes of issue 12.6 the way benchmarks/fp8_quantize.py does (CUDA events, L2 flushed before
each rep, median; fraction = quantizer GB/s over a D2D copy of the same bytes). The time includes the zeroed
publication buffer each call allocates, as in the library path. Which build serves is `compat.fp8._cuda.DEFINES`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

VARIANTS = {
    "stage-4cta": ("-DCOMPAT_STAGE=1",),
    "registers-2cta": ("-DCOMPAT_STAGE=0",),
    # diagnostics (wrong output on purpose, not checked): where the time goes
    "diag-no-wait": ("-DCOMPAT_STAGE=1",),      # spill groups use this block's scale: no waiting on neighbours
    "diag-no-store": ("-DCOMPAT_STAGE=1",),     # no q stores at all: loads, amax, scales, waits
}
# source edits that make the diagnostic builds (applied to ragged.cu's text before compiling)
EDITS = {
    "diag-no-wait": [("if (bc + 1 < nbk) right = neighbour", "if (bc < 0) right = neighbour"),
                     ("if (wraps && bc != 0) down0 = neighbour", "if (bc < 0) down0 = neighbour"),
                     ("if (wraps && br + 1 < nbm) down1 = neighbour", "if (bc < 0) down1 = neighbour")],
    "diag-no-store": [("*reinterpret_cast<uint4*>(q + t.g0) = ", "if (t.g0 < 0) *reinterpret_cast<uint4*>(q + t.g0) = ")],
}
TIMED = [(4097, 11007), (11008, 4097), (4096, 11009), (4096, 11008)]   # the last: aligned rows, as a control
EDGES = [(300, 257), (129, 1000), (4097, 4111), (128, 129), (1, 17), (300, 143), (7, 40)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "benchmarks" / "results"))
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = p.parse_args(argv)

    import torch
    from fp8_quantize import bench

    from compat.fp8 import _cuda
    from compat.fp8 import quantize as qmod

    dev = torch.device("cuda")
    cap = torch.cuda.get_device_capability(dev)
    arch = f"sm_{cap[0]}{cap[1]}"
    flush = torch.empty(256 * 1024 * 1024, dtype=torch.uint8, device=dev)
    res = {"device": torch.cuda.get_device_name(dev), "torch": torch.__version__, "nvrtc": _cuda.nvrtc_version(),
           "default_defines": list(_cuda.DEFINES), "variants": {}, "copy": {}}
    fns = {}
    for name in args.variants:
        for dt in ("bfloat16", "float16"):
            src = _cuda.SOURCE.read_text()
            for a, b in EDITS.get(name, []):
                assert a in src, (name, a)
                src = src.replace(a, b)
            cubin, log = _cuda.compile_source(arch, dt, source=src, defines=VARIANTS[name],
                                              extra=("--ptxas-options=-v",))
            fns[name, dt] = _cuda.load(dev.index or 0, cubin)
            res["variants"].setdefault(name, {})[f"ptxas_{dt}"] = [x.strip() for x in log.splitlines() if "Used" in x]

    def run(fn, w, q, s):
        m, k = w.shape
        pub = torch.zeros(s.numel(), dtype=torch.int64, device=dev)
        _cuda.launch(fn, dev.index or 0, torch.cuda.current_stream(dev).cuda_stream, w.data_ptr(), q.data_ptr(),
                     s.data_ptr(), pub.data_ptr(), m, k)

    g = torch.Generator(device=dev).manual_seed(0)
    for (m, k) in EDGES + TIMED:
        for dt in ("bfloat16", "float16"):
            w = torch.randn((m, k), device=dev, generator=g).mul_(0.02).to(getattr(torch, dt))
            w.view(-1)[::9973] *= 50.0
            qr, sr = qmod.quantize_reference_core(w, (128, 128))
            for name in args.variants:
                q = torch.empty((m, k), dtype=torch.float8_e4m3fn, device=dev)
                q.view(torch.uint8).fill_(0x7F)
                s = torch.full(sr.shape, float("nan"), device=dev)
                run(fns[name, dt], w, q, s)
                torch.cuda.synchronize()
                ok = torch.equal(sr, s) and torch.equal(qr.view(torch.uint8), q.view(torch.uint8))
                res["variants"][name].setdefault("bit_equal", {})[f"{m}x{k}/{dt}"] = ok
    for (m, k) in TIMED:
        w = torch.randn((m, k), device=dev, generator=g).mul_(0.02).to(torch.bfloat16)
        moved = m * k * 2 + m * k + ((m + 127) // 128) * ((k + 127) // 128) * 4
        src = torch.empty(moved // 2, dtype=torch.uint8, device=dev).random_(0, 255)
        dst = torch.empty_like(src)
        t = bench(lambda: dst.copy_(src), torch, warmup=5, iters=args.iters, flush_buf=flush)
        copy_gbps = 2 * (moved // 2) / (t["median_ms"] * 1e-3) / 1e9
        res["copy"][f"{m}x{k}"] = copy_gbps
        q = torch.empty((m, k), dtype=torch.float8_e4m3fn, device=dev)
        s = torch.empty(((m + 127) // 128, (k + 127) // 128), device=dev)
        for name in args.variants:
            fn = fns[name, "bfloat16"]
            t = bench(lambda: run(fn, w, q, s), torch, warmup=5, iters=args.iters, flush_buf=flush)
            gbps = moved / (t["median_ms"] * 1e-3) / 1e9
            res["variants"][name][f"{m}x{k}"] = {"median_us": t["median_ms"] * 1e3,
                                                 "fraction_of_copy_bandwidth": gbps / copy_gbps}
        src = dst = None  # free before the next shape
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fp8_cuda_variants.json").write_text(json.dumps(res, indent=1))
    for name, v in res["variants"].items():
        fr = [v[f"{m}x{k}"]["fraction_of_copy_bandwidth"] for m, k in TIMED]
        print(f"{name:16s} all bit-equal {all(v['bit_equal'].values())}  fraction of copy "
              + " / ".join(f"{x:.2f}" for x in fr) + f"  {v['ptxas_bfloat16']}")
    bad = [(n, k) for n, v in res["variants"].items() for k, ok in v["bit_equal"].items()
           if not ok and not n.startswith("diag-")]
    print("NOT bit-equal:", bad[:20] if bad else "none")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
