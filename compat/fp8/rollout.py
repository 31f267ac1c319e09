"""vLLM 0.10.0 - 0.11.0: block-FP8 rollout (opt-in switch `fp8`): bf16 weights quantized on load, repeated reloads.

Facts this builds on (read in the 0.10.0, 0.10.1.1, 0.10.2 and 0.11.0 wheels,
vllm/model_executor/layers/quantization/fp8.py):
- `Fp8Config(is_checkpoint_fp8_serialized=True, weight_block_size=[bn, bk])` (what `quant_method: fp8` plus
  `weight_block_size` in a checkpoint's quantization_config produces) makes `Fp8LinearMethod.create_weights` register an
  fp8 `weight` (ModelWeightParameter) and a float32 block scale `weight_scale_inv` (BlockQuantScaleParameter), both
  carrying the layer's `weight_loader`; `Fp8MoEMethod.create_weights` registers plain Parameters `w13_weight`,
  `w2_weight`, `w13_weight_scale_inv`, `w2_weight_scale_inv` with `weight_loader` (FusedMoE.weight_loader) and
  `quant_method="block"` set as attributes. The loaders expect fp8 values and a scale: a bf16 tensor is cast, not
  quantized, and the scale keeps its `finfo(float32).min` fill.
- `process_weights_after_loading` (block path) replaces every one of these with a new plain `torch.nn.Parameter`
  ("torch.compile cannot use Parameter subclasses"): `weight_loader` and the subclass are gone, so the next
  `model.load_weights(...)` (a trainer -> rollout weight sync) cannot load them. 0.11.0's linear method also moves
  the block scale to `layer.weight_scale` and deletes `weight_scale_inv` (the MoE scales keep their `_inv` names).
  On SM90 with CUTLASS block FP8 (0.10.2, 0.11.0) the linear scale becomes `scale.T.contiguous()`.

What the patches do (all four wrap the release function and call it unchanged):
1. create_weights (linear and MoE): for block-FP8 layers only, remember the loading parameters the release made and
   give each fp8 weight a loader that quantizes a bf16/fp16/fp32 tensor with compat.fp8.quantize_blockwise and loads
   the fp8 values and the block scale through the release's own loaders, with the same shard/expert arguments a
   block-FP8 checkpoint would use. fp8 tensors pass straight through. This is what serves a bf16 checkpoint in
   block FP8 (with `engine_kwargs()`), and what accepts bf16 weights at every later sync.
2. process_weights_after_loading (linear and MoE): after the release code, each new Parameter the release made keeps
   its object and layout (what the kernels read) and gets a `weight_loader` that loads into the original loading
   parameter, whose storage now *is* the new Parameter's (the same tensor, or its transpose for the SM90 scale).
   A reload therefore writes straight into what the kernels read; running the one-shot post-processing again would
   be wrong (it would transpose or re-quantize twice), so a second call for the same layer does nothing. Where the
   release changes the values themselves (ROCm e4m3fnuz, DeepGEMM E8M0 re-quantization, Marlin repacking, the
   FlashInfer w13 swap) a reload cannot be written in place: the Parameter then gets a loader that raises with why.

The patch set that installs these (ids, targets, fingerprints) is declared in compat/patches/sets/vllm_fp8.py.
Everything heavy is imported inside functions; importing this module imports neither torch nor vLLM.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Optional, Tuple, cast

BLOCK_QUANT_CONFIG: Dict[str, Any] = {
    "quant_method": "fp8",
    "activation_scheme": "dynamic",
    "weight_block_size": [128, 128],
    "fmt": "e4m3",
}
"""The quantization_config a DeepSeek-V3-style block-FP8 checkpoint carries (vLLM reads it as Fp8Config)."""

STATE_ATTR = "_compat_fp8"
LINEAR_PAIRS: Tuple[Tuple[str, str], ...] = (("weight", "weight_scale_inv"),)
MOE_PAIRS: Tuple[Tuple[str, str], ...] = (("w13_weight", "w13_weight_scale_inv"), ("w2_weight", "w2_weight_scale_inv"))
RENAMED = {"weight_scale_inv": "weight_scale"}  # 0.11.0 Fp8LinearMethod moves the block scale here


def engine_kwargs(block_size: Tuple[int, int] = (128, 128)) -> Dict[str, Any]:
    """vllm.LLM(...) arguments that make vLLM build block-FP8 layers for a bf16 checkpoint (with the fp8 switch on)."""
    config = dict(BLOCK_QUANT_CONFIG, weight_block_size=[int(block_size[0]), int(block_size[1])])
    return {"quantization": "fp8", "hf_overrides": {"quantization_config": config}}


# ------------------------------------------------------------------------------------------------------------------
# per-layer state


class LayerState:
    """What compat keeps on an FP8 layer (`layer._compat_fp8`): the parameters create_weights made, and after
    post-processing which registered names load through them (or why they cannot)."""

    __slots__ = ("kind", "block", "loading", "processed", "published", "refused")

    def __init__(self, kind: str, block: Tuple[int, int], loading: Dict[str, Any]) -> None:
        self.kind = kind  # "linear" | "moe"
        self.block = block  # (block_n, block_k) = (rows, columns) of a block
        self.loading = loading  # create_weights name -> the release's loading parameter
        self.processed = False
        self.published: Dict[str, str] = {}  # registered name after processing -> loading name it writes into
        self.refused: Dict[str, str] = {}  # registered name -> why it cannot be reloaded in place

    def __repr__(self) -> str:
        return (f"LayerState(kind={self.kind!r}, block={self.block}, processed={self.processed}, "
                f"published={self.published}, refused={self.refused})")


def layer_state(layer: Any) -> Optional[LayerState]:
    return getattr(layer, STATE_ATTR, None)


def _get_loader(param: Any) -> Optional[Callable[..., Any]]:
    try:
        return getattr(param, "weight_loader", None)
    except Exception:  # 0.11 BasevLLMParameter.weight_loader raises when none was given
        return None


def _set_loader(param: Any, fn: Callable[..., Any]) -> None:
    """vLLM parameters keep the loader in `_weight_loader` behind a property; plain Parameters as an attribute."""
    if isinstance(getattr(type(param), "weight_loader", None), property):
        param._weight_loader = fn
    else:
        param.weight_loader = fn


def _is_high_precision(t: Any) -> bool:
    return bool(t.is_floating_point()) and t.element_size() >= 2  # bf16/fp16/fp32; fp8 has element size 1


def _moe_scale_call(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    """FusedMoE.weight_loader(param, w, weight_name, shard_id, expert_id, ...): the scale's weight_name must say
    'scale' (that is how the release routes block scales)."""
    if args:
        return (args[0] + "_scale_inv",) + tuple(args[1:]), kwargs
    kwargs = dict(kwargs)
    kwargs["weight_name"] = kwargs["weight_name"] + "_scale_inv"
    return args, kwargs


def _quantizing_loader(state: LayerState, weight_name: str, scale_name: str, weight_loader: Callable[..., Any],
                       scale_loader: Callable[..., Any]) -> Callable[..., Any]:
    def weight_loader_fp8(param: Any, loaded_weight: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_high_precision(loaded_weight):
            return weight_loader(param, loaded_weight, *args, **kwargs)
        if loaded_weight.dim() != 2:
            raise ValueError(f"compat fp8: cannot quantize a {loaded_weight.dim()}-D tensor into {weight_name}; "
                             "pass 2-D weights (one expert, one linear shard) or quantize with compat.fp8 first")
        from compat.fp8 import quantize_blockwise

        if param.device.type == "cuda" and loaded_weight.device != param.device:
            loaded_weight = loaded_weight.to(param.device, non_blocking=True)
        q, scale = quantize_blockwise(loaded_weight, state.block)
        del loaded_weight
        out = weight_loader(param, q, *args, **kwargs)
        scale_param = state.loading[scale_name]
        if state.kind == "moe":
            args, kwargs = _moe_scale_call(args, kwargs)
        scale_loader(scale_param, scale, *args, **kwargs)
        return out

    weight_loader_fp8.compat_wraps = weight_loader  # type: ignore[attr-defined]
    return weight_loader_fp8


def _adopt(method: Any, layer: Any, kind: str) -> None:
    """After the release's create_weights: remember the loading parameters of a block-FP8 layer, wrap its loaders."""
    config = getattr(method, "quant_config", None)
    block = getattr(config, "weight_block_size", None)
    if not block or not getattr(config, "is_checkpoint_fp8_serialized", False):
        return  # per-tensor FP8 or in-vLLM quantization: not what this set is about
    import torch

    pairs = LINEAR_PAIRS if kind == "linear" else MOE_PAIRS
    params = layer._parameters
    loading: Dict[str, Any] = {}
    for w, s in pairs:
        pw, ps = params.get(w), params.get(s)
        if pw is None or ps is None or pw.dtype != torch.float8_e4m3fn:
            return
        if _get_loader(pw) is None or _get_loader(ps) is None:
            return
        loading[w], loading[s] = pw, ps
    state = LayerState(kind, (int(block[0]), int(block[1])), loading)
    for w, s in pairs:
        wl, sl = _get_loader(loading[w]), _get_loader(loading[s])  # registered by the release with both
        _set_loader(loading[w], _quantizing_loader(state, w, s, cast(Callable[..., Any], wl), cast(Callable[..., Any], sl)))
    object.__setattr__(layer, STATE_ATTR, state)


