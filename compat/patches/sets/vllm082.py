"""vLLM 0.8.2 - 0.8.4: unquantized fused-MoE experts lose `weight_loader` after the first load (fixed in 0.8.5).

vllm/model_executor/layers/fused_moe/layer.py, UnquantizedFusedMoEMethod.process_weights_after_loading (0.8.2 line
111, 0.8.3/0.8.4 line 113) rebinds `layer.w13_weight` / `layer.w2_weight` to new `torch.nn.Parameter` objects. The
attributes `create_weights` put on the originals with `set_weight_attrs` (`weight_loader`, ...) are gone, so the
second `model.load_weights(...)` (weight sync from a trainer) fails for every MoE model. 0.8.1 does not rebind
(no bug); 0.8.5 assigns `.data` instead, which is exactly the edit applied here, at the source, for every MoE model.
verl instead re-attaches `experts.weight_loader` on instances of a list of model classes; that instance-level repair
is offered as `repair_moe_weight_loaders(model)` for models built before compat was set up.
"""

from __future__ import annotations

from typing import Any

from ..engine import Patch, PatchSet
from ..source import Edit, source_edit

LEDGER = """\
patch                          what                                                   upstream fix
vllm082.moe_keep_parameters    pad/shuffle into .data, keep the Parameter objects     vLLM 0.8.5 (same edit)
                               (and their weight_loader) of unquantized fused MoE
"""

_REBIND_PAD = """\
layer.w13_weight = torch.nn.Parameter(self._maybe_pad_weight(
    layer.w13_weight.data),
                                      requires_grad=False)
layer.w2_weight = torch.nn.Parameter(self._maybe_pad_weight(
    layer.w2_weight.data),
                                     requires_grad=False)
"""
_KEEP_PAD = """\
layer.w13_weight.data = self._maybe_pad_weight(layer.w13_weight.data)
layer.w2_weight.data = self._maybe_pad_weight(layer.w2_weight.data)
"""
# 0.8.3 and 0.8.4 only (ROCm aiter path): the same rebinding after shuffling
_REBIND_SHUFFLE = """\
layer.w13_weight = torch.nn.Parameter(shuffled_w13,
                                      requires_grad=False)
layer.w2_weight = torch.nn.Parameter(shuffled_w2,
                                     requires_grad=False)
"""
_KEEP_SHUFFLE = """\
layer.w13_weight.data = shuffled_w13
layer.w2_weight.data = shuffled_w2
"""

PATCH_SET = PatchSet(
    name="vllm082",
    package="vllm",
    versions=">=0.8.2,<0.8.5",
    switch=None,
    ledger=LEDGER,
    patches=(
        Patch(
            id="vllm082.moe_keep_parameters",
            target="vllm.model_executor.layers.fused_moe.layer:UnquantizedFusedMoEMethod.process_weights_after_loading",
            why="new Parameter objects drop weight_loader: a second load_weights (trainer weight sync) fails for MoE",
            upstream_fix="vLLM 0.8.5 assigns .data instead of new Parameters (vllm issue #17429 reported it on 0.8.4)",
            fingerprint=(
                "sha256:c46fe80136175698",  # 0.8.2
                "sha256:18c894e637ce4e8e",  # 0.8.3, 0.8.4
            ),
            make=source_edit(Edit(_REBIND_PAD, _KEEP_PAD), Edit(_REBIND_SHUFFLE, _KEEP_SHUFFLE, optional=True)),
        ),
    ),
)


def repair_moe_weight_loaders(model: Any) -> int:
    """Re-attach `weight_loader` to fused-MoE parameters that lost it (verl's instance-level repair, generalized).

    For every submodule with a `weight_loader` method and `w13_weight`/`w2_weight` parameters (vLLM's FusedMoE),
    each of its own parameters without a `weight_loader` gets the module's bound `weight_loader`, which is what
    `FusedMoE.__init__` passed to `create_weights`. Works for any model class, on any release; returns the number
    of parameters repaired (0 when nothing was lost, e.g. with the source patch applied or on 0.8.1 / 0.8.5).
    """
    repaired = 0
    for module in model.modules():
        loader = getattr(module, "weight_loader", None)
        params = dict(module.named_parameters(recurse=False))
        if not callable(loader) or "w13_weight" not in params or "w2_weight" not in params:
            continue
        for param in params.values():
            if getattr(param, "weight_loader", None) is None:
                param.weight_loader = loader
                repaired += 1
    return repaired
