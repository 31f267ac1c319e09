"""Benchmark: fused Triton block-FP8 quantizer vs plain torch (eager, torch.compile) vs a D2D copy.

Run on a CUDA GPU (sm89+), from the repo root:

    python benchmarks/fp8_quantize.py --out DIR        # DIR defaults to $OUT, else benchmarks/results/

One run times, on real linear-layer shapes of 7B and 70B models:
  * the fused Triton kernel for several (chunk rows, num_warps) configs (best reported, default marked),
  * the public API (`quantize_blockwise`: allocation + kernel + NaN/Inf check with its host sync),
  * the plain-torch reference, eager and under torch.compile,
  * a device-to-device copy moving the same number of bytes (bf16 read + fp8 write + scales),
and checks the Triton output against the reference on every shape (scales bit-equal, q within one e4m3
code). Each timing: warm-up, then N repetitions, each between CUDA events with L2 flushed before it,
median reported. JSON (file name contains `fp8`) is written after every shape and on any error.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SHAPES = {
    # (out_features, in_features) of nn.Linear weights
    "7B.qkvo_4096x4096": (4096, 4096),
    "7B.gate_up_11008x4096": (11008, 4096),
    "7B.down_4096x11008": (4096, 11008),
    "70B.qo_8192x8192": (8192, 8192),
    "70B.gate_up_28672x8192": (28672, 8192),
    "70B.down_8192x28672": (8192, 28672),
    # ragged: dimensions that are not multiples of 128 (issue 12.6); every weight of >= 4M elements counts
    "DSV3.mla_kv_a_576x7168": (576, 7168),
    "DSV3.mla_t_7168x576": (7168, 576),
    "falcon7b.qkv_4672x4544": (4672, 4544),
    "ragged_4097x11007": (4097, 11007),
    "ragged_11008x4097": (11008, 4097),
    "ragged_4096x11009": (4096, 11009),
}
# correctness-only shapes: ragged edges, and a block of zeros
CHECK_SHAPES = {"odd_300x257": (300, 257), "odd_4097x11009": (4097, 11009), "odd_129x1000": (129, 1000),
                "odd_7x40": (7, 40), "odd_576x7168": (576, 7168)}
SMOKE_SHAPES = {"smoke_256x384": (256, 384), "smoke_300x257": (300, 257)}
CONFIGS = [(128, 4), (128, 8), (128, 16), (128, 32), (64, 4), (64, 8), (64, 16), (32, 4), (32, 8)]
GOAL_FRACTION = 0.85  # issue 12.6: every weight of >= GOAL_MIN_NUMEL elements, ragged shapes included
GOAL_MIN_NUMEL = 4 * 1024 * 1024
GOAL_SPEEDUP = 10.0


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Writer:
    """Keeps the result dict and rewrites the JSON file after every step, so partial runs survive."""

    def __init__(self, out_dir: Path, result: dict):
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.path = out_dir / f"fp8_quantize_{stamp}.json"
        self.result = result

    def flush(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.result, indent=2, sort_keys=False, default=str) + "\n")
        tmp.replace(self.path)


def bench(fn, torch, *, warmup: int, iters: int, flush_buf) -> dict:
    """Median/min/max milliseconds of fn() measured with CUDA events, L2 flushed before each rep."""
    for _ in range(warmup):
        fn()
    if flush_buf.device.type != "cuda":  # --smoke on CPU: wall clock, only to exercise the script
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "n": iters}
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for i in range(iters):
        flush_buf.zero_()  # evict the inputs from the 50 MB L2 so each rep reads HBM
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    times = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "n": iters}


def make_weight(shape, torch, dtype, seed: int, device="cuda"):
    """Realistic-ish weights: normal(0, 0.02) with a few large outliers, plus one all-zero block."""
    g = torch.Generator(device=device).manual_seed(seed)
    w = torch.randn(shape, device=device, dtype=torch.float32, generator=g).mul_(0.02)
    idx = torch.randint(0, w.numel(), (max(1, w.numel() // 100000),), device=device, generator=g)
    w.view(-1)[idx] *= 50.0
    if shape[0] >= 128 and shape[1] >= 128:
        w[:128, :128] = 0
    return w.to(dtype)


def compare(q_ref, s_ref, q_tri, s_tri, torch) -> dict:
    """Scales and q must be bit-equal to the reference (the code-distance fields say how far off if not)."""
    scales_equal = bool(torch.equal(s_ref, s_tri))
    a = q_ref.view(torch.uint8).to(torch.int16)
    b = q_tri.view(torch.uint8).to(torch.int16)
    diff = (a - b).abs()
    sign_flip = ((a ^ b) & 0x80) != 0
    # +0/-0 differ in the sign bit only: treat them as equal
    zero_pair = ((a & 0x7F) == 0) & ((b & 0x7F) == 0)
    bad_sign = int((sign_flip & ~zero_pair).sum())
    mismatches = int((diff != 0).sum())
    max_code_diff = int(diff.masked_fill(sign_flip, 0).max()) if diff.numel() else 0
    return {
        "scales_equal": scales_equal,
        "q_mismatches": mismatches,
        "q_max_code_diff": max_code_diff,
        "q_sign_mismatches": bad_sign,
        "ok": scales_equal and mismatches == 0,
    }


def run(args, writer: Writer) -> None:
    res = writer.result
    import torch

    res["torch"] = torch.__version__
    res["cuda"] = torch.version.cuda
    if args.smoke:
        # CPU dry run of this script's logic (Triton in interpreter mode, tiny shapes); numbers mean nothing
        dev = torch.device("cpu")
        res["device"] = "cpu (--smoke: not a measurement)"
    else:
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device visible to torch")
        dev = torch.device("cuda")
        res["device"] = torch.cuda.get_device_name(dev)
        res["capability"] = list(torch.cuda.get_device_capability(dev))
        res["sm_count"] = torch.cuda.get_device_properties(dev).multi_processor_count
    try:
        import triton

        res["triton"] = triton.__version__
    except Exception as exc:  # the reference paths still get timed
        res["triton"] = None
        res["errors"].append(f"import triton: {exc!r}")
    writer.flush()

    from compat.fp8 import quantize as qmod

    tri = None
    if res["triton"] is not None:
        from compat.fp8 import _triton as tri

        res["triton_default_config"] = {"chunk": tri.DEFAULT_CHUNK, "num_warps": tri.DEFAULT_NUM_WARPS}
    res["triton_usable"] = qmod.triton_available(dev)

    flush_buf = torch.empty((1 if args.smoke else 256) * 1024 * 1024, dtype=torch.uint8, device=dev)
    shapes = SMOKE_SHAPES if args.smoke else SHAPES
    check_shapes = SMOKE_SHAPES if args.smoke else CHECK_SHAPES
    bs = (128, 128)
    dtype = getattr(torch, args.dtype)
    compiled = None
    if not args.no_compile:
        try:
            import torch._dynamo

            torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        except Exception:
            pass
        compiled = torch.compile(qmod.quantize_reference_core, dynamic=False)

    # ---------------------------------------------------------------- correctness on ragged shapes
    checks = res["checks"]
    if tri is not None and not args.no_checks:
        for name, shape in check_shapes.items():
            try:
                w = make_weight(shape, torch, dtype, seed=1, device=dev)
                q_ref, s_ref = qmod.quantize_reference_core(w, bs)
                for chunk, warps in CONFIGS:
                    q_t, s_t = tri.quantize_triton(w, bs, chunk=chunk, num_warps=warps)
                    checks[f"{name}/chunk{chunk}_w{warps}"] = compare(q_ref, s_ref, q_t, s_t, torch)
                # a transposed (non-contiguous) view goes through the strided path
                wt = make_weight((shape[1], shape[0]), torch, dtype, seed=2, device=dev).t()
                q_ref, s_ref = qmod.quantize_reference_core(wt, bs)
                q_t, s_t = tri.quantize_triton(wt, bs)
                checks[f"{name}/transposed"] = compare(q_ref, s_ref, q_t, s_t, torch)
            except Exception as exc:
                checks[name] = {"ok": False, "error": repr(exc)}
            writer.flush()
        # NaN / Inf refusal through the public API on the GPU path
        for bad in ("nan", "inf"):
            w = make_weight((512, 384), torch, dtype, seed=3, device=dev)
            w[300, 200] = float(bad)
            try:
                qmod.quantize_blockwise(w, impl="triton")
                checks[f"refuse_{bad}"] = {"ok": False, "error": "no ValueError"}
            except ValueError as exc:
                checks[f"refuse_{bad}"] = {"ok": True, "message": str(exc)[:200]}
            except Exception as exc:
                checks[f"refuse_{bad}"] = {"ok": False, "error": repr(exc)}
        writer.flush()

    # ---------------------------------------------------------------------------- timed shapes
    for name, shape in shapes.items():
        if args.shapes and name not in args.shapes:
            continue
        entry = {"shape": list(shape), "dtype": args.dtype}
        res["shapes"][name] = entry
        try:
            m, n = shape
            w = make_weight(shape, torch, dtype, seed=0, device=dev)
            n_scales = ((m + 127) // 128) * ((n + 127) // 128)
            moved = m * n * w.element_size() + m * n * 1 + n_scales * 4
            entry["bytes_moved"] = moved

            # device-to-device copy of the same number of bytes: copy moves 2 x its size
            src = torch.empty(moved // 2, dtype=torch.uint8, device=dev).random_(0, 255)
            dst = torch.empty_like(src)
            t = bench(lambda: dst.copy_(src), torch, warmup=args.warmup, iters=args.iters, flush_buf=flush_buf)
            t["GBps"] = 2 * (moved // 2) / (t["median_ms"] * 1e-3) / 1e9
            entry["copy"] = t
            del src, dst
            copy_gbps = t["GBps"]

            q_ref, s_ref = qmod.quantize_reference_core(w, bs)
            t = bench(lambda: qmod.quantize_reference_core(w, bs), torch,
                      warmup=args.warmup, iters=max(5, args.iters // 3), flush_buf=flush_buf)
            t["GBps"] = moved / (t["median_ms"] * 1e-3) / 1e9
            entry["torch_eager"] = t
            writer.flush()

            if compiled is not None:
                try:
                    c0 = time.perf_counter()
                    q_c, s_c = compiled(w, bs)
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    compile_s = time.perf_counter() - c0
                    t = bench(lambda: compiled(w, bs), torch, warmup=args.warmup, iters=args.iters,
                              flush_buf=flush_buf)
                    t["GBps"] = moved / (t["median_ms"] * 1e-3) / 1e9
                    t["first_call_s"] = compile_s
                    t["check_vs_reference"] = compare(q_ref, s_ref, q_c, s_c, torch)
                    entry["torch_compile"] = t
                    del q_c, s_c
                except Exception as exc:
                    entry["torch_compile"] = {"error": repr(exc)[:500]}
                writer.flush()

            if tri is not None:
                q_out = torch.empty((m, n), dtype=torch.float8_e4m3fn, device=dev)
                s_out = torch.empty(((m + 127) // 128, (n + 127) // 128), dtype=torch.float32, device=dev)
                configs = {}
                for chunk, warps in CONFIGS:
                    key = f"chunk{chunk}_w{warps}"
                    try:
                        q_out.view(torch.uint8).fill_(0x7F)  # poison: NaN code in e4m3fn
                        s_out.fill_(float("nan"))
                        tri.quantize_triton(w, bs, chunk=chunk, num_warps=warps, out=(q_out, s_out))
                        check = compare(q_ref, s_ref, q_out, s_out, torch)
                        t = bench(lambda: tri.quantize_triton(w, bs, chunk=chunk, num_warps=warps,
                                                              out=(q_out, s_out)),
                                  torch, warmup=args.warmup, iters=args.iters, flush_buf=flush_buf)
                        t["GBps"] = moved / (t["median_ms"] * 1e-3) / 1e9
                        t["fraction_of_copy_bandwidth"] = t["GBps"] / copy_gbps
                        t["check_vs_reference"] = check
                        configs[key] = t
                    except Exception as exc:
                        configs[key] = {"error": repr(exc)[:500]}
                    writer.flush()
                entry["triton_configs"] = configs
                if tri.uses_rowflat(w, q_out, 128):
                    # before/after: the tile kernel (element-wise access on unaligned rows) on the same weight
                    cfg = {}
                    for chunk, warps in ((64, 8), (128, 8)):
                        try:
                            t = bench(lambda: tri.quantize_triton(w, bs, chunk=chunk, num_warps=warps,
                                                                  out=(q_out, s_out), kernel="tile"),
                                      torch, warmup=args.warmup, iters=args.iters, flush_buf=flush_buf)
                            t["GBps"] = moved / (t["median_ms"] * 1e-3) / 1e9
                            t["fraction_of_copy_bandwidth"] = t["GBps"] / copy_gbps
                            t["check_vs_reference"] = compare(q_ref, s_ref, q_out, s_out, torch)
                            cfg[f"chunk{chunk}_w{warps}"] = t
                        except Exception as exc:
                            cfg[f"chunk{chunk}_w{warps}"] = {"error": repr(exc)[:500]}
                    entry["tile_kernel_before"] = cfg
                entry["kernel"] = "rowflat" if tri.uses_rowflat(w, q_out, 128) else "tile"
                # (--smoke: Triton's interpreter does not round fp8 like the GPU, so checks fail there)
                timed = {k: v for k, v in configs.items()
                         if "median_ms" in v and (v["check_vs_reference"]["ok"] or args.smoke)}
                if timed:
                    best_key = min(timed, key=lambda k: timed[k]["median_ms"])
                    best = timed[best_key]
                    if entry.get("kernel") == "rowflat":
                        default_key = f"chunk{tri.ROWFLAT_CHUNK}_w{tri.ROWFLAT_NUM_WARPS}"
                    else:
                        default_key = f"chunk{min(tri.DEFAULT_CHUNK, 128)}_w{tri.DEFAULT_NUM_WARPS}"
                    default = timed.get(default_key, best)
                    entry["fused"] = {
                        "best_config": best_key,
                        "median_ms": best["median_ms"],
                        "GBps": best["GBps"],
                        "fraction_of_copy_bandwidth": best["fraction_of_copy_bandwidth"],
                        "speedup_vs_eager": entry["torch_eager"]["median_ms"] / best["median_ms"],
                        "default_config": default_key,
                        "default_median_ms": default["median_ms"],
                        "default_fraction_of_copy_bandwidth": default["fraction_of_copy_bandwidth"],
                        "default_speedup_vs_eager": entry["torch_eager"]["median_ms"] / default["median_ms"],
                    }
                    if "torch_compile" in entry and "median_ms" in entry["torch_compile"]:
                        entry["fused"]["speedup_vs_compile"] = (
                            entry["torch_compile"]["median_ms"] / best["median_ms"])
                del q_out, s_out
                # public API: allocation + default kernel + NaN/Inf check (one host sync)
                try:
                    t = bench(lambda: qmod.quantize_blockwise(w, bs, impl="triton"), torch,
                              warmup=args.warmup, iters=args.iters, flush_buf=flush_buf)
                    t["GBps"] = moved / (t["median_ms"] * 1e-3) / 1e9
                    t["fraction_of_copy_bandwidth"] = t["GBps"] / copy_gbps
                    entry["fused_api_with_check"] = t
                except Exception as exc:
                    entry["fused_api_with_check"] = {"error": repr(exc)[:500]}
            del w, q_ref, s_ref
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        except Exception as exc:
            entry["error"] = repr(exc)[:500]
            entry["traceback"] = traceback.format_exc()[-2000:]
        writer.flush()

    summarize(res)
    writer.flush()


def summarize(res: dict) -> None:
    fused = {k: v["fused"] for k, v in res["shapes"].items() if "fused" in v}
    if not fused:
        res["fraction_of_copy_bandwidth"] = None
        res["speedup_vs_eager"] = None
        return
    # headline = the worst shape with the best config per shape; default-config numbers beside it
    res["fraction_of_copy_bandwidth"] = min(v["fraction_of_copy_bandwidth"] for v in fused.values())
    res["speedup_vs_eager"] = min(v["speedup_vs_eager"] for v in fused.values())
    res["fraction_of_copy_bandwidth_median"] = statistics.median(
        v["fraction_of_copy_bandwidth"] for v in fused.values())
    res["default_config_fraction_of_copy_bandwidth"] = min(
        v["default_fraction_of_copy_bandwidth"] for v in fused.values())
    res["default_config_speedup_vs_eager"] = min(v["default_speedup_vs_eager"] for v in fused.values())
    # the config with the best geometric-mean time over all shapes: candidate for DEFAULT_CHUNK/WARPS
    per_cfg = {}
    for v in res["shapes"].values():
        for key, t in v.get("triton_configs", {}).items():
            if "median_ms" in t:
                per_cfg.setdefault(key, []).append(t["median_ms"] / v["fused"]["median_ms"])
    complete = {k: v for k, v in per_cfg.items() if len(v) == len(fused)}
    if complete:
        geo = {k: statistics.geometric_mean(v) for k, v in complete.items()}
        res["recommended_config"] = min(geo, key=geo.get)
        res["config_geomean_slowdown_vs_best"] = geo
    checks_ok = all(c.get("ok") for c in res["checks"].values()) and all(
        all(t.get("check_vs_reference", {}).get("ok", False) for t in v.get("triton_configs", {}).values())
        for v in res["shapes"].values())
    res["all_checks_ok"] = checks_ok
    big = {k: v for k, v in fused.items()
           if res["shapes"][k]["shape"][0] * res["shapes"][k]["shape"][1] >= GOAL_MIN_NUMEL}
    res["goal_shapes"] = sorted(big)
    res["goals"] = {
        "fraction_of_copy_bandwidth>=0.85 (best config per shape, >= 4M elements)":
            bool(big) and min(v["fraction_of_copy_bandwidth"] for v in big.values()) >= GOAL_FRACTION,
        "fraction_of_copy_bandwidth>=0.85 (default config, >= 4M elements)":
            bool(big) and min(v["default_fraction_of_copy_bandwidth"] for v in big.values()) >= GOAL_FRACTION,
        "speedup_vs_eager>=10": res["speedup_vs_eager"] >= GOAL_SPEEDUP,
    }


def _tile_before(entry: dict) -> float:
    runs = [t["fraction_of_copy_bandwidth"] for t in entry.get("tile_kernel_before", {}).values()
            if "fraction_of_copy_bandwidth" in t]
    return max(runs) if runs else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "benchmarks" / "results"))
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile of the reference")
    p.add_argument("--shapes", nargs="*", help=f"subset of {list(SHAPES)}")
    p.add_argument("--no-checks", action="store_true",
                   help="skip the correctness-only shapes (each timed config is still checked bit-equal)")
    p.add_argument("--smoke", action="store_true",
                   help="CPU dry run of the script (set TRITON_INTERPRET=1 for the Triton path); no numbers")
    args = p.parse_args(argv)

    result = {
        "benchmark": "fp8_quantize",
        "date": _now(),
        "device": None,
        "torch": None,
        "triton": None,
        "python": platform.python_version(),
        "block_size": [128, 128],
        "method": "CUDA events around each rep, L2 flushed (256 MiB memset) before each rep, median; "
                  "bytes_moved = M*N*elt (read) + M*N (fp8 write) + scales*4; copy = D2D copy of "
                  "bytes_moved/2 bytes (moves bytes_moved); fraction = fused GB/s / copy GB/s",
        "fraction_of_copy_bandwidth": None,
        "speedup_vs_eager": None,
        "checks": {},
        "shapes": {},
        "errors": [],
    }
    writer = Writer(Path(args.out), result)
    t0 = time.perf_counter()
    rc = 0
    try:
        run(args, writer)
    except BaseException as exc:  # still leave a JSON behind, also on KeyboardInterrupt
        result["errors"].append(repr(exc)[:500])
        result["traceback"] = traceback.format_exc()[-4000:]
        rc = 1
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    writer.flush()
    print(json.dumps({k: v for k, v in result.items() if k not in ("shapes", "checks")}, indent=2, default=str))
    for name, v in result["shapes"].items():
        f = v.get("fused", {})
        print(f"{name:28s} copy {v.get('copy', {}).get('GBps', float('nan')):7.0f} GB/s  "
              f"fused {f.get('GBps', float('nan')):7.0f} GB/s ({f.get('best_config')})  "
              f"frac {f.get('fraction_of_copy_bandwidth', float('nan')):.2f} "
              f"(default {f.get('default_fraction_of_copy_bandwidth', float('nan')):.2f}, "
              f"tile before {_tile_before(v):.2f})  "
              f"x eager {f.get('speedup_vs_eager', float('nan')):.1f}  "
              f"x compile {f.get('speedup_vs_compile', float('nan')):.1f}  {v.get('error', '')}")
    bad = [k for k, c in result["checks"].items() if not c.get("ok")]
    if bad or result.get("all_checks_ok") is False:
        print("FAILED checks:", bad or "see triton_configs[*].check_vs_reference")
        rc = 1
    print("wrote", writer.path)
    return rc


if __name__ == "__main__":
    sys.exit(main())