# ------------------------------------------------------------------------------------------------------------------
# after post-processing


def _values_changed_reason(method: Any) -> str:
    """Why the release's post-processing rewrites values (so a reload cannot be written in place), or ''."""
    if getattr(method, "use_marlin", False):
        return "repacks the weights for Marlin (GPU below sm89 or VLLM_TEST_FORCE_FP8_MARLIN)"
    try:
        from vllm.platforms import current_platform

        if current_platform.is_fp8_fnuz():
            return "converts e4m3fn to e4m3fnuz (ROCm) and doubles the scales"
    except Exception:
        pass
    try:
        import vllm.utils.deep_gemm as dg
    except Exception:
        return ""
    # 0.10.0: is_blackwell_deep_gemm_used; 0.10.1.1: is_blackwell_deep_gemm_e8m0_used; 0.10.2/0.11.0: is_deep_gemm_e8m0_used
    for name in ("is_deep_gemm_e8m0_used", "is_blackwell_deep_gemm_e8m0_used", "is_blackwell_deep_gemm_used"):
        fn = getattr(dg, name, None)
        try:
            if fn is not None and fn():
                return "re-quantizes weights and scales in place to E8M0 for DeepGEMM"
        except Exception:
            continue
    return ""


def _same_memory(a: Any, b: Any) -> bool:
    return bool(a.shape == b.shape and a.dtype == b.dtype and a.data_ptr() == b.data_ptr()
            and a.stride() == b.stride() and a.device == b.device)


