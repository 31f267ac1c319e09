"""A random tiny Qwen2 causal LM (2 layers, hidden 64) + a word-level tokenizer, saved with save_pretrained into
argv[1]: nothing is downloaded (the device has no network)."""
import sys

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

out = sys.argv[1]
torch.manual_seed(0)
cfg = Qwen2Config(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
                  bos_token_id=61, eos_token_id=62, pad_token_id=63)
Qwen2ForCausalLM(cfg).save_pretrained(out)
vocab = {f"t{i}": i for i in range(60)}
vocab.update({"<unk>": 60, "<s>": 61, "</s>": 62, "<pad>": 63})
tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                        pad_token="<pad>").save_pretrained(out)
print(f"tiny Qwen2 saved to {out}")
