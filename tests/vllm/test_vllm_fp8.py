"""vllm_fp8 patch set on the real vLLM 0.10.0, 0.10.1.1, 0.10.2 and 0.11.0 releases, on CPU.

The probe builds vLLM's own block-FP8 layers (a MergedColumnParallelLinear gate_up_proj with Fp8LinearMethod and a
FusedMoE with Fp8MoEMethod, from `Fp8Config(weight_block_size=[128, 128])`, inside a gloo world of one and a CPU
VllmConfig) in a small module whose `load_weights` follows vLLM's Llama/Qwen-MoE loaders (stacked params mapping,
FusedMoE.make_expert_params_mapping). It then does what a served bf16 checkpoint and an RL weight sync do:
1. load bf16 weights (the checkpoint), 2. run each quant method's process_weights_after_loading (vLLM's loader does),
3. load the same weights again with compat.fp8.load_weights (the sync), 4. load other weights, 5. reload the first.
Stood in for, because there is no GPU here (the complete list): (1) `use_marlin` is set False on each method
(compat refuses FP8 below sm89, where vLLM would repack for Marlin); in the "sm90" mode (2) the platform reports
capability 9.0 (`current_platform.is_device_capability`) and (3) the method's `cutlass_block_fp8_supported` flag is
set, which makes 0.10.2 / 0.11.0 transpose the linear block scale; (4) on 0.10.0 only, `fused_moe.fused_experts`
(the Triton kernel, exported only when Triton sees a GPU driver) is a stand-in that raises if called: the
constructor imports it, nothing here runs a forward pass.

Every probe runs in a fresh interpreter the way a user's process does: `compat.patches.activate({"fp8": "block"})`
first, then vLLM is imported and the post-import hook applies the set.

Fail-without evidence: COMPAT_DISABLE_PATCHES=vllm_fp8 .tox/vllm0110/bin/python -m pytest tests/vllm/test_vllm_fp8.py
(read at collection time and handed to the probes; docs/patches.md records the failures).
"""

from __future__ import annotations


import pytest

from probes import SINGLE_RANK_WORLD, expect_applied, installed_vllm, run

RELEASES = ">=0.10.0,<0.11.1"


def _expect_applied() -> bool:
    from compat.patches.sets.vllm_fp8 import PATCH_SET

    return expect_applied(PATCH_SET)


def _run(code: str, *args: str) -> dict:
    return run(code, *args)


