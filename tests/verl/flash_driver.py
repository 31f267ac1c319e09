"""Fresh process: load a tiny Qwen2 through transformers' own from_config as a CUDA machine would, run one forward
(on CPU), and report as JSON.

argv: out.json, "compat" | "bare", the attn_implementation to request. A flash-attn that is installed but does not
load is on PYTHONPATH (tests/verl/test_broken_flash_attn.py builds it). Stand-in (the hardware edge, this CPU box has
no GPU): torch.cuda.is_available is `lambda: True` before transformers is imported, so transformers'
is_flash_attn_2_available() takes its CUDA branch, as on every CUDA machine; nothing CUDA runs.
"""
from __future__ import annotations

import json
import sys
import traceback

out, mode, attn = sys.argv[1:4]
result: dict = {"error": None}

import torch  # noqa: E402

torch.cuda.is_available = lambda: True  # the stand-in (see the docstring)

if mode == "compat":
    import compat

    compat.setup()
try:
    from transformers import AutoModelForCausalLM, Qwen2Config

    cfg = Qwen2Config(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, attn_implementation=attn)
    model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32)
    result["attn"] = model.config._attn_implementation
    # one forward: transformers 4.54 - 4.56 accept the request at load and reach for flash_attn only here
    model(torch.randint(0, 128, (1, 8)))
except Exception as exc:  # what the user's model load dies of
    result["error"] = f"{type(exc).__name__}: {exc}"
    result["trace"] = traceback.format_exc()[-20000:]  # chained: the flash_attn import error comes first
result["flash_attn_entry"] = repr(sys.modules.get("flash_attn", "absent"))
if mode == "compat":
    from compat.hf import attention
    from compat.patches import engine

    result["status"] = {s.id: s.status for s in engine.status() if "flash_attn" in s.id}
    result["served"] = [list(x) for x in attention.served()]
    compat.revert()
    result["entry_after_revert"] = repr(sys.modules.get("flash_attn", "absent"))
with open(out, "w") as f:
    json.dump(result, f)
