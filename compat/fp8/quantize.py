"""Block-FP8 quantizer: plain-torch reference, Triton fused path, streaming state-dict API.

Numerics (shared bit-for-bit by both paths, see docs/fp8.md):
    amax      = max |w| over the block, in float32 (exact: |x| and max are exact for bf16/fp16/fp32)
    amax_eff  = 448 if amax == 0 (all-zero block -> scale_inv exactly 1.0, q all zeros)
                else max(amax, AMAX_FLOOR)
    scale_inv = amax_eff / 448          (float32, IEEE round-to-nearest)
    q         = e4m3(clamp(w * (448 / amax_eff), -448, 448))   (round-to-nearest-even)
so `w ~= q * scale_inv` per block and the block's largest magnitude lands on 448. A NaN/Inf anywhere
makes its block's scale non-finite, which is how both paths detect it (one small check over the scale
grid, no extra pass over the weight).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Callable, Iterable, Iterator, Optional, Tuple, Union

import torch

from compat.fp8 import AMAX_FLOOR, DEFAULT_BLOCK_SIZE, FP8_E4M3_MAX, scale_name

FP8_DTYPE = torch.float8_e4m3fn
_INPUT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
_IMPLS = ("auto", "torch", "triton")

BlockSize = Tuple[int, int]
Items = Union[Mapping[str, torch.Tensor], Iterable[Tuple[str, torch.Tensor]]]


# --------------------------------------------------------------------------------------------- helpers


def _block_size(block_size: Union[int, Tuple[int, int]]) -> BlockSize:
    if isinstance(block_size, int):
        block_size = (block_size, block_size)
    try:
        bm, bn = (int(b) for b in block_size)
    except (TypeError, ValueError):
        raise ValueError(f"block_size must be an int or a pair of ints, got {block_size!r}") from None
    if bm <= 0 or bn <= 0:
        raise ValueError(f"block_size must be positive, got {block_size!r}")
    return bm, bn


def _scale_shape(shape: Tuple[int, int], bs: BlockSize) -> Tuple[int, int]:
    return (math.ceil(shape[0] / bs[0]), math.ceil(shape[1] / bs[1]))


def _check_weight(weight: object) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}")
    if weight.dtype not in _INPUT_DTYPES:
        raise ValueError(f"weight dtype must be bfloat16, float16 or float32, got {weight.dtype}")
    return weight


def _refuse_non_finite(scale_inv: torch.Tensor) -> None:
    """NaN/Inf in a block make its scale non-finite: one reduction over the (small) scale grid."""
    if not bool(torch.isfinite(scale_inv).all()):
        bad = (~torch.isfinite(scale_inv)).nonzero()
        first = tuple(int(i) for i in bad[0]) if len(bad) else ()
        raise ValueError(
            f"weight contains NaN or Inf ({len(bad)} block(s), first block index {first}); "
            "refusing to quantize: fix the weights first"
        )


def _is_pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


def triton_available(device: Optional[torch.device] = None) -> bool:
    """True when the fused Triton path can run on `device` (CUDA, sm89+ for e4m3, triton importable)."""
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True
    if torch.version.hip is not None or not torch.cuda.is_available():
        # ROCm's MI300 uses the e4m3 "fnuz" variant, a different format from vLLM-CUDA's e4m3fn.
        return False
    dev = torch.device("cuda") if device is None else torch.device(device)
    if dev.type != "cuda":
        return False
    # Triton's float8e4nv conversions need sm89+ (Ada/Hopper); older GPUs use the torch path.
    return bool(torch.cuda.get_device_capability(dev) >= (8, 9))


def _pick_impl(weight: torch.Tensor, impl: str, bs: BlockSize) -> str:
    if impl not in _IMPLS:
        raise ValueError(f"impl must be one of {_IMPLS}, got {impl!r}")
    triton_ok = _is_pow2(bs[0]) and _is_pow2(bs[1])
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    if impl == "torch":
        return "torch"
    if impl == "triton":
        if not triton_ok:
            raise ValueError(f"impl='triton' needs power-of-two block sizes, got {bs}")
        if not (weight.is_cuda or interpret):
            raise ValueError("impl='triton' needs a CUDA tensor (or TRITON_INTERPRET=1 for testing)")
        if not triton_available(weight.device if weight.is_cuda else None):
            raise ValueError("impl='triton' requested but Triton is not usable here (not importable or GPU < sm89)")
        return "triton"
    if weight.is_cuda and triton_ok and triton_available(weight.device):
        return "triton"
    return "torch"


# ------------------------------------------------------------------------------------- torch reference


def quantize_reference_core(weight: torch.Tensor, block_size: BlockSize) -> Tuple[torch.Tensor, torch.Tensor]:
    """Plain-torch quantization without validation or NaN check (also what the benchmark compiles).

    Keeps `weight`'s device; allocates an fp32 copy of the (padded) weight, which is fine for a
    reference and for CPU use of one tensor at a time.
    """
    bm, bn = block_size
    m, n = weight.shape
    mb, nb = math.ceil(m / bm), math.ceil(n / bn)
    pm, pn = mb * bm - m, nb * bn - n
    w = weight
    if pm or pn:
        # zero padding never changes a block's amax
        w = torch.nn.functional.pad(w, (0, pn, 0, pm))
    blocks = w.reshape(mb, bm, nb, bn)
    amax = blocks.abs().amax(dim=(1, 3)).to(torch.float32)  # NaN/Inf propagate into amax
    amax_eff = torch.where(amax == 0, torch.full_like(amax, FP8_E4M3_MAX), amax.clamp_min(AMAX_FLOOR))
    # tensor / tensor is one IEEE division. On CUDA, torch divides by a Python scalar as a multiply by its
    # reciprocal (two roundings: off by one ulp for some amax, seen on the H100 2026-11-25), and `448.0 / t`
    # likewise; both would break bit-equality with the Triton kernel.
    fp8_max = torch.full_like(amax_eff, FP8_E4M3_MAX)
    scale_inv = amax_eff / fp8_max
    inv = fp8_max / amax_eff
    scaled = blocks.to(torch.float32) * inv[:, None, :, None]
    q = scaled.clamp_(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(FP8_DTYPE).reshape(mb * bm, nb * bn)
    if pm or pn:
        q = q[:m, :n].contiguous()
    return q, scale_inv


# ------------------------------------------------------------------------------------------ public API


def quantize_blockwise(
    weight: torch.Tensor,
    block_size: Union[int, Tuple[int, int]] = DEFAULT_BLOCK_SIZE,
    *,
    impl: str = "auto",
    check_finite: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Quantize a 2-D bf16/fp16/fp32 weight to block FP8 (e4m3fn) with per-block float32 scales.

    Returns `(q, scale_inv)`: `q` has `weight`'s shape and dtype float8_e4m3fn; `scale_inv` is float32,
    shape `(ceil(M/bm), ceil(N/bn))`, the dequantization scale (`weight ~= q * scale_inv` per block),
    i.e. what vLLM's block-FP8 layers load as `weight_scale_inv` (<= 0.10.x) / `weight_scale` (0.11.0).
    `impl="auto"` uses the fused Triton kernel for CUDA tensors on sm89+ when triton imports, else torch.
    Raises ValueError on NaN/Inf (unless `check_finite=False`, which skips the host sync; then a
    non-finite block shows up as a non-finite scale).
    """
    weight = _check_weight(weight)
    bs = _block_size(block_size)
    chosen = _pick_impl(weight, impl, bs)
    m, n = weight.shape
    if m == 0 or n == 0:
        q = torch.empty((m, n), dtype=FP8_DTYPE, device=weight.device)
        return q, torch.ones(_scale_shape((m, n), bs), dtype=torch.float32, device=weight.device)
    if chosen == "triton":
        from compat.fp8._triton import quantize_triton

        q, scale_inv = quantize_triton(weight, bs)
    else:
        q, scale_inv = quantize_reference_core(weight, bs)
    if check_finite:
        _refuse_non_finite(scale_inv)
    return q, scale_inv