PROBE = r'''
import json, socket, sys, traceback
import compat.patches as cp
cp.activate({"fp8": "block"})
import torch
from vllm.config import DeviceConfig, VllmConfig, set_current_vllm_config
from vllm.distributed import parallel_state as ps
from vllm.model_executor.layers.fused_moe import FusedMoE
from vllm.model_executor.layers.linear import MergedColumnParallelLinear
from vllm.model_executor.layers.quantization.fp8 import Fp8Config
from vllm.platforms import current_platform
import compat.fp8 as fp8

MODE = sys.argv[1]
H, I, E, GATE, UP = 256, 256, 4, 256, 128
ctx = set_current_vllm_config(VllmConfig(device_config=DeviceConfig(device="cpu")))
ctx.__enter__()
''' + SINGLE_RANK_WORLD + r'''torch.set_default_dtype(torch.bfloat16)
import vllm.model_executor.layers.fused_moe as fused_moe_pkg
if not hasattr(fused_moe_pkg, "fused_experts"):
    # 0.10.0's Fp8MoEMethod.__init__ imports the Triton kernel, exported only when Triton has a GPU driver; the
    # kernel is never called here (no forward pass), so a stand-in that raises keeps the constructor honest
    def fused_experts(*args, **kwargs):
        raise RuntimeError("no GPU in this test")
    fused_moe_pkg.fused_experts = fused_experts
if MODE == "sm90":   # what an H100 reports: 0.10.2 / 0.11.0 then transpose the linear block scale for CUTLASS
    current_platform.is_device_capability = lambda cap, device_id=0: cap == 90


class Mlp(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_up_proj = MergedColumnParallelLinear(H, [GATE, UP], bias=False, quant_config=cfg,
                                                       prefix="model.mlp.gate_up_proj")
        self.experts = FusedMoE(num_experts=E, top_k=2, hidden_size=H, intermediate_size=I, quant_config=cfg,
                                prefix="model.mlp.experts", params_dtype=torch.bfloat16)


class Tiny(torch.nn.Module):
    """vLLM's Llama / Qwen-MoE load_weights pattern over real block-FP8 layers."""
    packed_modules_mapping = {"gate_up_proj": ["gate_proj", "up_proj"]}

    def __init__(self, cfg):
        super().__init__()
        self.model = torch.nn.Module()
        self.model.mlp = Mlp(cfg)

    def load_weights(self, weights):
        stacked = [("gate_up_proj", "gate_proj", 0), ("gate_up_proj", "up_proj", 1)]
        experts = FusedMoE.make_expert_params_mapping(ckpt_gate_proj_name="gate_proj", ckpt_down_proj_name="down_proj",
                                                      ckpt_up_proj_name="up_proj", num_experts=E)
        params = dict(self.named_parameters())
        loaded = set()
        for name, w in weights:
            if ".experts." in name:
                for param_name, weight_name, expert_id, shard_id in experts:
                    if weight_name not in name:
                        continue
                    name = name.replace(weight_name, param_name)
                    p = params[name]
                    p.weight_loader(p, w, name, shard_id=shard_id, expert_id=expert_id)
                    break
            else:
                for fused, part, shard in stacked:
                    if part in name:
                        name = name.replace(part, fused)
                        p = params[name]
                        p.weight_loader(p, w, shard)
                        break
            loaded.add(name)
        return loaded


def checkpoint(seed):
    g = torch.Generator().manual_seed(seed)
    def w(*shape):
        return (torch.randn(*shape, generator=g, dtype=torch.float32) * 0.05).to(torch.bfloat16)
    out = {"model.mlp.gate_proj.weight": w(GATE, H), "model.mlp.up_proj.weight": w(UP, H)}
    for e in range(E):
        out[f"model.mlp.experts.{e}.gate_proj.weight"] = w(I, H)
        out[f"model.mlp.experts.{e}.up_proj.weight"] = w(I, H)
        out[f"model.mlp.experts.{e}.down_proj.weight"] = w(H, I)
    return out


def snapshot(model):
    return {n: (id(p), p.dtype, p.detach().clone()) for n, p in model.named_parameters()}


def same(a, b):
    def bits(t):
        return t.contiguous().view(torch.uint8) if t.element_size() == 1 else t
    return (sorted(a) == sorted(b) and all(a[n][0] == b[n][0] and a[n][1] == b[n][1]
            and a[n][2].shape == b[n][2].shape and torch.equal(bits(a[n][2]), bits(b[n][2])) for n in a))


def dequant_error(model, ckpt):
    """Largest |dequantized fp8 weight - bf16 checkpoint| relative to the weight's amax (<= 1/28 when right)."""
    mlp = model.model.mlp
    lin = mlp.gate_up_proj
    scale = lin.weight_scale_inv if hasattr(lin, "weight_scale_inv") else lin.weight_scale
    if tuple(scale.shape) != (3, 2):
        scale = scale.T
    ref = torch.cat([ckpt["model.mlp.gate_proj.weight"], ckpt["model.mlp.up_proj.weight"]]).float()
    got = fp8.dequantize_blockwise(lin.weight.data, scale.data.contiguous())
    worst = float(((got - ref).abs().max() / ref.abs().max()))
    w13 = mlp.experts.w13_weight.data[1]
    s13 = mlp.experts.w13_weight_scale_inv.data[1]
    ref13 = torch.cat([ckpt["model.mlp.experts.1.gate_proj.weight"], ckpt["model.mlp.experts.1.up_proj.weight"]])
    got13 = fp8.dequantize_blockwise(w13, s13.contiguous())
    return max(worst, float(((got13 - ref13.float()).abs().max() / ref13.float().abs().max())))


out = {"applied": list(cp.applied_sets()), "mode": MODE}
cfg = Fp8Config(is_checkpoint_fp8_serialized=True, activation_scheme="dynamic", weight_block_size=[128, 128])
model = Tiny(cfg)
mlp = model.model.mlp
for layer in (mlp.gate_up_proj, mlp.experts):
    layer.quant_method.use_marlin = False          # FP8 compute present (sm89+), as compat requires
    if MODE == "sm90" and hasattr(layer.quant_method, "cutlass_block_fp8_supported"):
        layer.quant_method.cutlass_block_fp8_supported = True
first, second = checkpoint(1), checkpoint(2)
steps = []
try:
    model.load_weights(iter(first.items()))                # 1. serve a bf16 checkpoint in block FP8
    steps.append("load1")
    for layer in (mlp.gate_up_proj, mlp.experts):          # 2. vLLM's one-shot post-processing
        layer.quant_method.process_weights_after_loading(layer)
    steps.append("process")
    out["names"] = sorted(n for n, _ in model.named_parameters())
    out["scale_shape"] = list((dict(model.named_parameters()).get("model.mlp.gate_up_proj.weight_scale")
                               if "model.mlp.gate_up_proj.weight_scale" in out["names"]
                               else mlp.gate_up_proj.weight_scale_inv).shape)
    out["error1"] = dequant_error(model, first)
    a = snapshot(model)
    fp8.load_weights(model, iter(first.items()))          # 3. weight sync, same weights
    steps.append("load2")
    out["second_equals_first"] = same(a, snapshot(model))
    for layer in (mlp.gate_up_proj, mlp.experts):          # a second post-processing call must change nothing
        layer.quant_method.process_weights_after_loading(layer)
    out["process_again_equals_first"] = same(a, snapshot(model))
    fp8.load_weights(model, iter(second.items()))         # 4. weight sync, new weights
    steps.append("load3")
    b = snapshot(model)
    out["new_weights_changed"] = not same(a, b) and sorted((n, i) for n, (i, _, _) in a.items()) == sorted(
        (n, i) for n, (i, _, _) in b.items())
    out["error2"] = dequant_error(model, second)
    model.load_weights(iter(first.items()))                # 5. bf16 straight through the patched loaders
    steps.append("load4")
    out["reload_bf16_equals_first"] = same(a, snapshot(model))
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
    out["trace"] = traceback.format_exc()[-1500:]
out["steps"] = steps
print(json.dumps(out), flush=True)
'''


