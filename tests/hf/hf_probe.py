"""Child process for tests/hf: load a tiny saved model the ways verl and users do, print one JSON line.

argv: <model dir> <hardware file> ...; env: COMPAT_DISABLE_PATCHES, COMPAT_HF_DTYPE.
`compat.setup(hardware=<first file>)` runs before torch and transformers are imported, so the post-import hook is
what applies the sets; for each further machine the process calls compat.revert() and compat.setup(hardware=...)
(transformers is imported by then, so setup applies the sets at once), which saves a torch import per machine.
Each scenario reports the model's config._attn_implementation and parameter dtypes, or the exception it raised;
each machine also reports the transformers sets' statuses and the `compat` log lines written while it ran.
"""

from __future__ import annotations

import io
import json
import logging
import sys

log = io.StringIO()
logging.getLogger("compat").addHandler(logging.StreamHandler(log))

import compat  # noqa: E402

machines = sys.argv[2:]
compat.setup(hardware=machines[0])

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

path = sys.argv[1]
BF16 = torch.bfloat16
NEW_KWARG = tuple(int(x) for x in transformers.__version__.split(".")[:2]) >= (4, 56)


def verl_from_pretrained():
    """verl 0.4.1-0.6.0 fsdp_workers._build_model_optimizer: config built with flash_attention_2, then loaded."""
    config = AutoConfig.from_pretrained(path, attn_implementation="flash_attention_2")
    return AutoModelForCausalLM.from_pretrained(pretrained_model_name_or_path=path, torch_dtype=BF16, config=config)


def verl_from_config():
    """The same config through AutoModelForCausalLM.from_config (verl's meta-device init path)."""
    config = AutoConfig.from_pretrained(path, attn_implementation="flash_attention_2")
    return AutoModelForCausalLM.from_config(config, torch_dtype=BF16)


def kwarg_fa2():
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="flash_attention_2", torch_dtype=BF16)


def kwarg_fa2_dtype_str():
    key = "dtype" if NEW_KWARG else "torch_dtype"
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="flash_attention_2", **{key: "bfloat16"})


def auto_dtype():
    """torch_dtype="auto" on a bfloat16 checkpoint: bfloat16 the request did not name."""
    return AutoModelForCausalLM.from_pretrained(path, torch_dtype="auto", attn_implementation="sdpa")


def sdpa_fp32():
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa", torch_dtype=torch.float32)


def eager_fp16():
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", torch_dtype=torch.float16)


def sdpa_bf16():
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa", torch_dtype=BF16)


def set_attn_fa2():
    """model.set_attn_implementation (4.54+): the request after loading."""
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", torch_dtype=torch.float32)
    if not hasattr(model, "set_attn_implementation"):
        return None
    model.set_attn_implementation("flash_attention_2")
    return model


SCENARIOS = (verl_from_pretrained, verl_from_config, kwarg_fa2, kwarg_fa2_dtype_str, auto_dtype, sdpa_fp32,
             eager_fp16, sdpa_bf16, set_attn_fa2)


def run_scenarios() -> dict:
    res: dict = {}
    for fn in SCENARIOS:
        try:
            model = fn()
            if model is None:
                res[fn.__name__] = {"skipped": "not in this release"}
                continue
            dtypes = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()})
            with torch.no_grad():
                logits = model(torch.tensor([[1, 2, 3, 4]])).logits
            res[fn.__name__] = {"attn": model.config._attn_implementation, "dtypes": dtypes,
                                "finite": bool(torch.isfinite(logits).all())}
        except Exception as exc:  # the failure is the result (kill-switch runs)
            res[fn.__name__] = {"error": f"{type(exc).__name__}: {exc}"}
    return res


import compat.patches  # noqa: E402

out: dict = {"transformers": transformers.__version__, "torch": torch.__version__}
for n, machine in enumerate(machines):
    if n:
        compat.revert()
        compat.setup(hardware=machine)
    start = len(log.getvalue())
    res = run_scenarios()
    res["patches"] = {s.id: s.status for s in compat.patches.status() if s.patch_set.startswith("transformers")}
    res["log"] = log.getvalue()[start:]
    out[machine] = res
print("PROBE " + json.dumps(out))
