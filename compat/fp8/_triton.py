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
# The aligned-window kernel (rows not 16-element aligned): best of the sweep on the H200 (2026-12-01).
ROWFLAT_CHUNK = 64
ROWFLAT_NUM_WARPS = 16


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


@triton.jit
def _amax2d(x):
    a = tl.abs(x)
    a = tl.where(a == a, a, float("inf"))  # NaN -> inf: tl.max does not propagate NaN
    return tl.max(tl.max(a, axis=1), axis=0)


@triton.jit
def _to_q(x, inv, FP8_MAX: tl.constexpr, out_ty: tl.constexpr):
    y = x * inv
    if out_ty != tl.float8e4nv:
        # e4m3 output: the cast saturates (cvt.rn.satfinite), which equals clamping first; a float32 `q`
        # (interpreter tests) gets the clamped pre-cast values the reference casts
        y = tl.minimum(tl.maximum(y, -FP8_MAX), FP8_MAX)
    return y.to(out_ty)


@triton.jit
def _rowflat_rows(rows, M, N, c0, width, G: tl.constexpr):
    """Per row of a chunk: G-aligned window base (flat index), and the block's first/end window positions."""
    start = rows * N + c0
    base = tl.multiple_of((start // G) * G, G)
    d = (start - base).to(tl.int32)  # < G
    return base, d, d + width, rows < M


@triton.jit
def _block_fp8_rowflat_kernel(
    w_ptr,
    q_ptr,
    s_ptr,
    M,
    N,
    n_blocks_n,
    FP8_MAX: tl.constexpr,
    FLOOR: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    CHUNK: tl.constexpr,
    G: tl.constexpr,
):
    """Contiguous weight whose rows are not G-element aligned (N % 16 != 0, e.g. 4097 x 11007).

    Rows of such a weight start at arbitrary addresses, so a (rows x BN) tile is read and written one element
    at a time (~0.12-0.3 of copy bandwidth on the H200). Here each block row is seen through a window that
    starts at the G-aligned flat index at or below the block's first element. The window's G-groups that lie
    wholly inside the block are loaded and stored as 16-byte vectors (a mask that is constant per group keeps
    them vectorized); the at most two groups per row that the block shares with a neighbour block (window
    group 0, and the group holding the block's end) are read and written element-wise for this block's
    members only, so no access leaves the block and none reaches past the tensor.
    """
    pid = tl.program_id(0)
    pid_m = pid // n_blocks_n
    pid_n = pid % n_blocks_n
    row0 = pid_m.to(tl.int64) * BM
    c0 = pid_n * BN
    width = tl.minimum(N - c0, BN)
    j = tl.arange(0, BN)
    jg = tl.arange(0, G)
    g_lo = (j // G) * G  # window position of each element's group start (constant over the group)
    out_ty = q_ptr.dtype.element_ty

    amax = tl.zeros((), dtype=tl.float32)
    for r in tl.static_range(0, BM, CHUNK):
        base, d, e, row_ok = _rowflat_rows(row0 + r + tl.arange(0, CHUNK), M, N, c0, width, G)
        full = (g_lo[None, :] >= d[:, None]) & (g_lo[None, :] + G <= e[:, None]) & row_ok[:, None]
        x = tl.load(w_ptr + (base[:, None] + j[None, :]), mask=full, other=0.0,
                    eviction_policy="evict_first" if CHUNK == BM else "evict_last").to(tl.float32)
        head_part = ((d > 0) | (e < G)) & row_ok
        mem_h = (jg[None, :] >= d[:, None]) & (jg[None, :] < e[:, None]) & head_part[:, None]
        xh = tl.load(w_ptr + (base[:, None] + jg[None, :]), mask=mem_h, other=0.0).to(tl.float32)
        ge = (e // G) * G
        mem_e = ((ge[:, None] + jg[None, :]) < e[:, None]) & ((ge > 0) & row_ok)[:, None]
        xe = tl.load(w_ptr + (base + ge)[:, None] + jg[None, :], mask=mem_e, other=0.0).to(tl.float32)
        amax = tl.maximum(amax, tl.maximum(_amax2d(x), tl.maximum(_amax2d(xh), _amax2d(xe))))

    amax_eff = tl.where(amax == 0.0, FP8_MAX, tl.maximum(amax, FLOOR))
    fp8_max = tl.full((), FP8_MAX, tl.float32)
    inv = tl.math.div_rn(fp8_max, amax_eff)
    scale_inv = tl.math.div_rn(amax_eff, fp8_max)
    tl.store(s_ptr + pid, scale_inv)

    for r in tl.static_range(0, BM, CHUNK):
        base, d, e, row_ok = _rowflat_rows(row0 + r + tl.arange(0, CHUNK), M, N, c0, width, G)
        full = (g_lo[None, :] >= d[:, None]) & (g_lo[None, :] + G <= e[:, None]) & row_ok[:, None]
        offs = base[:, None] + j[None, :]
        if CHUNK != BM:  # one walk keeps x, xh, xe in registers; two walks re-read them (from L2)
            x = tl.load(w_ptr + offs, mask=full, other=0.0, eviction_policy="evict_first").to(tl.float32)
        tl.store(q_ptr + offs, _to_q(x, inv, FP8_MAX, out_ty), mask=full)
        head_part = ((d > 0) | (e < G)) & row_ok
        mem_h = (jg[None, :] >= d[:, None]) & (jg[None, :] < e[:, None]) & head_part[:, None]
        offs_h = base[:, None] + jg[None, :]
        if CHUNK != BM:
            xh = tl.load(w_ptr + offs_h, mask=mem_h, other=0.0).to(tl.float32)
        tl.store(q_ptr + offs_h, _to_q(xh, inv, FP8_MAX, out_ty), mask=mem_h)
        ge = (e // G) * G
        mem_e = ((ge[:, None] + jg[None, :]) < e[:, None]) & ((ge > 0) & row_ok)[:, None]
        offs_e = (base + ge)[:, None] + jg[None, :]
        if CHUNK != BM:
            xe = tl.load(w_ptr + offs_e, mask=mem_e, other=0.0).to(tl.float32)
        tl.store(q_ptr + offs_e, _to_q(xe, inv, FP8_MAX, out_ty), mask=mem_e)


def quantize_triton(
    weight: torch.Tensor,
    block_size: Tuple[int, int] = (128, 128),
    *,
    chunk: Optional[int] = None,
    num_warps: Optional[int] = None,
    num_stages: Optional[int] = None,
    out: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    kernel: str = "auto",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Launch the fused kernel: no validation and no NaN check (callers do both; see quantize.py).

    `weight` may be strided (any layout); `q` comes back contiguous. `out=(q, scale_inv)` reuses
    preallocated outputs (the benchmark uses it to time the kernel alone). `kernel="tile"` forces the
    tile kernel where the aligned-window one would serve (the benchmark's before/after on ragged rows).
    """
    if kernel not in ("auto", "tile"):
        raise ValueError(f"kernel must be 'auto' or 'tile', got {kernel!r}")
    bm, bn = block_size
    m, n = weight.shape
    mb, nb = triton.cdiv(m, bm), triton.cdiv(n, bn)
    if out is None:
        q = torch.empty((m, n), dtype=torch.float8_e4m3fn, device=weight.device)
        scale_inv = torch.empty((mb, nb), dtype=torch.float32, device=weight.device)
    else:
        q, scale_inv = out
    rowflat = kernel == "auto" and uses_rowflat(weight, q, bn)
    if chunk is None:
        chunk = ROWFLAT_CHUNK if rowflat else DEFAULT_CHUNK
    if num_warps is None:
        num_warps = ROWFLAT_NUM_WARPS if rowflat else DEFAULT_NUM_WARPS
    chunk = min(chunk, bm)
    if bm % chunk:
        raise ValueError(f"chunk {chunk} must divide block rows {bm}")
    kwargs = {"num_warps": num_warps}
    if num_stages is not None:
        kwargs["num_stages"] = num_stages
    if weight.is_cuda:
        with torch.cuda.device(weight.device):  # Triton launches on the current device
            _launch(weight, q, scale_inv, m, n, nb, bm, bn, chunk, kwargs, kernel)
    else:  # TRITON_INTERPRET=1 (tests)
        _launch(weight, q, scale_inv, m, n, nb, bm, bn, chunk, kwargs, kernel)
    return q, scale_inv


ROWFLAT_GROUP = 16  # elements per aligned group: 16 bytes of fp8 q, 32 of bf16 w


def uses_rowflat(weight: torch.Tensor, q: torch.Tensor, block_n: Optional[int] = None) -> bool:
    """True when the aligned-window kernel serves this weight: contiguous rows that are not 16-element aligned.

    Aligned rows (N % 16 == 0), strided/transposed weights and N < 16 use the tile kernel, which is
    vectorized for the first and correct (element-wise) for the others.
    """
    m, n = weight.shape
    g = ROWFLAT_GROUP
    bn = block_n if block_n is not None else g
    return (n % g != 0 and n >= g and bn % g == 0
            and weight.stride() == (n, 1) and q.stride() == (n, 1))


def _launch(weight, q, scale_inv, m, n, nb, bm, bn, chunk, kwargs, kernel="auto") -> None:
    mb = triton.cdiv(m, bm)
    if kernel == "auto" and uses_rowflat(weight, q, bn):
        g = ROWFLAT_GROUP
        _block_fp8_rowflat_kernel[(mb * nb,)](
            weight,
            q,
            scale_inv,
            m,
            n,
            nb,
            FP8_MAX=FP8_E4M3_MAX,
            FLOOR=AMAX_FLOOR,
            BM=bm,
            BN=bn,
            CHUNK=chunk,
            G=g,
            **kwargs,
        )
        return
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
