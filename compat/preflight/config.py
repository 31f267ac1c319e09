"""A model's config.json as the numbers pre-flight needs. Reads one JSON file; no weights, no network."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from ..errors import CompatError


@dataclass(frozen=True)
class Quantization:
    """The checkpoint's quantization_config, reduced to what decides kernels and bytes."""
    method: str                                   # quant_method as written: awq, gptq, fp8, compressed-tensors...
    bits: Optional[int] = None                    # weight bits (4 for AWQ/GPTQ-Int4, 8 for FP8)
    group_size: Optional[int] = None              # weights per scale (AWQ/GPTQ); None = per channel
    block: Optional[Tuple[int, int]] = None       # FP8 weight_block_size (block-wise scales)


@dataclass(frozen=True)
class ModelConfig:
    path: str
    architectures: Tuple[str, ...]
    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: Optional[int]
    tie_word_embeddings: bool
    torch_dtype: Optional[str]
    sliding_window: Optional[int] = None          # None when absent or switched off (use_sliding_window=false)
    qkv_bias: bool = False
    qk_norm: bool = False                         # Qwen3: per-head RMSNorm on q and k
    norms_per_layer: int = 2
    # mixture of experts
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    shared_experts: int = 0
    dense_layers: int = 0                         # DeepSeek first_k_dense_replace: leading layers with a dense MLP
    # multi-head latent attention (DeepSeek-V2/V3)
    q_lora_rank: Optional[int] = None
    kv_lora_rank: Optional[int] = None
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    quantization: Optional[Quantization] = None
    custom_code: bool = False                     # auto_map: needs trust_remote_code, vLLM may not implement it
    multimodal: bool = False                      # sizes read from text_config; encoders not counted

    @property
    def mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def moe(self) -> bool:
        return self.num_experts > 0

    @property
    def architecture(self) -> str:
        return self.architectures[0] if self.architectures else "(none)"


def config_path(path: Union[str, Path]) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise CompatError(f"--model {path}: no config.json there; give a local model directory or its config.json")
    return p


def load_model(path: Union[str, Path]) -> ModelConfig:
    """Parse config.json; a file that is not a decoder config is one clear CompatError."""
    p = config_path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CompatError(f"--model {p}: not readable JSON ({exc}); point at the model's config.json") from None
    if not isinstance(raw, dict):
        raise CompatError(f"--model {p}: config.json must be a JSON object")
    return parse_config(raw, str(p))


def _int(d: Dict[str, Any], where: str, *keys: str, default: Optional[int] = None) -> int:
    for k in keys:
        v = d.get(k)
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise CompatError(f"--model {where}: {k} must be a non-negative integer, got {v!r}")
            return v
    if default is None:
        raise CompatError(f"--model {where}: config.json lacks {' / '.join(keys)}; "
                          "pre-flight needs a decoder-only language model config")
    return default


def _quant(raw: Dict[str, Any]) -> Optional[Quantization]:
    q = raw.get("quantization_config")
    if not isinstance(q, dict):
        return None
    method = str(q.get("quant_method", "")).lower() or "unknown"
    bits = q.get("bits") or q.get("w_bit")
    group = q.get("group_size", q.get("q_group_size"))
    block = q.get("weight_block_size")
    if method == "fp8":
        bits = 8
    if method == "bitsandbytes":
        bits = 4 if q.get("load_in_4bit") else 8
    if method == "compressed-tensors":  # first config group's weight scheme
        for group_cfg in (q.get("config_groups") or {}).values():
            w = (group_cfg or {}).get("weights") or {}
            bits, group = w.get("num_bits"), w.get("group_size")
            if w.get("block_structure"):
                block = w["block_structure"]
            break
    return Quantization(method=method, bits=int(bits) if isinstance(bits, int) else None,
                        group_size=int(group) if isinstance(group, int) and group > 0 else None,
                        block=(int(block[0]), int(block[1])) if isinstance(block, list) and len(block) == 2 else None)


def parse_config(raw: Dict[str, Any], where: str = "config.json") -> ModelConfig:
    """The numbers of a Hugging Face config dict (multimodal configs: their text_config)."""
    top = raw
    text = raw.get("text_config")
    multimodal = isinstance(text, dict) and bool(text)
    d: Dict[str, Any] = dict(raw, **text) if multimodal and isinstance(text, dict) else raw
    hidden = _int(d, where, "hidden_size", "n_embd", "d_model")
    heads = _int(d, where, "num_attention_heads", "n_head")
    if heads == 0:
        raise CompatError(f"--model {where}: num_attention_heads is 0")
    kv_heads = _int(d, where, "num_key_value_heads", "num_kv_heads", default=heads)
    head_dim = _int(d, where, "head_dim", default=hidden // heads)
    model_type = str(d.get("model_type") or top.get("model_type") or "")
    experts = _int(d, where, "num_local_experts", "n_routed_experts", "num_experts", default=0)
    use_sw = d.get("use_sliding_window", True)
    sw = d.get("sliding_window")
    archs = top.get("architectures") or d.get("architectures") or []
    return ModelConfig(
        path=where,
        architectures=tuple(str(a) for a in archs),
        model_type=model_type,
        hidden_size=hidden,
        num_layers=_int(d, where, "num_hidden_layers", "n_layer", "num_layers"),
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=_int(d, where, "intermediate_size", "n_inner", "ffn_dim", default=4 * hidden),
        vocab_size=_int(d, where, "vocab_size"),
        max_position_embeddings=_int(d, where, "max_position_embeddings", "n_positions", "max_seq_len", default=0)
        or None,
        # transformers' PretrainedConfig default is True; Llama-family configs write false explicitly
        tie_word_embeddings=bool(d.get("tie_word_embeddings", top.get("tie_word_embeddings", True))),
        torch_dtype=(str(d.get("torch_dtype") or d.get("dtype") or top.get("torch_dtype") or "") or None),
        sliding_window=int(sw) if isinstance(sw, int) and use_sw and sw > 0 else None,
        # Qwen2 attention has q/k/v bias (transformers modeling_qwen2.py: bias=True); others say attention_bias
        qkv_bias=bool(d.get("attention_bias", model_type in ("qwen2", "qwen2_moe"))),
        qk_norm=model_type in ("qwen3", "qwen3_moe"),
        norms_per_layer=4 if model_type in ("gemma2", "gemma3", "gemma3_text") else 2,
        num_experts=experts,
        experts_per_token=_int(d, where, "num_experts_per_tok", default=0),
        moe_intermediate_size=_int(d, where, "moe_intermediate_size", default=d.get("intermediate_size") or 0)
        if experts else 0,
        shared_experts=_int(d, where, "n_shared_experts", default=0),
        dense_layers=_int(d, where, "first_k_dense_replace", default=0) if experts else 0,
        q_lora_rank=d.get("q_lora_rank") if isinstance(d.get("q_lora_rank"), int) else None,
        kv_lora_rank=d.get("kv_lora_rank") if isinstance(d.get("kv_lora_rank"), int) else None,
        qk_nope_head_dim=_int(d, where, "qk_nope_head_dim", default=0),
        qk_rope_head_dim=_int(d, where, "qk_rope_head_dim", default=0),
        v_head_dim=_int(d, where, "v_head_dim", default=0),
        quantization=_quant(top) or _quant(d),
        custom_code=bool(top.get("auto_map")),
        multimodal=multimodal,
    )
