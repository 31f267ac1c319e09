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
# The ordered kernel (serves those rows now; see its docstring): amax and stores LAG stripes of BM rows apart.
ORDERED_CHUNK = 32
ORDERED_NUM_WARPS = 4
ORDERED_LAG = 4


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


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _wait_count(ptr: tl.tensor, target: tl.tensor) -> None:
    """Spin until the int32 at `ptr` reaches `target` (acquire: stores published before it are visible)."""
    c = tl.atomic_add(ptr, 0, sem="acquire")
    while c < target:
        c = tl.atomic_add(ptr, 0, sem="acquire")


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _fold(a: tl.tensor) -> tl.tensor:
    """Max of a 2-D tile of |w| that may hold NaN (from max.NaN): NaN -> inf first, tl.max drops NaN."""
    a = tl.where(a == a, a, float("inf"))
    return tl.max(tl.max(a, axis=1), axis=0)


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _block_amax(part_ptr: tl.tensor, blk: tl.tensor, n_blocks_n: tl.tensor, n_blocks: tl.tensor) -> tl.tensor:
    """A block's amax: its own groups' max plus what the groups its neighbours own spilled into it.

    part_ptr holds 4 x n_blocks floats written by the amax walk: [0] the block's own elements, [1] its last
    groups' elements in the right neighbour, [2] in the next row's first block of the same stripe, [3] in the
    next stripe's first block. Only a row's last block (or the one before it, when the last is narrower than
    a group) spills into the next row. `blk` may be a scalar or a tensor. Reads bypass L1 (.cg).
    """
    c = blk % n_blocks_n
    s = blk // n_blocks_n
    a = tl.load(part_ptr + blk, cache_modifier=".cg")
    a = tl.maximum(a, tl.load(part_ptr + n_blocks + blk - 1, mask=c > 0, other=0.0, cache_modifier=".cg"))
    row_last = s * n_blocks_n + n_blocks_n - 1
    first = c == 0
    two = first & (n_blocks_n > 1)
    a = tl.maximum(a, tl.load(part_ptr + 2 * n_blocks + row_last, mask=first, other=0.0, cache_modifier=".cg"))
    a = tl.maximum(a, tl.load(part_ptr + 2 * n_blocks + row_last - 1, mask=two, other=0.0, cache_modifier=".cg"))
    prev = row_last - n_blocks_n
    a = tl.maximum(a, tl.load(part_ptr + 3 * n_blocks + prev, mask=first & (s > 0), other=0.0,
                              cache_modifier=".cg"))
    a = tl.maximum(a, tl.load(part_ptr + 3 * n_blocks + prev - 1, mask=two & (s > 0), other=0.0,
                              cache_modifier=".cg"))
    return a


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _scales(amax: tl.tensor, FP8_MAX: tl.constexpr, FLOOR: tl.constexpr) -> "Tuple[tl.tensor, tl.tensor]":  # noqa: UP037
    """(448 / amax_eff, amax_eff / 448), IEEE-rounded, as quantize_reference_core computes them."""
    amax_eff = tl.where(amax == 0.0, FP8_MAX, tl.maximum(amax, FLOOR))
    fp8_max = amax_eff * 0.0 + FP8_MAX
    return tl.math.div_rn(fp8_max, amax_eff), tl.math.div_rn(amax_eff, fp8_max)


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _class_groups(k: tl.tensor, lead: tl.tensor, N: tl.tensor, c0: tl.tensor, c_end: tl.tensor,
                  G: tl.constexpr) -> "Tuple[tl.tensor, tl.tensor, tl.tensor, tl.tensor, tl.tensor]":  # noqa: UP037
    """The groups a block owns in the rows k, k + G, k + 2G, ... of its stripe (one residue class).

    Rows whose index differs by G start G * N elements apart, a multiple of G: all rows of a class have the
    same offset from the G-grid, so which groups the block owns is the same in each (scalars, not per row).
    Returns (a0: first owned group, last: offset of the last one from a0, has: it owns any, lo = a0 + last,
    row_start), all relative to the stripe's aligned base, for the class's first row.
    """
    row_start = lead + k * N
    a0 = ((row_start + c0 + G - 1) // G) * G
    end = row_start + c_end
    last = ((end - 1 - a0) // G) * G
    return a0, last, a0 < end, a0 + last, row_start


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _last_groups(pid_m: tl.tensor, lead: tl.tensor, N: tl.tensor, M: tl.tensor, c0: tl.tensor, c_end: tl.tensor,
                 left: tl.tensor, BM: tl.constexpr, G: tl.constexpr
                 ) -> "Tuple[tl.tensor, tl.tensor, tl.tensor, tl.tensor]":  # noqa: UP037
    """The last group the block owns in each of its BM rows, as one (BM x G) tile (a whole group per thread).

    Returns (offsets from the stripe base, mask: the row has one and it is whole, column of each element in
    the row (>= N: the next row's), local row). The last group is the only one that can reach past the block.
    """
    rl = tl.arange(0, BM)
    row_start = lead + rl * N
    a0 = ((row_start + c0 + G - 1) // G) * G
    end = row_start + c_end
    lo = a0 + ((end - 1 - a0) // G) * G
    ok = (pid_m * BM + rl < M) & (a0 < end) & (lo + G <= left)
    offs = lo[:, None] + tl.arange(0, G)[None, :]
    return offs, ok[:, None], offs - row_start[:, None], rl


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _block_fp8_ordered_kernel(
    w_ptr: tl.tensor,
    q_ptr: tl.tensor,
    s_ptr: tl.tensor,
    part_ptr: tl.tensor,
    sync_ptr: tl.tensor,
    M: tl.tensor,
    N: tl.tensor,
    n_blocks_n: tl.tensor,
    n_blocks: tl.tensor,
    n_stripes: tl.tensor,
    FP8_MAX: tl.constexpr,
    FLOOR: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    G: tl.constexpr,
    LAG: tl.constexpr,
) -> None:
    """Contiguous weight whose rows are not G-element aligned (N % 16 != 0, e.g. 4097 x 11007), in one launch.

    Rows of such a weight start at arbitrary addresses, so the 16-byte groups of memory do not line up with
    the 128x128 blocks: one group can hold elements of two blocks (three at a row's end). Here every group is
    owned by the block that holds its first element, and every load and store is a whole aligned group:
    - amax walk: program ticket t reads the groups block t owns (evict_last: they stay in L2), and publishes
      the max of its own elements and, for the last group of each row, the max of the elements that lie in
      the right neighbour / the next row's first block (part_ptr); then counts the block done for its stripe;
    - store walk: the same program then quantizes block t - LAG * n_blocks_n, LAG stripes behind: it waits
      until that stripe and its two neighbours are counted done, assembles the final amax of its block and
      of the blocks its last groups run into (_block_amax), writes the scale, and stores its groups whole,
      re-read from L2.
    Both walks go through the block's rows by residue class mod G (_class_groups): a (BM/G x BN) tile of rows
    G apart has one layout, so masks and scale choices are per column, not per element and row.
    Tickets come from an atomic counter in start order, and a program waits only for blocks of lower tickets
    (LAG >= 2 stripes), which have started and never wait themselves: no deadlock whatever the scheduling.
    HBM reads the weight once and writes q once. Offsets are int32 from each stripe's aligned start.
    """
    t = tl.atomic_add(sync_ptr, 1, sem="relaxed")  # [0]: the ticket counter; [1 + s]: blocks of stripe s done
    R: tl.constexpr = BM // G
    j = tl.arange(0, BN)
    jg = tl.arange(0, G)
    g_lo = (j // G) * G  # window position of each element's group start (constant over the group)
    i_r = tl.arange(0, R)
    out_ty = q_ptr.dtype.element_ty
    total = M.to(tl.int64) * N
    tail0 = (total // G) * G  # a last group shorter than G (M*N % G != 0) is read and written element-wise
    step = G * N  # between the rows of one class

    if t < n_blocks:
        pid_m = t // n_blocks_n
        c0 = (t - pid_m * n_blocks_n) * BN
        c_end = c0 + tl.minimum(N - c0, BN)
        flat0 = pid_m.to(tl.int64) * BM * N
        s0 = (flat0 // G) * G
        wb = w_ptr + s0
        lead = (flat0 - s0).to(tl.int32)
        left = tl.minimum(tail0 - s0, 1 << 30).to(tl.int32)  # whole groups left from s0
        rows_ok = pid_m * BM + i_r * G  # + k: a class's rows; < M checked per class below
        # per element only abs + max (NaN rides through max.NaN, _fold maps it to inf once)
        acc = tl.zeros((R, BN), dtype=tl.float32)
        for k in tl.static_range(G):
            a0, last, has, lo, row_start = _class_groups(k, lead, N, c0, c_end, G)
            r_off = (a0 + i_r * step)[:, None]
            body = (g_lo[None, :] < last) & ((rows_ok + k < M) & has)[:, None] & (r_off + g_lo[None, :] + G <= left)
            x = tl.load(wb + (r_off + j[None, :]), mask=body, other=0.0, eviction_policy="evict_last")
            acc = tl.maximum(acc, tl.abs(x.to(tl.float32)), propagate_nan=tl.PropagateNan.ALL)
        offs_l, ok_l, col, rl = _last_groups(pid_m, lead, N, M, c0, c_end, left, BM, G)
        xl = tl.load(wb + offs_l, mask=ok_l, other=0.0, eviction_policy="evict_last")
        xl = tl.abs(xl.to(tl.float32))
        ends = (rl == BM - 1)[:, None]  # the stripe's last row: its next row is the next stripe's
        acc_own = tl.where(col < c_end, xl, 0.0)
        acc_right = tl.where((col >= c_end) & (col < N), xl, 0.0)
        acc_next = tl.where((col >= N) & ~ends, xl, 0.0)
        acc_nexts = tl.where((col >= N) & ends, xl, 0.0)
        own = tl.maximum(_fold(acc), _fold(acc_own))
        if pid_m == n_stripes - 1:  # this block's members of the short last group
            f = tail0 + jg
            rr = f // N
            cc = f - rr * N
            mine = (f < total) & (cc >= c0) & (cc < c_end)
            xt = tl.abs(tl.load(w_ptr + f, mask=mine, other=0.0).to(tl.float32))
            own = tl.maximum(own, tl.max(tl.where(xt == xt, xt, float("inf")), axis=0))
        tl.store(part_ptr + t, own)
        tl.store(part_ptr + n_blocks + t, _fold(acc_right))
        tl.store(part_ptr + 2 * n_blocks + t, _fold(acc_next))
        tl.store(part_ptr + 3 * n_blocks + t, _fold(acc_nexts))
        tl.debug_barrier()  # every thread's stores precede the release below
        tl.atomic_add(sync_ptr + 1 + pid_m, 1, sem="release")

    b = t - LAG * n_blocks_n
    if b >= 0:
        pid_m = b // n_blocks_n
        _wait_count(sync_ptr + 1 + pid_m, n_blocks_n)
        if pid_m + 1 < n_stripes:  # a last group may run on into the next stripe's first row
            _wait_count(sync_ptr + 2 + pid_m, n_blocks_n)
        if pid_m > 0:  # the previous stripe's last row spills into this stripe's first block
            _wait_count(sync_ptr + pid_m, n_blocks_n)
        c0 = (b - pid_m * n_blocks_n) * BN
        c_end = c0 + tl.minimum(N - c0, BN)
        flat0 = pid_m.to(tl.int64) * BM * N
        s0 = (flat0 // G) * G
        wb = w_ptr + s0
        qb = q_ptr + s0
        lead = (flat0 - s0).to(tl.int32)
        left = tl.minimum(tail0 - s0, 1 << 30).to(tl.int32)
        rows_ok = pid_m * BM + i_r * G
        inv_self, scale_self = _scales(_block_amax(part_ptr, b, n_blocks_n, n_blocks), FP8_MAX, FLOOR)
        tl.store(s_ptr + b, scale_self)
        has_right = c_end < N
        inv_right, _unused_r = _scales(_block_amax(part_ptr, tl.where(has_right, b + 1, b), n_blocks_n, n_blocks),
                                       FP8_MAX, FLOOR)
        if c_end + G > N:  # only a row's last blocks run on into the next row
            inv_n0, _unused_0 = _scales(_block_amax(part_ptr, pid_m * n_blocks_n, n_blocks_n, n_blocks),
                                        FP8_MAX, FLOOR)
            nxt_stripe = tl.minimum(pid_m + 1, n_stripes - 1)
            inv_n1, _unused_1 = _scales(_block_amax(part_ptr, nxt_stripe * n_blocks_n, n_blocks_n, n_blocks),
                                        FP8_MAX, FLOOR)
        else:
            inv_n0 = inv_self
            inv_n1 = inv_self
        for k in tl.static_range(G):
            a0, last, has, lo, row_start = _class_groups(k, lead, N, c0, c_end, G)
            r_off = (a0 + i_r * step)[:, None]
            body = (g_lo[None, :] < last) & ((rows_ok + k < M) & has)[:, None] & (r_off + g_lo[None, :] + G <= left)
            x = tl.load(wb + (r_off + j[None, :]), mask=body, other=0.0, eviction_policy="evict_first")
            tl.store(qb + (r_off + j[None, :]), _to_q(x.to(tl.float32), inv_self, FP8_MAX, out_ty), mask=body)
        offs_l, ok_l, col, rl = _last_groups(pid_m, lead, N, M, c0, c_end, left, BM, G)
        xl = tl.load(wb + offs_l, mask=ok_l, other=0.0, eviction_policy="evict_first").to(tl.float32)
        inv_next = tl.where(rl == BM - 1, inv_n1, inv_n0)[:, None]  # the stripe's last row: the next stripe's
        inv = tl.where(col < c_end, inv_self, tl.where(col < N, inv_right, inv_next))
        tl.store(qb + offs_l, _to_q(xl, inv, FP8_MAX, out_ty), mask=ok_l)
        if b == n_blocks - 1:  # the short last group: in the last row, whose blocks are waited for above
            f = tail0 + jg
            in_t = f < total
            rr = f // N
            blk = tl.where(in_t, (rr // BM) * n_blocks_n + (f - rr * N) // BN, 0)
            inv_t, _unused_t = _scales(_block_amax(part_ptr, blk, n_blocks_n, n_blocks), FP8_MAX, FLOOR)
            xt = tl.load(w_ptr + f, mask=in_t, other=0.0).to(tl.float32)
            tl.store(q_ptr + f, _to_q(xt, inv_t, FP8_MAX, out_ty), mask=in_t)


def quantize_triton(
    weight: torch.Tensor,
    block_size: Tuple[int, int] = (128, 128),
    *,
    chunk: Optional[int] = None,
    num_warps: Optional[int] = None,
    num_stages: Optional[int] = None,
    out: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    kernel: str = "auto",
    lag: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Launch the fused kernel: no validation and no NaN check (callers do both; see quantize.py).

    `weight` may be strided (any layout); `q` comes back contiguous. `out=(q, scale_inv)` reuses
    preallocated outputs (the benchmark uses it to time the kernel alone). `chunk`: rows per walk step.
    `kernel="tile"` / `"rowflat"` force the tile / one-block aligned-window kernel where the ordered one would
    serve (the benchmark's before/after on ragged rows). `lag`: the ordered kernel's stripe distance (>= 2).
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
    if not uses_rowflat(weight, q, bn) or kernel == "tile":
        which = "tile"
    else:
        which = "ordered" if kernel == "auto" else kernel
    default_chunk, default_warps = _DEFAULTS[which]
    chunk = min(default_chunk if chunk is None else chunk, bm)
    if bm % chunk:
        raise ValueError(f"chunk {chunk} must divide block rows {bm}")
    launch = _Launch(weight, q, scale_inv, m, n, bm, bn, chunk,
                     default_warps if num_warps is None else num_warps, num_stages,
                     max(2, ORDERED_LAG if lag is None else lag))
    if weight.is_cuda:
        with torch.cuda.device(weight.device):  # Triton launches on the current device
            _LAUNCHERS[which](launch)
    else:  # TRITON_INTERPRET=1 (tests)
        _LAUNCHERS[which](launch)
    return q, scale_inv


ROWFLAT_GROUP = 16  # elements per aligned group: 16 bytes of fp8 q, 32 of bf16 w
KERNELS = ("auto", "tile", "rowflat")


def uses_rowflat(weight: torch.Tensor, q: torch.Tensor, block_n: Optional[int] = None) -> bool:
    """True when an aligned-window kernel serves this weight: contiguous rows that are not 16-element aligned.

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
    lag: int = ORDERED_LAG

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


def _launch_ordered(c: _Launch) -> None:
    mb, nb = triton.cdiv(c.m, c.bm), triton.cdiv(c.n, c.bn)
    part = torch.empty(4 * mb * nb, dtype=torch.float32, device=c.weight.device)  # see _block_amax
    sync = torch.zeros(1 + mb, dtype=torch.int32, device=c.weight.device)  # ticket counter, blocks done per stripe
    _block_fp8_ordered_kernel[(mb * nb + c.lag * nb,)](
        c.weight, c.q, c.scale_inv, part, sync, c.m, c.n, nb, mb * nb, mb,
        FP8_MAX=FP8_E4M3_MAX, FLOOR=AMAX_FLOOR, BM=c.bm, BN=c.bn, G=ROWFLAT_GROUP, LAG=c.lag, **c.options(),
    )


_LAUNCHERS: Dict[str, Callable[[_Launch], None]] = {"tile": _launch_tile, "rowflat": _launch_rowflat,
                                                    "ordered": _launch_ordered}
_DEFAULTS: Dict[str, Tuple[int, int]] = {"tile": (DEFAULT_CHUNK, DEFAULT_NUM_WARPS),
                                         "rowflat": (ROWFLAT_CHUNK, ROWFLAT_NUM_WARPS),
                                         "ordered": (ORDERED_CHUNK, ORDERED_NUM_WARPS)}
