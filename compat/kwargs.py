"""Arguments for the libraries compat configures: vllm.LLM(...) and from_pretrained(...), from the current report."""

from __future__ import annotations

from typing import Any, Dict, Optional


def vllm_kwargs(model: Optional[str] = None, **overrides: Any) -> Dict[str, Any]:
    """Engine arguments for vllm.LLM(...) / AsyncEngineArgs: dtype, and the attention backend where the
    installed release takes it as an argument rather than an env var. With model=PATH (local dir or its
    config.json) also what the model needs here: tensor_parallel_size, quantization, max_model_len when it
    must shrink (compat/preflight/, docs/preflight.md)."""
    from ._setup import report_or_setup

    rep = report_or_setup()
    r = rep.resolved
    out: Dict[str, Any] = {"dtype": r.dtype}
    b = r.attention_backend
    if b is not None and b.option:
        out[b.option] = b.name
    if r.fp8 and dict(rep.switches).get("fp8") not in (None, False):
        # serve the (bf16) checkpoint in block FP8: vLLM builds block-FP8 layers, the vllm_fp8 set quantizes on load
        from . import versions
        from .fp8.rollout import engine_kwargs
        from .patches.sets.vllm_fp8 import PATCH_SET
        if versions.in_spec(rep.environment.software.version("vllm"), PATCH_SET.versions):
            out.update(engine_kwargs())
    if model is not None:
        from .preflight import engine_kwargs as preflight_kwargs
        out.update(preflight_kwargs(rep.environment, r.profile, model, overrides))
    out.update(overrides)
    return out


def hf_kwargs(**overrides: Any) -> Dict[str, Any]:
    """from_pretrained() arguments: the dtype and attention implementation this GPU and install can run."""
    from ._setup import report_or_setup

    rep = report_or_setup()
    r = rep.resolved
    tf = rep.environment.software.version("transformers")
    from . import versions
    from ._toml import load_data

    since = load_data("hf")["from_pretrained"]["dtype_kwarg_since"]  # the torch_dtype -> dtype rename
    key = "dtype" if tf and versions.release(tf) >= versions.parse(since) else "torch_dtype"
    out: Dict[str, Any] = {key: r.dtype, "attn_implementation": r.hf_attn_implementation}
    out.update(overrides)
    return out
