"""vllm082 patch set on the real vLLM 0.8.x releases (CPU): a real FusedMoE layer survives a second weight load.

The probe builds vLLM's own FusedMoE (unquantized, TP=1 in a gloo world of 1) the way a MoE model does, loads the
experts through FusedMoE.weight_loader, runs process_weights_after_loading (on CPU the CUDA-build wheel detects no
platform, so the method takes the generic path, i.e. the one that rebinds the Parameters), then loads again the way
`model.load_weights` does during trainer weight sync: `param.weight_loader(param, w, name, shard_id, expert_id)`.

Fail-without evidence: COMPAT_DISABLE_PATCHES=vllm082 <env>/bin/python -m pytest tests/vllm/test_vllm082.py
(read at collection time; the suite's autouse fixture clears COMPAT_* inside tests). docs/patches.md records it.
Needs setuptools in the env: triton 3.2 (torch 2.6, vLLM 0.8.x) imports it when vLLM's fused_moe package loads.
"""

from __future__ import annotations

import textwrap

import pytest

from probes import KILL, SINGLE_RANK_WORLD, installed_vllm, killed, run


def _in_082_range() -> bool:
    from compat import versions
    from compat.patches.sets.vllm082 import PATCH_SET

    return versions.in_spec(installed_vllm(), PATCH_SET.versions)


def _killed(value: str) -> bool:
    return killed("vllm082", "vllm082.moe_keep_parameters", kill=value)


def _probe(code: str, kill: str = KILL) -> dict:
    return run(textwrap.dedent(PRELUDE) + SINGLE_RANK_WORLD + textwrap.dedent(PRELUDE_MOE) + textwrap.dedent(code),
               kill=kill)


PRELUDE = """
    import json, socket
    import compat.patches as cp
    cp.activate({})
    import torch
    from vllm.config import VllmConfig, set_current_vllm_config
    from vllm.distributed import parallel_state as ps
    from vllm.model_executor.layers.fused_moe.layer import FusedMoE

    E, H, I = 2, 128, 128   # fp32 rows of 512 bytes: what _maybe_pad_weight pads on ROCm
"""
PRELUDE_MOE = """
    with set_current_vllm_config(VllmConfig()):
        moe = FusedMoE(num_experts=E, top_k=1, hidden_size=H, intermediate_size=I, params_dtype=torch.float32,
                       reduce_results=False, prefix="model.layers.0.mlp.experts")

    def load(value):
        # what a MoE model's load_weights does per checkpoint tensor: look the param up, call its weight_loader
        params = dict(moe.named_parameters())
        for e in range(E):
            for shard, shape in (("w1", (I, H)), ("w3", (I, H)), ("w2", (H, I))):
                param = params["w2_weight" if shard == "w2" else "w13_weight"]
                param.weight_loader(param, torch.full(shape, value + e), f"experts.{e}.{shard}.weight",
                                    shard_id=shard, expert_id=e)

    def values():
        return {f"{n}[{e}]": [float(p.data[e].min()), float(p.data[e].max())]
                for n, p in moe.named_parameters() for e in range(E)}
"""

SECOND_LOAD = """
    import os, sys
    MODE = sys.argv[1]
    load(1.0)
    out = {"applied": list(cp.applied_sets()), "method": type(moe.quant_method).__name__, "mode": MODE}
    if MODE != "cpu":
        # the ROCm branches of process_weights_after_loading, on this CPU box: the platform answers is_rocm() and
        # (aiter) the aiter kernel library's weight shuffle is a stand-in that reverses the last dim (aiter is a
        # ROCm-only package); everything else is the release's own code
        from vllm.platforms import current_platform
        current_platform.is_rocm = lambda: True
        if MODE == "rocm-aiter":
            import vllm.model_executor.layers.fused_moe.rocm_aiter_fused_moe as aiter_moe
            def shuffle_weights(*tensors, **_):
                out["shuffled"] = out.get("shuffled", 0) + 1
                return tuple(t.flip(-1).contiguous() for t in tensors)
            aiter_moe.shuffle_weights = shuffle_weights
    ids = {n: id(p) for n, p in moe.named_parameters()}
    moe.quant_method.process_weights_after_loading(moe)
    out["same_objects"] = {n: id(p) == ids[n] for n, p in moe.named_parameters()}
    out["row_stride"] = {n: p.data.stride(-2) for n, p in moe.named_parameters()}
    out["has_loader"] = {n: hasattr(p, "weight_loader") for n, p in moe.named_parameters()}
    try:
        load(10.0)   # weight sync from the trainer
    except AttributeError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["values"] = values()
    print(json.dumps(out))
"""

# A patch with one of its edited lines dropped (a mutation must fail a test): the probe swaps the patch's `make`
# before activating. Used by test_a_patch_without_its_padding_call_fails_the_padding_test.
MUTATE = """
    from compat.patches.sets import vllm082 as s
    from compat.patches.source import Edit, source_edit
    mutated = s._KEEP_PAD.replace("self._maybe_pad_weight(layer.w13_weight.data)", "layer.w13_weight.data")
    assert mutated != s._KEEP_PAD
    object.__setattr__(s.PATCH_SET.patches[0], "make", source_edit(Edit(s._REBIND_PAD, mutated),
                                                                  Edit(s._REBIND_SHUFFLE, s._KEEP_SHUFFLE,
                                                                       optional=True)))
"""

