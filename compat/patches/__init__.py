"""Patches of third-party code (vLLM), declared as data, fingerprinted, applied lazily and revertible.

Public entry points (compat.setup()/revert()/doctor/CLI call these): activate, revert, status, format_status_table.
Importing this package imports neither vLLM nor torch.
"""

from __future__ import annotations

from .engine import (
    Patch,
    PatchError,
    PatchSet,
    PatchStatus,
    Refusal,
    activate,
    applied_sets,
    findings,
    format_status_table,
    patch_status,
    refusals,
    revert,
    status,
    status_dicts,
)
from .source import Edit, source_edit

__all__ = [
    "Edit", "Patch", "PatchError", "PatchSet", "PatchStatus", "Refusal", "activate", "applied_sets", "findings",
    "format_status_table", "patch_status", "refusals", "revert", "source_edit", "status", "status_dicts",
]
