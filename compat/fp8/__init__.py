"""Block-FP8 (e4m3, 128x128 blocks) weight quantization for vLLM's block-FP8 linear layers.

Importing this package does not import torch: the public functions are loaded on first use
(module ``__getattr__``), so patch sets and the CLI may reference ``compat.fp8`` cheaply.
Only code that actually quantizes pays for torch (and Triton, on CUDA).

Public API (see docs/fp8.md):
    quantize_blockwise(weight, block_size=(128, 128), *, impl="auto", check_finite=True) -> (q, scale_inv)
    dequantize_blockwise(q, scale_inv, block_size=(128, 128), dtype=torch.float32) -> weight
    quantize_state_dict(items, should_quantize=None, block_size=(128, 128), *, scale_suffix="_scale_inv")
    default_should_quantize(name, tensor) -> bool
    scale_name(weight_name, scale_suffix="_scale_inv") -> str
"""

from __future__ import annotations

from typing import Any, Tuple

FP8_E4M3_MAX = 448.0
"""Largest finite float8_e4m3fn value: each block's largest magnitude is mapped onto it."""

DEFAULT_BLOCK_SIZE: Tuple[int, int] = (128, 128)
"""Block shape used by DeepSeek-V3 checkpoints and vLLM's `weight_block_size` default."""

AMAX_FLOOR = 1e-30
"""Smallest block amax used to build a scale, so that 448/amax stays finite (see docs/fp8.md)."""

SCALE_SUFFIXES = ("_scale_inv", "_scale")
"""vLLM 0.10.x loads `<name>_scale_inv` (checkpoint name); 0.11.0 loads `<name>_scale`."""


def scale_name(weight_name: str, scale_suffix: str = "_scale_inv") -> str:
    """Key of the block scale that goes with `weight_name` (`x.weight` -> `x.weight_scale_inv`)."""
    return weight_name + scale_suffix


_LAZY = {
    "quantize_blockwise": "compat.fp8.quantize",
    "dequantize_blockwise": "compat.fp8.quantize",
    "quantize_state_dict": "compat.fp8.quantize",
    "default_should_quantize": "compat.fp8.quantize",
    "triton_available": "compat.fp8.quantize",
    "load_weights": "compat.fp8.loading",
}

__all__ = [
    "FP8_E4M3_MAX",
    "DEFAULT_BLOCK_SIZE",
    "AMAX_FLOOR",
    "SCALE_SUFFIXES",
    "scale_name",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    """Load the torch-backed functions on first access (keeps `import compat.fp8` torch-free)."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'compat.fp8' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
