"""The patch sets compat ships. Each module exposes PATCH_SET and imports nothing heavy at module level.

Add a set by writing compat/patches/sets/<name>.py and listing it in SET_MODULES.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import TYPE_CHECKING, Tuple

if TYPE_CHECKING:
    from ..engine import PatchSet

SET_MODULES: Tuple[str, ...] = (
    "vllm07",
    "vllm082",
    "vllm054_hidden",
    "vllm_fp8",
    "flash_attn_hide",
    "transformers_attn",
    "transformers_dtype",
    "verl_padding",
)


@lru_cache(maxsize=None)
def all_sets() -> Tuple[PatchSet, ...]:
    return tuple(importlib.import_module(f"{__name__}.{name}").PATCH_SET for name in SET_MODULES)


def get(name: str) -> PatchSet:
    """The set called `name`; KeyError listing the known names otherwise."""
    for ps in all_sets():
        if ps.name == name:
            return ps
    raise KeyError(f"unknown patch set {name!r}; known: {', '.join(ps.name for ps in all_sets())}")