@pytest.mark.slow
@pytest.mark.vllm(RELEASES)
@pytest.mark.parametrize("mode", ["plain", "sm90"])
def test_second_weight_load_gives_the_same_parameters(mode):
    """bf16 checkpoint -> block FP8, post-processing, then weight syncs: same parameter objects, same bits."""
    res = _run(PROBE, mode)
    assert ("vllm_fp8" in res["applied"]) == _expect_applied()
    assert "error" not in res, f"after steps {res['steps']}: {res['error']}\n{res.get('trace', '')}"
    assert res["error1"] <= 1.001 / 28, "bf16 checkpoint was not quantized per block on load"
    assert res["second_equals_first"]
    assert res["process_again_equals_first"]
    assert res["new_weights_changed"]
    assert res["error2"] <= 1.001 / 28
    assert res["reload_bf16_equals_first"]


@pytest.mark.slow
@pytest.mark.vllm(RELEASES)
def test_scale_names_follow_the_release():
    """0.10.x keep `weight_scale_inv` on linear layers; 0.11.0 moves it to `weight_scale`; MoE keeps `_inv`; the
    SM90 CUTLASS layout (0.10.2, 0.11.0) is the transpose. compat.fp8.load_weights names scales accordingly."""
    from compat import versions

    res = _run(PROBE, "sm90")
    assert "error" not in res, res.get("trace")
    v = installed_vllm()
    linear_scale = "model.mlp.gate_up_proj.weight_scale" + ("" if versions.release(v) >= versions.parse("0.11.0")
                                                              else "_inv")
    assert linear_scale in res["names"]
    assert "model.mlp.experts.w13_weight_scale_inv" in res["names"]
    transposed = versions.release(v) >= versions.parse("0.10.2")
    assert res["scale_shape"] == ([2, 3] if transposed else [3, 2])


