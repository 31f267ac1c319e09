"""Load a stream of bf16 (name, tensor) pairs into a vLLM block-FP8 model: quantize, name the scales, load.

The trainer -> rollout weight sync of an RL job: the trainer holds bf16 weights, the vLLM model was built with
block-FP8 layers (compat.setup(fp8="block") + compat.vllm_kwargs()). Which tensors to quantize, the block size and
the scale name are read from the model instance itself (its parameters), not from a version string:
- a checkpoint weight is quantized when the vLLM module it loads into holds a float8 weight (q/k/v_proj ->
  qkv_proj and gate/up_proj -> gate_up_proj through the model's `packed_modules_mapping`; per-expert weights
  `...experts.<i>.<proj>.weight` -> the FusedMoE module), falling back to compat.fp8.default_should_quantize for
  names it cannot place;
- the scale goes under `<name>_scale_inv` when that module registers `<param>_scale_inv` (vLLM 0.10.x, and the
  MoE experts of 0.11.0) and `<name>_scale` when it registers `<param>_scale` (0.11.0 linear layers after
  post-processing). When the model does not say, the installed release decides (compat/data/vllm_extras.toml).

Needs the vllm_fp8 patch set applied for every load after the first (vLLM's post-processing drops the loaders).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, Mapping, Optional, Set, Tuple, Union

if TYPE_CHECKING:
    from .rollout import LayerState

Items = Union[Mapping[str, Any], Iterable[Tuple[str, Any]]]

_WEIGHT_ATTRS = ("weight", "w13_weight", "w2_weight")
_MOE_W2 = ("down_proj", ".w2.")  # checkpoint names of the second expert projection


def default_suffixes(vllm_version: Optional[str] = None) -> Tuple[str, str]:
    """(linear, MoE) block-scale suffixes of a vLLM release after post-processing, for when the model does not say.

    Read from compat/data/vllm_extras.toml `[fp8]` (each range cites the release source it was read from);
    `vllm_version` defaults to the installed release (compat.detect.software.installed_version).
    """
    from .. import versions
    from .._toml import load_data
    from ..detect.software import installed_version

    table = load_data("vllm_extras")["fp8"]
    v = vllm_version if vllm_version is not None else installed_version("vllm")
    for entry in table["scale_suffix"]:
        if versions.in_spec(v, entry["versions"]):
            return entry["linear"], entry["moe"]
    return table["default_linear"], table["default_linear"]


class _ModelIndex:
    """Which modules of a vLLM model hold float8 weights, and how each names its block scale."""

    def __init__(self, model: Any) -> None:
        import torch

        fp8 = getattr(torch, "float8_e4m3fn", None)
        self.modules: Dict[str, Any] = dict(model.named_modules())
        self.fp8: Dict[str, Dict[str, str]] = {}  # module name -> {weight attr: scale suffix}
        self.block: Optional[Tuple[int, int]] = None
        for name, mod in self.modules.items():
            params = getattr(mod, "_parameters", {})
            found = {}
            for attr in _WEIGHT_ATTRS:
                p = params.get(attr)
                if p is None or p.dtype != fp8:
                    continue
                if attr + "_scale_inv" in params:
                    found[attr] = "_scale_inv"
                elif attr + "_scale" in params:
                    found[attr] = "_scale"
                else:
                    found[attr] = ""
            if found:
                self.fp8[name] = found
                if self.block is None:
                    self.block = self._block_of(mod)
        packed = getattr(model, "packed_modules_mapping", None) or {}
        self.packed = {orig: fused for fused, origs in packed.items() for orig in origs}
        linear = [s for m in self.fp8.values() for a, s in m.items() if a == "weight" and s]
        release_linear, self.moe_suffix = default_suffixes()  # the installed release's names, from the data table
        self.default_suffix = linear[0] if linear else release_linear

    @staticmethod
    def _block_of(mod: Any) -> Optional[Tuple[int, int]]:
        state: Optional[LayerState] = getattr(mod, "_compat_fp8", None)  # rollout.STATE_ATTR
        if state is not None:
            return state.block
        block = getattr(mod, "weight_block_size", None)
        if block is None:
            qm = getattr(mod, "quant_method", None)
            block = getattr(getattr(qm, "quant_config", None), "weight_block_size", None)
        return (int(block[0]), int(block[1])) if block else None

    def place(self, name: str) -> Optional[Tuple[bool, str]]:
        """(quantize?, scale suffix) for a checkpoint weight name, or None when the name cannot be placed."""
        if not name.endswith(".weight"):
            return None
        parts = name[: -len(".weight")].split(".")
        if parts and parts[-1] in self.packed:
            parts[-1] = self.packed[parts[-1]]
        path = ".".join(parts)
        hit = self.fp8.get(path)
        if hit is not None and "weight" in hit:
            return True, hit["weight"] or self.default_suffix
        for i in range(len(parts) - 1, 0, -1):  # per-expert weights: the nearest FusedMoE ancestor
            hit = self.fp8.get(".".join(parts[:i]))
            if hit is not None and "w13_weight" in hit:
                attr = "w2_weight" if any(k in name for k in _MOE_W2) else "w13_weight"
                return True, hit.get(attr) or self.moe_suffix
        if path in self.modules:
            return False, ""
        return None


def plan(model: Any, names: Iterable[str]) -> Dict[str, Optional[Tuple[bool, str]]]:
    """For tests and debugging: what load_weights would do with each name ((quantize?, suffix) or None = heuristic)."""
    index = _ModelIndex(model)
    return {n: index.place(n) for n in names}


def quantized_weights(model: Any, weights: Items, *, block_size: Optional[Tuple[int, int]] = None,
                      impl: str = "auto") -> Iterator[Tuple[str, Any]]:
    """The stream load_weights hands to `model.load_weights`: fp8 weights with their scales named for this model."""
    from .quantize import default_should_quantize, quantize_state_dict

    index = _ModelIndex(model)
    # quantize_state_dict validates the pair (ValueError naming it)
    block: Union[int, Tuple[int, int]] = block_size if block_size is not None else (index.block or (128, 128))
    suffix: Dict[str, str] = {}

    def should_quantize(name: str, tensor: Any) -> bool:
        placed = index.place(name)
        if placed is None:
            if not default_should_quantize(name, tensor):
                return False
            placed = (True, index.default_suffix)
        quantize, sfx = placed
        if not quantize or tensor.dim() != 2 or not tensor.is_floating_point() or tensor.element_size() < 2:
            return False
        suffix[name] = sfx
        return True

    pending: Set[str] = set()
    for name, tensor in quantize_state_dict(weights, should_quantize, block, scale_suffix="_scale_inv", impl=impl):
        if name in suffix and name not in pending:
            pending.add(name)
            yield name, tensor
            continue
        base = name[: -len("_scale_inv")] if name.endswith("_scale_inv") else None
        if base is not None and base in pending:
            pending.discard(base)
            yield base + suffix.pop(base), tensor
            continue
        yield name, tensor


def load_weights(model: Any, weights: Items, *, block_size: Optional[Tuple[int, int]] = None,
                 impl: str = "auto") -> Any:
    """Quantize bf16 `(name, tensor)` pairs for the block-FP8 layers of `model` and load them with
    `model.load_weights(...)`; returns what it returns (the loaded parameter names on 0.10/0.11).

    `model` is the vLLM model (torch module with `load_weights`), e.g. the rollout worker's model runner's
    `.model`. `weights` is streamed: pass a generator to hold at most one bf16 weight and its fp8 copy at a time.
    """
    return model.load_weights(quantized_weights(model, weights, block_size=block_size, impl=impl))
