"""vLLM 0.10.0 - 0.11.0: block-FP8 rollout (opt-in switch `fp8`): bf16 weights quantized on load, repeated reloads.

Declaration only: what is patched, why, on which releases, with which verified fingerprints. The loaders each patch
installs, and the vLLM facts they build on, live with the FP8 feature in compat/fp8/rollout.py. Importing this
module imports neither torch nor vLLM.
"""

from __future__ import annotations

from ...fp8.rollout import (  # noqa: F401  (re-exported: compat.kwargs and tests import them from here)
    BLOCK_QUANT_CONFIG,
    LINEAR_PAIRS,
    MOE_PAIRS,
    RENAMED,
    STATE_ATTR,
    LayerState,
    engine_kwargs,
    layer_state,
    make_create_weights,
    make_process_weights,
)
from ..engine import Patch, PatchSet

__all__ = ["BLOCK_QUANT_CONFIG", "LINEAR_PAIRS", "MOE_PAIRS", "PATCH_SET", "RENAMED", "STATE_ATTR", "LayerState",
           "engine_kwargs", "layer_state"]

LEDGER = """\
patch                                what                                                 upstream fix
vllm_fp8.linear_create_weights       block-FP8 linear: bf16 weights quantized on load     none (vLLM quantizes bf16 only to
                                     (weight + block scale through the release loaders)    per-tensor FP8, not to blocks)
vllm_fp8.linear_process_weights      keep loaders after post-processing; reloads write    none in 0.10.0-0.11.0
                                     into what the kernels read; second call is a no-op
vllm_fp8.moe_create_weights          same as linear_create_weights for FusedMoE experts   none
vllm_fp8.moe_process_weights         same as linear_process_weights for w13_*/w2_*        none
"""

_FP8 = "vllm.model_executor.layers.quantization.fp8:"

PATCH_SET = PatchSet(
    name="vllm_fp8",
    package="vllm",
    versions=">=0.10.0,<0.11.1",
    switch="fp8",
    ledger=LEDGER,
    patches=(
        Patch(
            id="vllm_fp8.linear_create_weights",
            target=_FP8 + "Fp8LinearMethod.create_weights",
            why="a bf16 checkpoint or trainer weight must become fp8 values + block scale, not a bare cast",
            upstream_fix="none in 0.10.0-0.11.0 (vLLM quantizes bf16 itself only to per-tensor FP8)",
            fingerprint=(
                "sha256:47031f631a48b7f0",  # 0.10.0, 0.10.1.1
                "sha256:150c0ae605cca9fe",  # 0.10.2
                "sha256:150a060dbbf330c9",  # 0.11.0
            ),
            make=make_create_weights("linear"),
        ),
        Patch(
            id="vllm_fp8.linear_process_weights",
            target=_FP8 + "Fp8LinearMethod.process_weights_after_loading",
            why="new plain Parameters drop weight_loader (0.11.0 also renames the scale): weight sync fails",
            upstream_fix="none in 0.10.0-0.11.0",
            fingerprint=(
                "sha256:2dc123434af9f13b",  # 0.10.0
                "sha256:ac7e671ca25a5792",  # 0.10.1.1
                "sha256:d1e552c66903cfd3",  # 0.10.2
                "sha256:8142a0933b4073c0",  # 0.11.0
            ),
            make=make_process_weights("linear"),
        ),
        Patch(
            id="vllm_fp8.moe_create_weights",
            target=_FP8 + "Fp8MoEMethod.create_weights",
            why="bf16 expert weights must become fp8 values + block scale through FusedMoE.weight_loader",
            upstream_fix="none in 0.10.0-0.11.0",
            fingerprint=(
                "sha256:36d7a3bb3b613d61",  # 0.10.0, 0.10.1.1, 0.10.2
                "sha256:47207214b6ce91bc",  # 0.11.0
            ),
            make=make_create_weights("moe"),
        ),
        Patch(
            id="vllm_fp8.moe_process_weights",
            target=_FP8 + "Fp8MoEMethod.process_weights_after_loading",
            why="new plain Parameters for w13_*/w2_* drop weight_loader and quant_method: weight sync fails",
            upstream_fix="none in 0.10.0-0.11.0",
            fingerprint=(
                "sha256:5532432b5c33afe2",  # 0.10.0
                "sha256:14db7ee9603eda81",  # 0.10.1.1
                "sha256:1a177f77ce190978",  # 0.10.2
                "sha256:23df3cde6d637f88",  # 0.11.0
            ),
            make=make_process_weights("moe"),
        ),
    ),
)
