"""tests/verl: verl's own code (its Hydra config, model builders, run_ppo's ray.init) with and without compat.

They run in the verl matrix envs (`tox -e verl041` ... `verl-latest`, compat/data/verl.toml), each holding one real
verl release with the transformers/torch of its era, CPU only. Elsewhere (no verl installed) they skip.
"""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _verl_installed() -> bool:
    try:
        import verl
    except ImportError:
        return False
    return getattr(verl, "__file__", None) is not None   # not this directory seen as a namespace package


def pytest_collection_modifyitems(config, items):
    """Outside a verl env these tests skip naming the `verl` feature; a verl env promises it (tox.ini
    COMPAT_PROMISES), so there the skip is a failure (tests/promises.py)."""
    if _verl_installed():
        return
    skip = pytest.mark.skip(reason="needs verl: not installed here (tox -e verl041 ... verl-latest)")
    for item in items:
        if str(HERE) in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random 2-layer Qwen2 causal LM and a word-level tokenizer, saved with save_pretrained (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    d = tmp_path_factory.mktemp("tiny-qwen2")
    cfg = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True)
    Qwen2ForCausalLM(cfg).save_pretrained(d)
    vocab = {f"t{i}": i for i in range(60)}
    vocab.update({"<unk>": 60, "<s>": 61, "</s>": 62, "<pad>": 63})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                            pad_token="<pad>").save_pretrained(d)
    return d
