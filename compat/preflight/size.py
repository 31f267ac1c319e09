"""Model size from config arithmetic: parameters, weight bytes per GPU, KV-cache bytes per token.

Counts follow the layer shapes of the Hugging Face / vLLM implementations (Llama, Qwen2/3, Mistral/Mixtral,
Gemma 2, DeepSeek-V2/V3 with MLA). Bytes: unquantized weights take the serving dtype; AWQ/GPTQ/bitsandbytes
linear weights take bits/8 plus one fp16 scale and one packed zero point per group; FP8 linear weights one
byte plus a float32 scale per block. Embeddings, lm_head, norms and routers stay in the serving dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ModelConfig, Quantization

DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}


@dataclass(frozen=True)
class Params:
    """Parameter counts by how vLLM stores and shards them."""
    embedding: int        # vocab x hidden (VocabParallelEmbedding: sharded by tp)
    lm_head: int          # 0 when tied to the embedding
    linear: int           # quantizable projections sharded by tp (attention, MLP, experts)
    replicated: int       # quantizable projections every rank holds whole (MLA q_a / kv_a down-projections)
    other: int            # norms, biases, routers: unquantized, counted on every rank (they are tiny)

    @property
    def total(self) -> int:
        return self.embedding + self.lm_head + self.linear + self.replicated + self.other


def params(m: ModelConfig) -> Params:
    """Parameters of the model vLLM loads (DeepSeek's multi-token-prediction layer is not loaded)."""
    h, n = m.hidden_size, m.num_layers
    if m.mla:
        qk_head = m.qk_nope_head_dim + m.qk_rope_head_dim
        kv_lora = m.kv_lora_rank or 0
        if m.q_lora_rank:
            q_repl, q_shard, q_norm = h * m.q_lora_rank, m.q_lora_rank * m.num_heads * qk_head, m.q_lora_rank
        else:
            q_repl, q_shard, q_norm = 0, h * m.num_heads * qk_head, 0
        kv_a = h * (kv_lora + m.qk_rope_head_dim)                        # kv_a_proj_with_mqa (replicated)
        kv_b = kv_lora * m.num_heads * (m.qk_nope_head_dim + m.v_head_dim)
        o = m.num_heads * m.v_head_dim * h
        attn_linear, attn_repl, attn_other = q_shard + kv_b + o, q_repl + kv_a, q_norm + kv_lora
    else:
        q, kv = m.num_heads * m.head_dim, m.num_kv_heads * m.head_dim
        attn_linear, attn_repl = h * q + 2 * h * kv + q * h, 0
        attn_other = (q + 2 * kv if m.qkv_bias else 0) + (2 * m.head_dim if m.qk_norm else 0)
    dense_mlp = 3 * h * m.intermediate_size                              # gate, up, down (SwiGLU/GeGLU)
    if m.moe:
        moe_layers = n - m.dense_layers
        expert = 3 * h * m.moe_intermediate_size
        mlp_linear = m.dense_layers * dense_mlp + moe_layers * (m.num_experts + m.shared_experts) * expert
        router = moe_layers * (h * m.num_experts + (m.num_experts if m.mla else 0))  # + e_score_correction_bias
    else:
        mlp_linear, router = n * dense_mlp, 0
    emb = m.vocab_size * h
    return Params(embedding=emb, lm_head=0 if m.tie_word_embeddings else emb,
                  linear=n * attn_linear + mlp_linear, replicated=n * attn_repl,
                  other=n * (attn_other + m.norms_per_layer * h) + router + h)


def linear_bytes_per_param(q: Quantization, dtype_bytes: int) -> float:
    """Bytes a quantized linear weight takes, scales included; the serving dtype when not understood."""
    if q.bits is None:
        return float(dtype_bytes)
    if q.method == "fp8" or (q.bits == 8 and q.block):
        scale = 4.0 / (q.block[0] * q.block[1]) if q.block else 0.0    # float32 scale per block (per tensor: ~0)
        return 1.0 + scale
    per_group = (2.0 + q.bits / 8.0) / q.group_size if q.group_size else 0.0   # fp16 scale + packed zero point
    return q.bits / 8.0 + per_group


def quantized(m: ModelConfig) -> bool:
    return m.quantization is not None and m.quantization.bits is not None


def weight_bytes_per_gpu(m: ModelConfig, dtype: str, tp: int) -> int:
    """Weights one rank holds at tensor_parallel_size tp (sharded parts divided, replicated parts whole)."""
    p, b = params(m), DTYPE_BYTES[dtype]
    lb = linear_bytes_per_param(m.quantization, b) if m.quantization is not None else float(b)
    sharded = (p.embedding + p.lm_head) * b + p.linear * lb
    return int(sharded / tp + p.replicated * lb + p.other * b)


def attention_head_size(m: ModelConfig, mla_cache: bool = True) -> int:
    """Head size the attention kernel sees: an MLA model served without an MLA backend runs plain multi-head
    attention over decompressed heads of qk_nope + qk_rope dims (V padded to that)."""
    return m.head_dim if not m.mla or mla_cache else m.qk_nope_head_dim + m.qk_rope_head_dim


def kv_bytes_per_token(m: ModelConfig, dtype: str, tp: int, mla_cache: bool = True) -> int:
    """KV cache per token on one rank: 2 (K and V) x layers x kv heads on the rank x head_dim x dtype bytes.

    MLA caches one latent (kv_lora_rank + rope dims) per layer, the same on every rank; a release without an
    MLA backend (mla_cache False) caches full K and V of every head. A rank holds kv_heads/tp heads, or one
    replicated head when tp exceeds the KV heads (vLLM replicates them).
    """
    b = DTYPE_BYTES[dtype]
    if m.mla and mla_cache:
        return m.num_layers * ((m.kv_lora_rank or 0) + m.qk_rope_head_dim) * b
    heads = max(1, m.num_kv_heads // tp)
    return 2 * m.num_layers * heads * attention_head_size(m, mla_cache) * b


def activation_bytes_per_gpu(m: ModelConfig, dtype: str, tp: int, batched_tokens: int, max_num_seqs: int) -> int:
    """Peak activations of the profile run: MLP intermediates and hidden states of one batch, plus the
    float32 logits (and probabilities) of max_num_seqs sequences."""
    b = DTYPE_BYTES[dtype]
    inter = m.moe_intermediate_size * max(1, m.experts_per_token) if m.moe else m.intermediate_size
    return (batched_tokens * (2 * inter // tp + 4 * m.hidden_size) * b
            + 2 * max_num_seqs * (m.vocab_size // tp) * 4)
