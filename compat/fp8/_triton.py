"""Fused block-FP8 quantization kernel (Triton).

One program per (BM x BN) block: it reads the block once from HBM, computes the block amax, writes the
e4m3 values and one float32 scale. With CHUNK < BM the block is walked in CHUNK-row slices twice (amax,
then scale+store); the second walk hits L2 (the first walk loads with evict_last), so HBM still sees one
read of the weight and one write of q. No fp32 copy of the tensor exists at any point.

Numerics match `quantize_reference_core` bit for bit: same amax, same IEEE-rounded divisions
(`div_rn`, not Triton's default approximate f32 division), same fp32 multiply, RTNE cast to e4m3.
NaN is folded to +inf before the max so that any NaN/Inf makes the block's scale non-finite.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from compat.fp8 import AMAX_FLOOR, FP8_E4M3_MAX

# Chosen from benchmarks/fp8_quantize.py; callers may override per call (the benchmark sweeps these).
# Measured on the H100 (benchmarks/results/fp8_quantize-2026-11-25-h100.json): 64-row chunks with 8 warps reach
# 0.95-1.07 of copy bandwidth on every 7B/70B shape; the single-pass 128-row block dropped to 0.81 on 4096x4096.
DEFAULT_CHUNK = 64
DEFAULT_NUM_WARPS = 8


@triton.jit
def _edge_mask(rows, col_ok, M, EVEN_M: tl.constexpr, EVEN_N: tl.constexpr):
    # A mask that is uniform along the contiguous (column) axis keeps 16-byte vector loads/stores, so
    # blocks ragged only in M (EVEN_N) mask by row alone; only ragged N needs a per-column mask.
    if EVEN_N:
        mask = rows[:, None] < M  # (CHUNK, 1): broadcast by tl.load / tl.store
    elif EVEN_M:
        mask = col_ok[None, :]
    else:
        mask = (rows[:, None] < M) & col_ok[None, :]
    return mask


@triton.jit
def _block_fp8_kernel(
    w_ptr,
    q_ptr,
    s_ptr,
    M,
    N,
    stride_wm,
    stride_wn,
    stride_qm,
    n_blocks_n,
    FP8_MAX: tl.constexpr,
    FLOOR: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    CHUNK: tl.constexpr,
    EVEN_M: tl.constexpr,
    EVEN_N: tl.constexpr,
):
    pid = tl.program_id(0)
    # Blocks along N are consecutive programs: neighbouring programs read neighbouring columns of the
    # same rows (DRAM page locality); the scale index is simply pid (row-major scale grid).
    pid_m = pid // n_blocks_n
    pid_n = pid % n_blocks_n
    row0 = pid_m.to(tl.int64) * BM
    cols = pid_n * BN + tl.arange(0, BN)
    col_ok = cols < N
    col_off = cols.to(tl.int64) * stride_wn

    if CHUNK == BM:
        rows = row0 + tl.arange(0, BM)
        offs = rows[:, None] * stride_wm + col_off[None, :]
        if EVEN_M and EVEN_N:
            x = tl.load(w_ptr + offs, eviction_policy="evict_first").to(tl.float32)
        else:
            mask = _edge_mask(rows, col_ok, M, EVEN_M, EVEN_N)
            x = tl.load(w_ptr + offs, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
        a = tl.abs(x)
        a = tl.where(a == a, a, float("inf"))  # NaN -> inf: tl.max does not propagate NaN
        amax = tl.max(tl.max(a, axis=1), axis=0)
    else:
        amax = tl.zeros((), dtype=tl.float32)
        for r in tl.static_range(0, BM, CHUNK):
            rows = row0 + r + tl.arange(0, CHUNK)
            offs = rows[:, None] * stride_wm + col_off[None, :]
            if EVEN_M and EVEN_N:
                xc = tl.load(w_ptr + offs, eviction_policy="evict_last").to(tl.float32)
            else:
                mask = _edge_mask(rows, col_ok, M, EVEN_M, EVEN_N)
                xc = tl.load(w_ptr + offs, mask=mask, other=0.0, eviction_policy="evict_last").to(tl.float32)
            a = tl.abs(xc)
            a = tl.where(a == a, a, float("inf"))
            amax = tl.maximum(amax, tl.max(tl.max(a, axis=1), axis=0))

    amax_eff = tl.where(amax == 0.0, FP8_MAX, tl.maximum(amax, FLOOR))
    fp8_max = tl.full((), FP8_MAX, tl.float32)
    inv = tl.math.div_rn(fp8_max, amax_eff)
    scale_inv = tl.math.div_rn(amax_eff, fp8_max)
    tl.store(s_ptr + pid, scale_inv)

    if CHUNK == BM:
        y = tl.minimum(tl.maximum(x * inv, -FP8_MAX), FP8_MAX).to(q_ptr.dtype.element_ty)
        q_offs = rows[:, None] * stride_qm + cols[None, :]
        if EVEN_M and EVEN_N:
            tl.store(q_ptr + q_offs, y)
        else:
            tl.store(q_ptr + q_offs, y, mask=mask)
    else:
        for r in tl.static_range(0, BM, CHUNK):
            rows = row0 + r + tl.arange(0, CHUNK)
            offs = rows[:, None] * stride_wm + col_off[None, :]
            q_offs = rows[:, None] * stride_qm + cols[None, :]
            if EVEN_M and EVEN_N:
                xc = tl.load(w_ptr + offs, eviction_policy="evict_first").to(tl.float32)
            else:
                mask = _edge_mask(rows, col_ok, M, EVEN_M, EVEN_N)
                xc = tl.load(w_ptr + offs, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
            y = tl.minimum(tl.maximum(xc * inv, -FP8_MAX), FP8_MAX).to(q_ptr.dtype.element_ty)
            if EVEN_M and EVEN_N:
                tl.store(q_ptr + q_offs, y)
            else:
                tl.store(q_ptr + q_offs, y, mask=mask)


def quantize_triton(
    weight: torch.Tensor,
    block_size: Tuple[int, int] = (128, 128),
    *,
    chunk: Optional[int] = None,
    num_warps: Optional[int] = None,
    num_stages: Optional[int] = None,
    out: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Launch the fused kernel: no validation and no NaN check (callers do both; see quantize.py).

    `weight` may be strided (any layout); `q` comes back contiguous. `out=(q, scale_inv)` reuses
    preallocated outputs (the benchmark uses it to time the kernel alone).
    """
    bm, bn = block_size
    m, n = weight.shape
    mb, nb = triton.cdiv(m, bm), triton.cdiv(n, bn)
    if out is None:
        q = torch.empty((m, n), dtype=torch.float8_e4m3fn, device=weight.device)
        scale_inv = torch.empty((mb, nb), dtype=torch.float32, device=weight.device)
    else:
        q, scale_inv = out
    chunk = min(DEFAULT_CHUNK if chunk is None else chunk, bm)
    if bm % chunk:
        raise ValueError(f"chunk {chunk} must divide block rows {bm}")
    kwargs = {"num_warps": DEFAULT_NUM_WARPS if num_warps is None else num_warps}
    if num_stages is not None:
        kwargs["num_stages"] = num_stages
    if weight.is_cuda:
        with torch.cuda.device(weight.device):  # Triton launches on the current device
            _launch(weight, q, scale_inv, m, n, nb, bm, bn, chunk, kwargs)
    else:  # TRITON_INTERPRET=1 (tests)
        _launch(weight, q, scale_inv, m, n, nb, bm, bn, chunk, kwargs)
    return q, scale_inv


def _launch(weight, q, scale_inv, m, n, nb, bm, bn, chunk, kwargs) -> None:
    mb = triton.cdiv(m, bm)
    _block_fp8_kernel[(mb * nb,)](
        weight,
        q,
        scale_inv,
        m,
        n,
        weight.stride(0),
        weight.stride(1),
        q.stride(0),
        nb,
        FP8_MAX=FP8_E4M3_MAX,
        FLOOR=AMAX_FLOOR,
        BM=bm,
        BN=bn,
        CHUNK=chunk,
        EVEN_M=(m % bm == 0),
        EVEN_N=(n % bn == 0),
        **kwargs,
    )
