"""Pre-flight's arithmetic against the installed vLLM release itself (every vLLM matrix env, CPU only).

vLLM's own ModelConfig is built from each fixture config.json (no weights, offline) and asked what pre-flight
computes on its own: KV heads per rank and head size (so KV-cache bytes per token, at tp 1..8), the default
max_model_len, and which models it refuses to run in float16. Fixture models this env's transformers cannot parse
(a model type newer than the release) are left out, and the test asserts that some were checked.
"""

import inspect
import json
import shutil
import types
from pathlib import Path

import pytest

from compat._toml import load_data
from compat.preflight.config import load_model
from compat.preflight.size import DTYPE_BYTES, kv_bytes_per_token
from conftest import installed_vllm  # tests/vllm/conftest.py

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"

pytestmark = pytest.mark.skipif(installed_vllm() is None, reason="needs vllm: runs inside the vLLM matrix envs")


def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _model_config(path, dtype="auto"):
    from vllm.config import ModelConfig

    kw = dict(model=str(path), tokenizer=str(path), tokenizer_mode="auto", trust_remote_code=False, dtype=dtype, seed=0)
    if "task" in inspect.signature(ModelConfig.__init__).parameters:
        kw["task"] = "generate"          # 0.7.x-0.9.x require it
    return ModelConfig(**kw)


def _plain_models(tmp_path):
    """Unquantized fixture configs this env's transformers knows (quantized ones would make vLLM verify the
    quantization method against the CPU platform, which is not what is tested here)."""
    from transformers import AutoConfig

    out = []
    for d in sorted(p for p in MODELS.iterdir() if (p / "config.json").exists()):
        raw = json.loads((d / "config.json").read_text())
        if "quantization_config" in raw:
            continue
        raw.pop("auto_map", None)        # vLLM implements these; the repository code is not in the fixture
        dst = tmp_path / d.name
        dst.mkdir()
        (dst / "config.json").write_text(json.dumps(raw))
        try:
            AutoConfig.from_pretrained(str(dst))
        except (ValueError, KeyError):  # model_type unknown to this transformers
            shutil.rmtree(dst)
            continue
        out.append(dst)
    return out


def test_kv_bytes_per_token_and_default_length_match_vllm(tmp_path, monkeypatch):
    _offline(monkeypatch)
    checked = []
    for path in _plain_models(tmp_path):
        mc = _model_config(path)
        m = load_model(path)
        dtype = str(mc.dtype).split(".")[-1]
        use_mla = bool(getattr(mc, "use_mla", False))
        layers = mc.hf_text_config.num_hidden_layers
        for tp in (1, 2, 4, 8):
            pc = types.SimpleNamespace(tensor_parallel_size=tp, pipeline_parallel_size=1)
            # vLLM's cache engine: K and V entries (one latent entry with MLA) of num_kv_heads x head_size per layer
            theirs = (1 if use_mla else 2) * layers * mc.get_num_kv_heads(pc) * mc.get_head_size() * DTYPE_BYTES[dtype]
            assert kv_bytes_per_token(m, dtype, tp, mla_cache=use_mla) == theirs, (path.name, tp)
        # pre-flight fits the model's own length; vLLM never derives a longer one (0.5.4 caps Gemma 2 at its
        # 4096 sliding window), so the default is never optimistic
        assert mc.max_model_len <= m.max_position_embeddings, path.name
        checked.append(path.name)
    assert {"llama-3.1-8b", "qwen2.5-7b-instruct"} <= set(checked), checked


def _float16_blocklist():
    """The release's own list of model types it refuses to run in float16, or None where it has none."""
    import importlib

    for mod in ("vllm.config.model", "vllm.config"):
        try:
            found = getattr(importlib.import_module(mod), "_FLOAT16_NOT_SUPPORTED_MODELS", None)
        except ImportError:
            continue
        if found is not None:
            return set(found)
    return None


def test_every_model_the_release_refuses_in_float16_is_served_in_float32(tmp_path, monkeypatch):
    """compat/data/preflight.toml float16_unsupported covers the release's own blocklist, and a fixture model
    the release refuses in float16 is on it (older releases refuse none: the list is then a superset, which
    only makes pre-flight choose float32 for models known to overflow in float16)."""
    _offline(monkeypatch)
    ours = set(load_data("preflight")["dtype"]["float16_unsupported"])
    theirs = _float16_blocklist()
    if theirs is not None:
        assert theirs <= ours, sorted(theirs - ours)
    checked = []
    for path in _plain_models(tmp_path):
        m = load_model(path)
        try:
            _model_config(path, dtype="float16")
        except ValueError as exc:
            assert "float16" in str(exc), exc
            assert m.model_type in ours, (path.name, str(exc))
        checked.append(m.model_type)
    assert "gemma2" in checked and "llama" in checked, checked
