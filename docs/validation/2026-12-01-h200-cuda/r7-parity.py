"""r7, run on the device from the repo root at the kernel's commit: the read-only build (no q stores, no waits)
and the full kernel, in row-major grid order and in even-blocks-then-odd-blocks order; medians in microseconds."""
import json
import sys

import torch

sys.path.insert(0, "benchmarks")
sys.path.insert(0, ".")
from fp8_quantize import bench  # noqa: E402

from compat.fp8 import _cuda  # noqa: E402

dev = torch.device("cuda")
flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
base = _cuda.SOURCE.read_text()
ro = [("*reinterpret_cast<uint4*>(q + t.g0) = ", "if (t.g0 < 0) *reinterpret_cast<uint4*>(q + t.g0) = "),
      ("if (bc + 1 < nbk) right = neighbour", "if (bc < 0) right = neighbour"),
      ("if (wraps && bc != 0) down0 = neighbour", "if (bc < 0) down0 = neighbour"),
      ("if (wraps && br + 1 < nbm) down1 = neighbour", "if (bc < 0) down1 = neighbour")]
par = [("const int bid = blockIdx.x;",
        "const int nall = nbm * nbk, hh = (nall + 1) / 2; "
        "const int bid = (int)blockIdx.x < hh ? 2 * (int)blockIdx.x : 2 * ((int)blockIdx.x - hh) + 1;")]


def build(edits):
    s = base
    for a, b in edits:
        assert a in s, a
        s = s.replace(a, b)
    return _cuda.load(0, _cuda.compile_source("sm_90", "bfloat16", source=s)[0])


fns = {"read": build(ro), "read-parity": build(ro + par), "full-parity": build(par), "full": build([])}
for k in (11007, 11008, 4097):
    m = 4096
    w = torch.randn((m, k), device=dev).to(torch.bfloat16)
    q = torch.empty((m, k), dtype=torch.float8_e4m3fn, device=dev)
    s = torch.empty(((m + 127) // 128, (k + 127) // 128), device=dev)
    row = {}
    for n, fn in fns.items():
        def go(fn=fn, w=w, q=q, s=s, m=m, k=k):
            pub = torch.zeros(s.numel(), dtype=torch.int64, device=dev)
            _cuda.launch(fn, 0, torch.cuda.current_stream().cuda_stream, w.data_ptr(), q.data_ptr(), s.data_ptr(),
                         pub.data_ptr(), m, k)
        row[n] = round(bench(go, torch, warmup=3, iters=12, flush_buf=flush)["median_ms"] * 1e3, 1)
    print(f"{m}x{k} us", json.dumps(row))
