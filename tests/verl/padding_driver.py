"""Fresh process: import verl's worker modules as a CUDA machine without flash-attn would, and report as JSON.

Stand-in (the hardware edge, this CPU box has no GPU): torch.cuda.is_available is replaced by `lambda: True` BEFORE
verl is imported, so verl/utils/device.py's `is_cuda_available = torch.cuda.is_available()` is True, as on every
CUDA machine; nothing CUDA runs. argv: out.json, "compat" | "bare", module names to import.
Then, where they imported: verl's own utils/torch_functional.log_probs_from_logits_response_rmpad (which imports
pad_input/unpad_input from flash_attn.bert_padding when called) against verl's padded logprobs_from_logits, and the
state of `flash_attn` seen from outside; last, compat.revert() and whether the sys.modules entry is gone.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import traceback

out, mode, *modules = sys.argv[1:]
result: dict = {"imported": [], "error": None}

import torch  # noqa: E402

torch.cuda.is_available = lambda: True  # the stand-in (see the docstring)

if mode == "compat":
    import compat

    compat.setup()
try:
    for name in modules:
        importlib.import_module(name)
        result["imported"].append(name)
except Exception as exc:  # what the worker's init_model() would die of
    result["error"] = f"{type(exc).__name__}: {exc}"
    result["trace"] = traceback.format_exc()[-2000:]

import verl.utils.device  # noqa: E402

result["is_cuda_available"] = bool(verl.utils.device.is_cuda_available)
entry = sys.modules.get("flash_attn.bert_padding")
result["entry"] = getattr(entry, "__name__", None)
result["find_spec_flash_attn"] = importlib.util.find_spec("flash_attn") is not None
try:
    import flash_attn  # noqa: F401

    result["import_flash_attn"] = "ok"
except ImportError as exc:
    result["import_flash_attn"] = str(exc)
from transformers.utils import is_flash_attn_2_available  # noqa: E402

result["fa2_available"] = bool(is_flash_attn_2_available())

if not result["error"]:
    from verl.utils import torch_functional as F

    torch.manual_seed(0)
    b, s, v, resp = 3, 7, 11, 3
    mask = torch.ones(b, s, dtype=torch.int64)
    mask[0, :2] = 0  # left padding: every sequence ends at s-1, as verl's prompts+responses do
    mask[2, :3] = 0
    ids = torch.randint(0, v, (b, s))
    logits = torch.randn(b, s, v)
    try:
        F.log_probs_from_logits_response_rmpad(ids, mask, logits[mask.bool()], resp)
    except Exception as exc:  # with compat: its refusal; outside the set's range: the missing module
        result["rmpad_error"] = f"{type(exc).__name__}: {exc}"
    if "flash_attn.bert_padding" in sys.modules:  # the math, with compat's `unpad` in unpad_input's place
        entry = sys.modules["flash_attn.bert_padding"]
        refusing = entry.unpad_input
        entry.unpad_input = entry.unpad
        try:
            got = F.log_probs_from_logits_response_rmpad(ids, mask, logits[mask.bool()], resp)
            want = F.logprobs_from_logits(logits[:, :-1], ids[:, 1:])[:, -resp:]
            result["rmpad_max_err"] = float((got - want).abs().max())
        finally:
            entry.unpad_input = refusing

if mode == "compat":
    from compat.patches import engine

    result["status"] = {r.id: r.status for r in engine.status() if r.patch_set == "verl_padding"}
    compat.revert()
    result["entry_after_revert"] = "flash_attn.bert_padding" in sys.modules

with open(out, "w") as f:
    json.dump(result, f)