# vLLM 0.8.x fused_moe/layer.py _maybe_pad_weight: with VLLM_ROCM_MOE_PADDING on ROCm, a weight whose row is a
# multiple of 512 bytes gets 256 bytes of padding per row: H=I=128 fp32 rows (512 B) -> row stride 128 + 64.
PADDED = {"w13_weight": 128 + 64, "w2_weight": 128 + 64}
ROCM_ENV = {"VLLM_ROCM_MOE_PADDING": "1", "VLLM_ROCM_USE_AITER": "0"}
AITER_ENV = {"VLLM_ROCM_MOE_PADDING": "1", "VLLM_ROCM_USE_AITER": "1", "VLLM_ROCM_USE_AITER_MOE": "1"}


def check_second_load(res: dict, mode: str, kill: str = KILL) -> None:
    """What a working patch gives in each mode (the tests, and the mutation test, judge a probe result with it)."""
    assert ("vllm082" in res["applied"]) == (_in_082_range() and not _killed(kill))
    assert res["method"] == "UnquantizedFusedMoEMethod"
    assert "error" not in res, res["error"]
    assert res["has_loader"] == {"w13_weight": True, "w2_weight": True}
    assert res["same_objects"] == {"w13_weight": True, "w2_weight": True}
    if mode == "rocm-padding":  # (aiter's shuffle then makes new, unpadded tensors, as the real shuffle does)
        assert res["row_stride"] == PADDED, f"padding lost: row strides {res['row_stride']}, want {PADDED}"
    if mode == "rocm-aiter":
        assert res.get("shuffled") == 1, res
    # second load wrote the new values into the parameters the layer computes with (expert e holds 10 + e)
    assert res["values"] == {"w13_weight[0]": [10.0, 10.0], "w13_weight[1]": [11.0, 11.0],
                             "w2_weight[0]": [10.0, 10.0], "w2_weight[1]": [11.0, 11.0]}


def _probe_mode(mode: str, mutate: bool = False, kill: str = KILL) -> dict:
    env = {"cpu": {}, "rocm-padding": ROCM_ENV, "rocm-aiter": AITER_ENV}[mode]
    prelude = textwrap.dedent(MUTATE) if mutate else ""
    code = (prelude + textwrap.dedent(PRELUDE) + SINGLE_RANK_WORLD + textwrap.dedent(PRELUDE_MOE)
            + textwrap.dedent(SECOND_LOAD))
    return run(code, mode, kill=kill, **env)


@pytest.mark.slow
@pytest.mark.vllm(">=0.8.1,<=0.8.5")
def test_fused_moe_experts_keep_weight_loader_across_loads():
    check_second_load(_probe_mode("cpu"), "cpu")


@pytest.mark.slow
@pytest.mark.vllm(">=0.8.1,<=0.8.5")
def test_rocm_padding_still_applies_and_keeps_the_loader():
    """The edit keeps _maybe_pad_weight: on ROCm the padded rows land in the SAME Parameter objects."""
    check_second_load(_probe_mode("rocm-padding"), "rocm-padding")


@pytest.mark.slow
@pytest.mark.vllm(">=0.8.3,<=0.8.4")
def test_rocm_aiter_shuffle_keeps_the_loader():
    """0.8.3/0.8.4 only (the second fingerprint): the aiter shuffle block rebinds too; the optional edit fixes it."""
    check_second_load(_probe_mode("rocm-aiter"), "rocm-aiter")


@pytest.mark.slow
@pytest.mark.vllm(">=0.8.2,<0.8.5")
def test_a_patch_without_its_padding_call_fails_the_padding_test():
    """Mutation: the patch with `self._maybe_pad_weight(...)` dropped from its w13 line still keeps the loader, so
    only the padding assertion can catch it, and it must."""
    res = _probe_mode("rocm-padding", mutate=True, kill="")
    assert "vllm082" in res["applied"], res
    with pytest.raises(AssertionError, match="padding lost"):
        check_second_load(res, "rocm-padding", kill="")


REPAIR = """
    from compat.patches.sets.vllm082 import repair_moe_weight_loaders
    load(1.0)
    moe.quant_method.process_weights_after_loading(moe)
    out = {"applied": list(cp.applied_sets()),
           "lost": sorted(n for n, p in moe.named_parameters() if not hasattr(p, "weight_loader"))}
    out["repaired"] = repair_moe_weight_loaders(moe)
    load(10.0)
    out["values"] = values()
    print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.vllm(">=0.8.1,<=0.8.5")
def test_instance_repair_helper_without_the_source_patch():
    """verl's workaround, generalized: for models built while the source patch was off (here: forced off)."""
    res = _probe(REPAIR, kill="vllm082")
    assert res["applied"] == []
    lost = ["w13_weight", "w2_weight"] if _in_082_range() else []  # 0.8.1 never rebinds, 0.8.5 fixed it
    assert res["lost"] == lost and res["repaired"] == len(lost)
    assert res["values"] == {"w13_weight[0]": [10.0, 10.0], "w13_weight[1]": [11.0, 11.0],
                             "w2_weight[0]": [10.0, 10.0], "w2_weight[1]": [11.0, 11.0]}
