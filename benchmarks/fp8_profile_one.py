"""Launch the block-FP8 quantizer on one weight shape a few times, for a profiler (ncu/nsys) to capture.

    ncu --kernel-name regex:block_fp8 --launch-skip 2 --launch-count 1 python benchmarks/fp8_profile_one.py 4097 11007
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("m", type=int)
    p.add_argument("n", type=int)
    p.add_argument("--kernel", default="auto", choices=["auto", "tile"])
    p.add_argument("--repeat", type=int, default=4)
    args = p.parse_args()
    import torch

    from compat.fp8 import _triton as tri

    w = torch.randn(args.m, args.n, device="cuda").to(torch.bfloat16)
    for _ in range(args.repeat):
        tri.quantize_triton(w, (128, 128), kernel=args.kernel)
    torch.cuda.synchronize()
    print("ok", args.m, args.n, args.kernel)


if __name__ == "__main__":
    main()
