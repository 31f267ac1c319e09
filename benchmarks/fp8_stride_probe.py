"""Probe: does block-FP8 speed follow the byte alignment of the row stride, whatever the kernel?

Issue 12.6 measured every kernel tried on rows that are not 16-element aligned at ~0.5 of copy. This times the
Triton tile kernel (rows 16-element aligned, so it vectorizes) and the CUDA kernel's read-only diagnostic build
(loads, amax, scales, no q stores: benchmarks/fp8_cuda_variants.py) on 4096 x K for K whose bf16 row stride is
128-, 64- or 32-byte aligned, or not at all. Run on a CUDA GPU: `python benchmarks/fp8_stride_probe.py --out DIR`.
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

# K -> bf16 row stride in bytes: 22016 (128-B aligned), 22048 (32), 22080 (64), 22014 (2), 22144 (128)
KS = [11008, 11024, 11040, 11007, 11072]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "benchmarks" / "results"))
    p.add_argument("--iters", type=int, default=20)
    args = p.parse_args(argv)

    import torch
    from fp8_cuda_variants import EDITS, VARIANTS
    from fp8_quantize import bench

    from compat.fp8 import _cuda
    from compat.fp8 import _triton as tri

    dev = torch.device("cuda")
    cap = torch.cuda.get_device_capability(dev)
    src = _cuda.SOURCE.read_text()
    for a, b in EDITS["diag-no-store"]:
        src = src.replace(a, b)
    read_only = _cuda.load(0, _cuda.compile_source(f"sm_{cap[0]}{cap[1]}", "bfloat16", source=src,
                                                   defines=VARIANTS["diag-no-store"])[0])
    flush = torch.empty(256 * 1024 * 1024, dtype=torch.uint8, device=dev)
    res = {"device": torch.cuda.get_device_name(dev), "rows": 4096, "shapes": {}}
    for k in KS:
        m = 4096
        w = torch.randn((m, k), device=dev).to(torch.bfloat16)
        moved = m * k * 3 + ((m + 127) // 128) * ((k + 127) // 128) * 4
        src_b = torch.empty(moved // 2, dtype=torch.uint8, device=dev)
        dst_b = torch.empty_like(src_b)
        copy = bench(lambda: dst_b.copy_(src_b), torch, warmup=5, iters=args.iters, flush_buf=flush)["median_ms"]
        q = torch.empty((m, k), dtype=torch.float8_e4m3fn, device=dev)
        s = torch.empty(((m + 127) // 128, (k + 127) // 128), device=dev)
        row = {"stride_bytes": 2 * k, "stride_mod_128": (2 * k) % 128, "copy_us": copy * 1e3,
               "kernel_auto": tri.kernel_name(w, q)}
        if k % 16 == 0:
            t = bench(lambda: tri.quantize_triton(w, (128, 128), out=(q, s)), torch, warmup=5, iters=args.iters,
                      flush_buf=flush)["median_ms"]
            row["triton_tile_fraction_of_copy"] = copy / t

        def read_only_run():
            pub = torch.zeros(s.numel(), dtype=torch.int64, device=dev)
            _cuda.launch(read_only, 0, torch.cuda.current_stream(dev).cuda_stream, w.data_ptr(), q.data_ptr(),
                         s.data_ptr(), pub.data_ptr(), m, k)

        t = bench(read_only_run, torch, warmup=5, iters=args.iters, flush_buf=flush)["median_ms"]
        row["cuda_read_only_us"] = t * 1e3
        row["cuda_read_only_fraction_of_copy"] = copy / t
        res["shapes"][f"{m}x{k}"] = row
        print(f"{m}x{k}", json.dumps(row))
        src_b = dst_b = None
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "fp8_stride_probe.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