def _bits_equal(a: Any, b: Any) -> bool:
    import torch

    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if a.element_size() == 1:
        return bool(torch.equal(a.view(torch.uint8), b.view(torch.uint8)))
    return bool(torch.equal(a, b))


def _loading_view(kind: str, new: Any, old: Any, before: Optional[Any]) -> Optional[Any]:
    """A view of the release's new tensor indexed like the loading parameter, or None.

    Weights must still be the loading parameter's memory (the release only re-wrapped them). A scale (tiny) may have
    been copied into another layout of the same matrix: the new tensor itself (e.g. column-major for DeepGEMM) or its
    transpose (SM90 CUTLASS), recognised by its values; a symmetric scale matches both, and then the column-major
    reading wins, since both re-layouts the releases make store the same matrix column-major.
    """
    data = new.data
    if _same_memory(data, old.data):
        return data
    if kind == "weight" or before is None:
        return None
    views = [data] + ([data.transpose(-1, -2)] if data.dim() >= 2 else [])
    hits = [v for v in views if _bits_equal(v, before)]
    if len(hits) > 1:
        col = [v for v in hits if v.dim() >= 2 and v.stride(-2) == 1 and v.stride(-1) != 1]
        hits = col or hits[:1]
    return hits[0] if hits else None


def _forwarding_loader(target: Any) -> Callable[..., Any]:
    def weight_loader(param: Any, loaded_weight: Any, *args: Any, **kwargs: Any) -> Any:
        return cast(Callable[..., Any], _get_loader(target))(target, loaded_weight, *args, **kwargs)

    weight_loader.compat_target = target  # type: ignore[attr-defined]
    return weight_loader


def _refusing_loader(name: str, why: str) -> Callable[..., Any]:
    def weight_loader(param: Any, loaded_weight: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"compat fp8: cannot reload {name} in place: vLLM's post-processing {why}; reload the "
                           "model instead, or serve it where the block-FP8 path keeps the checkpoint layout")

    return weight_loader


def _publish(method: Any, layer: Any, state: LayerState, scales_before: Dict[str, Any]) -> None:
    """Point every Parameter the release left on the layer at its loading parameter (see the module docstring)."""
    pairs = LINEAR_PAIRS if state.kind == "linear" else MOE_PAIRS
    why = _values_changed_reason(method)
    params = layer._parameters
    for w, s in pairs:
        for name, kind in ((w, "weight"), (s, "scale")):
            old = state.loading[name]
            reg = name if name in params else RENAMED.get(name, name)
            new = params.get(reg)
            if new is None:
                continue  # the release dropped it: nothing to load into
            if new is old:
                state.published[reg] = name
                continue
            view = None if why else _loading_view(kind, new, old, scales_before.get(name))
            if view is None:
                reason = why or "stores it in a layout compat does not recognise"
                _set_loader(new, _refusing_loader(reg, reason))
                state.refused[reg] = reason
                continue
            old.data = view  # the loading parameter now writes into what the kernels read
            _set_loader(new, _forwarding_loader(old))
            state.published[reg] = name


# ------------------------------------------------------------------------------------------------------------------
# patch factories (make(original) -> replacement); they run only once vLLM is imported


def make_create_weights(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def create_weights(self: Any, layer: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(self, layer, *args, **kwargs)
            _adopt(self, layer, kind)
            return result

        return create_weights

    return make


def make_process_weights(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def process_weights_after_loading(self: Any, layer: Any, *args: Any, **kwargs: Any) -> Any:
            state = layer_state(layer)
            if state is None or state.kind != kind:
                return original(self, layer, *args, **kwargs)
            if state.processed:
                return None  # one-shot: reloads were written straight into the processed tensors
            scales = {s: state.loading[s].data.clone()
                      for _, s in (LINEAR_PAIRS if kind == "linear" else MOE_PAIRS)}
            result = original(self, layer, *args, **kwargs)
            _publish(self, layer, state, scales)
            state.processed = True
            return result

        return process_weights_after_loading

    return make
