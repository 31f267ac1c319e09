"""Pure-torch `flash_attn.bert_padding` for machines without flash-attn (the verl_padding patch set installs it).

verl 0.4.0 - 0.6.1 import `index_first_axis, pad_input, rearrange, unpad_input` from flash_attn.bert_padding at
module import on every CUDA machine (compat/data/verl.toml `bert_padding_*`), so without flash-attn its
workers cannot even be imported. These functions have the semantics of flash-attn 2.x flash_attn/bert_padding.py
(Dao-AILab/flash-attention; the 2.6+ signatures: unpad_input(hidden_states, attention_mask, unused_mask=None)
returns (packed, indices, cu_seqlens, max_seqlen_in_batch, seqused), 4 values before; every verl caller unpacks
`x, indices, *_` or `x, indices, cu_seqlens, *_`, so both fit), written with plain torch indexing, which autograd
differentiates (flash-attn uses gather/scatter autograd Functions for speed; they agree for the distinct indices
unpad_input makes).

`unpad_input` itself refuses with a CompatError: each verl caller packs sequences for a model forward, and without
flash-attn's varlen kernels sdpa/eager attend across the pack (silently wrong training); `unpad` has its math.

Imports no torch itself (tensor methods; torch where a function runs), so the set installs it at no cost and the
quick env (no torch) can read PATTERNS.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

if TYPE_CHECKING:
    import torch

__all__ = ["index_first_axis", "index_put_first_axis", "pad_input", "rearrange", "unpad", "unpad_input"]

# einops.rearrange where einops is installed (flash-attn re-exports einops' own); else the patterns verl calls it
# with (verl 0.4.0 - 0.6.1 dp_actor.py / dp_critic.py / fsdp_workers.py / fsdp_sft_trainer.py / engine_impl.py;
# compat/data/verl.toml bert_padding_rearrange, checked against the installed release's source in tests/verl).
_einops: Optional[Callable[..., Any]]
try:
    _einops = importlib.import_module("einops").rearrange
except ImportError:
    _einops = None

PATTERNS = ("b s ... -> (b s) ...", "c b s ... -> (b s) c ...")


def rearrange(tensor: torch.Tensor, pattern: str, **axes: int) -> torch.Tensor:
    """einops.rearrange when einops is installed; else exactly the patterns verl uses (ValueError for others)."""
    if _einops is not None:
        return _einops(tensor, pattern, **axes)  # type: ignore[no-any-return]
    p = " ".join(pattern.split())
    if p == PATTERNS[0] and not axes:
        return tensor.flatten(0, 1)
    if p == PATTERNS[1] and not axes:
        return tensor.permute(1, 2, 0, *range(3, tensor.dim())).flatten(0, 1)
    raise ValueError(f"compat's einops-free rearrange supports only {', '.join(map(repr, PATTERNS))} (the ones "
                     f"verl uses), got {pattern!r} {axes or ''}; install einops for the rest")


def index_first_axis(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Rows `indices` of the first axis: (N, ...) -> (len(indices), ...)."""
    return tensor[indices]


def index_put_first_axis(values: torch.Tensor, indices: torch.Tensor, first_axis_dim: int) -> torch.Tensor:
    """Zeros of (first_axis_dim, ...) with `values` at rows `indices` (the inverse of index_first_axis)."""
    out = values.new_zeros((first_axis_dim, *values.shape[1:]))
    return out.index_put((indices,), values)


PACKED_REFUSAL = (
    "compat: verl's remove-padding path packs several sequences into one row, and without flash-attn the model's "
    "attention (sdpa/eager) attends across them (tests/verl/test_bert_padding.py measures it in transformers "
    "itself), so the training would be silently wrong. Set actor_rollout_ref.model.use_remove_padding=False and "
    "critic.model.use_remove_padding=False (`python -m compat verl-overrides` prints them), or install a "
    "flash-attn that fits this machine (`python -m compat plan`)")


def unpad_input(hidden_states: torch.Tensor, attention_mask: torch.Tensor, unused_mask: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """Refused (CompatError): every verl 0.4.0 - 0.6.1 caller packs sequences for a model forward that, without
    flash-attn's varlen kernels, mixes them. The import succeeds (that is the set's job); a call says what to do."""
    from ..errors import CompatError

    raise CompatError(PACKED_REFUSAL)


def unpad(hidden_states: torch.Tensor, attention_mask: torch.Tensor, unused_mask: Optional[torch.Tensor] = None
          ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """flash-attn 2.6+'s unpad_input: (batch, seqlen, ...) + mask (batch, seqlen) -> (tokens (nnz, ...), indices
    (nnz,) into batch*seqlen, cu_seqlens (batch+1,) int32, max_seqlen_in_batch int, seqused (batch,) int32).
    `unused_mask` (2.6+): tokens kept in the packed tensor but not counted in seqused. Not exported under
    flash_attn's name (see unpad_input); for code that packs without attention across the pack."""
    import torch

    masks = attention_mask + unused_mask if unused_mask is not None else attention_mask
    seqlens = masks.sum(dim=-1, dtype=torch.int32)
    used = attention_mask.sum(dim=-1, dtype=torch.int32)
    indices = torch.nonzero(masks.flatten(), as_tuple=False).flatten()
    max_seqlen = int(seqlens.max().item())
    cu_seqlens = torch.nn.functional.pad(torch.cumsum(seqlens, dim=0, dtype=torch.int32), (1, 0))
    return index_first_axis(hidden_states.flatten(0, 1), indices), indices, cu_seqlens, max_seqlen, used


def pad_input(hidden_states: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int) -> torch.Tensor:
    """(nnz, ...) back to (batch, seqlen, ...), zeros where the mask was 0 (the inverse of unpad_input)."""
    return index_put_first_axis(hidden_states, indices, batch * seqlen).reshape(batch, seqlen, *hidden_states.shape[1:])