def dequantize_blockwise(
    q: torch.Tensor,
    scale_inv: torch.Tensor,
    block_size: Union[int, Tuple[int, int]] = DEFAULT_BLOCK_SIZE,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Inverse of quantize_blockwise (up to rounding): `q * scale_inv` expanded per block, in `dtype`."""
    bm, bn = _block_size(block_size)
    if q.dim() != 2 or scale_inv.dim() != 2:
        raise ValueError(f"q and scale_inv must be 2-D, got {tuple(q.shape)} and {tuple(scale_inv.shape)}")
    m, n = q.shape
    expected = _scale_shape((m, n), (bm, bn))
    if tuple(scale_inv.shape) != expected:
        raise ValueError(
            f"scale_inv shape {tuple(scale_inv.shape)} does not match q {tuple(q.shape)} "
            f"with block {(bm, bn)}: expected {expected}"
        )
    s = scale_inv.to(torch.float32).repeat_interleave(bm, dim=0)[:m].repeat_interleave(bn, dim=1)[:, :n]
    return (q.to(torch.float32) * s).to(dtype)


# Linear weights that vLLM keeps unquantized in block-FP8 models (DeepSeek-V3-style checkpoints keep
# them bf16): token embeddings, the output head, norms, MoE routers and Qwen-MoE's shared-expert gate.
_SKIP_SUBSTRINGS = ("embed", "lm_head", "norm")
_SKIP_SUFFIXES = (".gate.weight", "shared_expert_gate.weight")


def default_should_quantize(name: str, tensor: torch.Tensor) -> bool:
    """Quantize 2-D floating `*.weight` tensors of linear layers, except embeddings, lm_head, norms
    and MoE routers (`*.gate.weight`, `*shared_expert_gate.weight`). `gate_proj`/`gate_up_proj` are
    quantized. The surest predicate is "the vLLM parameter of that name is float8": pass one when a
    model instance is at hand."""
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 2 or tensor.dtype not in _INPUT_DTYPES:
        return False
    if not name.endswith(".weight") and name != "weight":
        return False
    lowered = name.lower()
    if any(s in lowered for s in _SKIP_SUBSTRINGS):
        return False
    return not lowered.endswith(_SKIP_SUFFIXES)


def quantize_state_dict(
    items: Items,
    should_quantize: Optional[Callable[[str, torch.Tensor], bool]] = None,
    block_size: Union[int, Tuple[int, int]] = DEFAULT_BLOCK_SIZE,
    *,
    scale_suffix: str = "_scale_inv",
    impl: str = "auto",
) -> Iterator[Tuple[str, torch.Tensor]]:
    """Stream `(name, tensor)` pairs (a Mapping or any iterable) into quantized pairs, one at a time.

    For a selected weight yields `(name, q)` then `(name + scale_suffix, scale_inv)`; everything else
    passes through unchanged. Lazy: it reads the next input only when asked for the next output and
    drops its reference to each input weight before yielding, so with a streaming source (a generator
    over safetensors shards, a trainer's parameter iterator) at most one bf16 weight and its fp8 copy
    are alive. `scale_suffix`: "_scale_inv" for vLLM 0.10.x, "_scale" for 0.11.0.
    """
    if scale_suffix not in ("_scale_inv", "_scale"):
        raise ValueError(f"scale_suffix must be '_scale_inv' or '_scale', got {scale_suffix!r}")
    bs = _block_size(block_size)
    predicate = default_should_quantize if should_quantize is None else should_quantize
    source = items.items() if isinstance(items, Mapping) else items
    return _stream(iter(source), predicate, bs, scale_suffix, impl)


def _stream(
    source: Iterator[Tuple[str, torch.Tensor]],
    predicate: Callable[[str, torch.Tensor], bool],
    bs: BlockSize,
    scale_suffix: str,
    impl: str,
) -> Iterator[Tuple[str, torch.Tensor]]:
    # Separate generator so that argument errors above raise at call time, not at first next().
    for name, tensor in source:
        if not predicate(name, tensor):
            yield name, tensor
            continue
        try:
            q, scale_inv = quantize_blockwise(tensor, bs, impl=impl)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from exc
        del tensor  # keep no reference to the bf16 weight while the consumer holds q
        yield name, q
        del q
        yield scale_name(name, scale_suffix), scale_inv
