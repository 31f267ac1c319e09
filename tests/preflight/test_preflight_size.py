"""Config arithmetic: parameter counts equal the hub's safetensors counts, bytes and KV per token follow the
formulas written out here, bad model paths are one clear error."""

import json
from pathlib import Path

import pytest

from compat.errors import CompatError
from compat.preflight.config import load_model, parse_config
from compat.preflight.size import kv_bytes_per_token, params, weight_bytes_per_gpu

MODELS = Path(__file__).resolve().parent.parent / "fixtures" / "models"

# parameter counts the hub shows for each checkpoint (tests/fixtures/models/README.md)
PUBLISHED = {
    "llama-3.1-8b": 8_030_261_248,
    "llama-3.1-70b": 70_553_706_496,
    "llama-3.2-1b": 1_235_814_400,
    "qwen2.5-7b-instruct": 7_615_616_512,
    "qwen3-8b": 8_190_735_360,
    "mixtral-8x7b": 46_702_792_704,
    "gemma-2-9b": 9_241_705_984,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_is_the_published_one(name):
    assert params(load_model(MODELS / name)).total == PUBLISHED[name]


def test_deepseek_v3_counts_the_671b_main_model():
    # the model card: 671B main model weights + 14B multi-token-prediction module (not loaded by vLLM)
    assert round(params(load_model(MODELS / "deepseek-v3")).total / 1e9) == 671


def test_quantized_checkpoints_count_the_same_parameters():
    base = params(load_model(MODELS / "qwen2.5-7b-instruct")).total
    for q in ("qwen2.5-7b-instruct-awq", "qwen2.5-7b-instruct-gptq-int4"):
        assert params(load_model(MODELS / q)).total == base
    assert params(load_model(MODELS / "qwen3-8b-fp8")).total == PUBLISHED["qwen3-8b"]


def test_awq_bytes_are_half_a_byte_per_weight_plus_group_scales():
    m = load_model(MODELS / "qwen2.5-7b-instruct-awq")
    h, i, v, n = 3584, 18944, 152064, 28
    q, kv = 28 * 128, 4 * 128
    linear = n * (h * q + 2 * h * kv + q * h + 3 * h * i)
    embed_and_head = 2 * v * h
    small = params(m).total - linear - embed_and_head           # norms and q/k/v biases
    per_weight = 4 / 8 + (2 + 4 / 8) / 128                      # 4 bits + fp16 scale and 4-bit zero per group of 128
    expected = embed_and_head * 2 + linear * per_weight + small * 2
    assert weight_bytes_per_gpu(m, "float16", 1) == pytest.approx(expected, rel=1e-9)


def test_awq_bytes_are_the_bytes_the_hub_stores():
    """Qwen/Qwen2.5-7B-Instruct-AWQ's safetensors headers store 822,033,408 int32 elements (packed 4-bit weights
    and zeros) and 1,141,306,880 float16 ones (scales, embeddings, lm_head, norms, biases): 5.19 GiB. The
    arithmetic from config.json must land on that exactly (pins bits, group size and zero points)."""
    m = load_model(MODELS / "qwen2.5-7b-instruct-awq")
    assert weight_bytes_per_gpu(m, "float16", 1) == 822_033_408 * 4 + 1_141_306_880 * 2


def test_fp8_block_bytes_are_one_byte_plus_a_float32_scale_per_block():
    m = load_model(MODELS / "qwen3-8b-fp8")
    p = params(m)
    expected = (p.embedding + p.lm_head) * 2 + p.linear * (1 + 4 / (128 * 128)) + p.other * 2
    assert weight_bytes_per_gpu(m, "bfloat16", 1) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name,tp,expected", [
    # 2 (K and V) x layers x KV heads per rank x head_dim x 2 bytes
    ("llama-3.1-8b", 1, 2 * 32 * 8 * 128 * 2),
    ("llama-3.1-8b", 8, 2 * 32 * 1 * 128 * 2),
    ("qwen2.5-7b-instruct", 8, 2 * 28 * 1 * 128 * 2),    # 4 KV heads on 8 ranks: replicated, one per rank
    ("llama-3.2-1b", 1, 2 * 16 * 8 * 64 * 2),
    ("gemma-2-9b", 2, 2 * 42 * 4 * 256 * 2),
    ("deepseek-v3", 8, 61 * (512 + 64) * 2),              # MLA: one latent of kv_lora_rank + rope dims, every rank
])
def test_kv_bytes_per_token(name, tp, expected):
    assert kv_bytes_per_token(load_model(MODELS / name), "bfloat16", tp) == expected


def test_model_path_may_be_the_directory_or_its_config(tmp_path):
    assert load_model(MODELS / "llama-3.2-1b") == load_model(MODELS / "llama-3.2-1b" / "config.json")


@pytest.mark.parametrize("content,message", [
    (None, "no config.json"),
    ("{not json", "not readable JSON"),
    ("[1, 2]", "must be a JSON object"),
    (json.dumps({"model_type": "bert"}), "lacks hidden_size"),
    (json.dumps({"hidden_size": "big", "num_attention_heads": 8}), "hidden_size must be a non-negative integer"),
])
def test_bad_model_is_one_clear_error(tmp_path, content, message):
    if content is not None:
        (tmp_path / "config.json").write_text(content)
    with pytest.raises(CompatError, match=message):
        load_model(tmp_path)


def test_multimodal_config_reads_its_text_config():
    raw = {"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava",
           "text_config": {"hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 32,
                           "intermediate_size": 14336, "vocab_size": 32000, "num_key_value_heads": 8}}
    m = parse_config(raw)
    assert m.multimodal and m.hidden_size == 4096 and m.architecture == "LlavaForConditionalGeneration"
