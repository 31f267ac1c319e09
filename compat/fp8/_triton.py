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

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

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


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _edge_mask(rows: tl.tensor, col_ok: tl.tensor, M: tl.tensor, EVEN_M: tl.constexpr,
               EVEN_N: tl.constexpr) -> tl.tensor:
    # A mask that is uniform along the contiguous (column) axis keeps 16-byte vector loads/stores, so
    # blocks ragged only in M (EVEN_N) mask by row alone; only ragged N needs a per-column mask.
    if EVEN_N:
        mask = rows[:, None] < M  # (CHUNK, 1): broadcast by tl.load / tl.store
    elif EVEN_M:
        mask = col_ok[None, :]
    else:
        mask = (rows[:, None] < M) & col_ok[None, :]
    return mask


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _block_fp8_kernel(
    w_ptr: tl.tensor,
    q_ptr: tl.tensor,
    s_ptr: tl.tensor,
    M: tl.tensor,
    N: tl.tensor,
    stride_wm: tl.tensor,
    stride_wn: tl.tensor,
    stride_qm: tl.tensor,
    n_blocks_n: tl.tensor,
    FP8_MAX: tl.constexpr,
    FLOOR: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    CHUNK: tl.constexpr,
    EVEN_M: tl.constexpr,
    EVEN_N: tl.constexpr,
) -> None:
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


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _amax2d(x: tl.tensor) -> tl.tensor:
    a = tl.abs(x)
    a = tl.where(a == a, a, float("inf"))  # NaN -> inf: tl.max does not propagate NaN
    return tl.max(tl.max(a, axis=1), axis=0)


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _to_q(x: tl.tensor, inv: tl.tensor, FP8_MAX: tl.constexpr, out_ty: tl.constexpr) -> tl.tensor:
    y = x * inv
    if out_ty != tl.float8e4nv:
        # e4m3 output: the cast saturates (cvt.rn.satfinite), which equals clamping first; a float32 `q`
        # (interpreter tests) gets the clamped pre-cast values the reference casts
        y = tl.minimum(tl.maximum(y, -FP8_MAX), FP8_MAX)
    return y.to(out_ty)


# The return annotation stays a string: Triton walks the function's source and refuses typing names in it.
@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _rowflat_rows(rows: tl.tensor, M: tl.tensor, N: tl.tensor, c0: tl.tensor, width: tl.tensor,
                  G: tl.constexpr) -> "Tuple[tl.tensor, tl.tensor, tl.tensor, tl.tensor]":  # noqa: UP037
    """Per row of a chunk: G-aligned window base (flat index), and the block's first/end window positions."""
    start = rows * N + c0
    base = tl.multiple_of((start // G) * G, G)
    d = (start - base).to(tl.int32)  # < G
    return base, d, d + width, rows < M


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _block_fp8_rowflat_kernel(
    w_ptr: tl.tensor,
    q_ptr: tl.tensor,
    s_ptr: tl.tensor,
    M: tl.tensor,
    N: tl.tensor,
    n_blocks_n: tl.tensor,
    FP8_MAX: tl.constexpr,
    FLOOR: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    CHUNK: tl.constexpr,
    G: tl.constexpr,
) -> None:
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
    preallocated outputs (the benchmark uses it to time the kernel alone). `chunk`: rows per walk step.
    `kernel="tile"` forces the tile kernel where the aligned-window one would serve (the benchmark's
    before/after on ragged rows).
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    bm, bn = block_size
    m, n = weight.shape
    mb, nb = triton.cdiv(m, bm), triton.cdiv(n, bn)
    if out is None:
        q = torch.empty((m, n), dtype=torch.float8_e4m3fn, device=weight.device)
        scale_inv = torch.empty((mb, nb), dtype=torch.float32, device=weight.device)
    else:
        q, scale_inv = out
    which = "rowflat" if kernel == "auto" and uses_rowflat(weight, q, bn) else "tile"
    default_chunk, default_warps = _DEFAULTS[which]
    chunk = min(default_chunk if chunk is None else chunk, bm)
    if bm % chunk:
        raise ValueError(f"chunk {chunk} must divide block rows {bm}")
    launch = _Launch(weight, q, scale_inv, m, n, bm, bn, chunk,
                     default_warps if num_warps is None else num_warps, num_stages)
    if weight.is_cuda:
        with torch.cuda.device(weight.device):  # Triton launches on the current device
            _LAUNCHERS[which](launch)
    else:  # TRITON_INTERPRET=1 (tests)
        _LAUNCHERS[which](launch)
    return q, scale_inv


ROWFLAT_GROUP = 16  # elements per aligned group: 16 bytes of fp8 q, 32 of bf16 w
KERNELS = ("auto", "tile")


def uses_rowflat(weight: torch.Tensor, q: torch.Tensor, block_n: Optional[int] = None) -> bool:
    """True when the aligned-window kernel serves this weight: contiguous rows that are not 16-element aligned.

    Aligned rows (N % 16 == 0), strided/transposed weights and N < 16 use the tile kernel, which is
    vectorized for the first and correct (element-wise) for the others.
    """
    m, n = weight.shape
    g = ROWFLAT_GROUP
    bn = block_n if block_n is not None else g
    return bool(n % g != 0 and n >= g and bn % g == 0
                and weight.stride() == (n, 1) and q.stride() == (n, 1))


@dataclass(frozen=True)
class _Launch:
    """One call's tensors and launch parameters."""

    weight: torch.Tensor
    q: torch.Tensor
    scale_inv: torch.Tensor
    m: int
    n: int
    bm: int
    bn: int
    chunk: int
    num_warps: int
    num_stages: Optional[int]

    def options(self) -> Dict[str, int]:
        opts = {"num_warps": self.num_warps}
        if self.num_stages is not None:
            opts["num_stages"] = self.num_stages
        return opts


def _launch_tile(c: _Launch) -> None:
    mb, nb = triton.cdiv(c.m, c.bm), triton.cdiv(c.n, c.bn)
    _block_fp8_kernel[(mb * nb,)](
        c.weight, c.q, c.scale_inv, c.m, c.n, c.weight.stride(0), c.weight.stride(1), c.q.stride(0), nb,
        FP8_MAX=FP8_E4M3_MAX, FLOOR=AMAX_FLOOR, BM=c.bm, BN=c.bn, CHUNK=c.chunk,
        EVEN_M=(c.m % c.bm == 0), EVEN_N=(c.n % c.bn == 0), **c.options(),
    )


def _launch_rowflat(c: _Launch) -> None:
    mb, nb = triton.cdiv(c.m, c.bm), triton.cdiv(c.n, c.bn)
    _block_fp8_rowflat_kernel[(mb * nb,)](
        c.weight, c.q, c.scale_inv, c.m, c.n, nb,
        FP8_MAX=FP8_E4M3_MAX, FLOOR=AMAX_FLOOR, BM=c.bm, BN=c.bn, CHUNK=c.chunk, G=ROWFLAT_GROUP,
        **c.options(),
    )


_LAUNCHERS: Dict[str, Callable[[_Launch], None]] = {"tile": _launch_tile, "rowflat": _launch_rowflat}
_DEFAULTS: Dict[str, Tuple[int, int]] = {"tile": (DEFAULT_CHUNK, DEFAULT_NUM_WARPS),
                                         "rowflat": (ROWFLAT_CHUNK, ROWFLAT_NUM_WARPS)}