PLAN_PROBE = r'''
import json, socket
import compat.patches as cp
cp.activate({"fp8": "block"})
import torch
from vllm.config import DeviceConfig, VllmConfig, set_current_vllm_config
from vllm.distributed import parallel_state as ps
from vllm.model_executor.layers.linear import MergedColumnParallelLinear, ReplicatedLinear
from vllm.model_executor.layers.quantization.fp8 import Fp8Config
from compat.fp8.loading import plan, quantized_weights
ctx = set_current_vllm_config(VllmConfig(device_config=DeviceConfig(device="cpu")))
ctx.__enter__()
''' + SINGLE_RANK_WORLD + r'''torch.set_default_dtype(torch.bfloat16)
cfg = Fp8Config(is_checkpoint_fp8_serialized=True, activation_scheme="dynamic", weight_block_size=[128, 128])
m = torch.nn.Module()
m.packed_modules_mapping = {"gate_up_proj": ["gate_proj", "up_proj"]}
m.mlp = torch.nn.Module()
m.mlp.gate_up_proj = MergedColumnParallelLinear(256, [128, 128], bias=False, quant_config=cfg, prefix="mlp.gate_up_proj")
m.head = ReplicatedLinear(256, 128, bias=False, quant_config=None, prefix="head")
m.mlp.gate_up_proj.quant_method.use_marlin = False
before = plan(m, ["mlp.gate_proj.weight", "head.weight", "other.weight"])
m.mlp.gate_up_proj.quant_method.process_weights_after_loading(m.mlp.gate_up_proj)
after = plan(m, ["mlp.gate_proj.weight"])
w = {"mlp.gate_proj.weight": torch.randn(128, 256), "head.weight": torch.randn(128, 256),
     "mlp.gate_proj.bias": torch.randn(128)}
stream = [(n, str(t.dtype), list(t.shape)) for n, t in quantized_weights(m, iter(w.items()))]
print(json.dumps({"before": before, "after": after, "stream": stream}))
'''


@pytest.mark.slow
@pytest.mark.vllm(RELEASES)
def test_load_weights_quantizes_what_the_model_holds_in_fp8():
    """The predicate and the scale name come from the model instance: fp8 layers get q + scale under the name the
    release loads (after post-processing: `_scale` on 0.11.0, `_scale_inv` on 0.10.x); bf16 layers pass through."""
    from compat import versions

    res = _run(PLAN_PROBE)
    new = versions.release(installed_vllm()) >= versions.parse("0.11.0")
    assert res["before"] == {"mlp.gate_proj.weight": [True, "_scale_inv"], "head.weight": [False, ""],
                             "other.weight": None}
    suffix = "_scale" if new else "_scale_inv"
    assert res["after"] == {"mlp.gate_proj.weight": [True, suffix]}
    assert res["stream"] == [
        ["mlp.gate_proj.weight", "torch.float8_e4m3fn", [128, 256]],
        ["mlp.gate_proj.weight" + suffix, "torch.float32", [1, 2]],
        ["head.weight", "torch.bfloat16", [128, 256]],
        ["mlp.gate_proj.bias", "torch.bfloat16", [128]],
    ]
