"""Real vLLM on the GPU with and without compat (issue 9).

Builds a tiny random Llama checkpoint locally (no hub), then in two fresh processes runs `LLM(...).generate`
on the same prompts: one plain, one that called `compat.setup()` first and passes `compat.vllm_kwargs()`.
Records generation throughput of both, the attention backend vLLM logged, what compat chose, and, from inside
vLLM's worker process (collective_rpc, workers spawned so nothing is inherited by fork), whether the compat
plugin set compat up there.

    python benchmarks/vllm_generate.py --out DIR [--prompts 256] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_checkpoint(path: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=4096, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048,
                      torch_dtype="bfloat16", tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(path, safe_serialization=True)


CHILD = r'''
import json, os, sys, time
use_compat = sys.argv[2] == "1"
kwargs = {"dtype": "bfloat16"}
if use_compat:
    import compat
    rep = compat.setup()
    kwargs = compat.vllm_kwargs()
from vllm import LLM, SamplingParams
llm = LLM(model=sys.argv[1], skip_tokenizer_init=True, gpu_memory_utilization=0.5, max_model_len=1024,
          seed=0, **kwargs)
n, m = int(sys.argv[3]), int(sys.argv[4])
prompts = [{"prompt_token_ids": [(7 * i + j) % 4000 + 10 for j in range(32)]} for i in range(n)]
sp = SamplingParams(max_tokens=m, ignore_eos=True, temperature=0.8, detokenize=False)
llm.generate(prompts[:8], sp)  # warm-up (compile, cuda graphs)
best = None
for _ in range(3):
    t = time.perf_counter()
    outs = llm.generate(prompts, sp)
    dt = time.perf_counter() - t
    toks = sum(len(o.outputs[0].token_ids) for o in outs)
    best = max(best or 0, toks / dt)
def probe(*_worker):  # collective_rpc passes the worker itself
    import os, sys
    c = sys.modules.get("compat")
    cur = c.current() if c else None
    return {"pid": os.getpid(), "compat_imported": c is not None,
            "compat_set_up": cur is not None,
            "profile": cur.resolved.profile.name if cur else None,
            "VLLM_ATTENTION_BACKEND": os.environ.get("VLLM_ATTENTION_BACKEND")}
try:
    workers = llm.collective_rpc(probe)
except Exception as exc:
    workers = [f"collective_rpc failed: {exc!r}"]
res = {"tokens_per_s": best, "worker": workers, "parent_pid": os.getpid(), "kwargs": kwargs}
if use_compat:
    res["compat_profile"] = rep.as_dict()["profile"]
print("RESULT " + json.dumps(res, default=str))
'''

BACKEND_RE = re.compile(r"Using (?:AttentionBackendEnum\.|_Backend\.)?([A-Z_0-9]+) (?:attention )?backend")


def run_child(ckpt: Path, use_compat: bool, n: int, m: int, timeout: float) -> dict:
    env = dict(os.environ, VLLM_WORKER_MULTIPROC_METHOD="spawn", PYTHONUNBUFFERED="1")
    if not use_compat:  # keep the installed compat plugin out of the baseline (vLLM applies VLLM_PLUGINS itself)
        env["VLLM_PLUGINS"] = "lora_filesystem_resolver"
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CHILD, str(ckpt), "1" if use_compat else "0", str(n), str(m)],
                       capture_output=True, text=True, env=env, timeout=timeout)
    log = p.stdout + p.stderr
    out = {"returncode": p.returncode, "wall_s": round(time.perf_counter() - t, 1),
           "backends_logged": sorted(set(BACKEND_RE.findall(log))), "log_tail": log[-3000:]}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            out.update(json.loads(line[7:]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--timeout", type=float, default=240)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "vllm_generate", "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        import importlib.metadata as md

        import torch

        doc.update(device=torch.cuda.get_device_name(0), torch=torch.__version__, vllm=md.version("vllm"))
        ckpt = Path("/tmp/compat-tiny-llama")
        if not ckpt.exists():
            build_checkpoint(ckpt)
        doc["without_compat"] = run_child(ckpt, False, args.prompts, args.max_tokens, args.timeout)
        doc["with_compat"] = run_child(ckpt, True, args.prompts, args.max_tokens, args.timeout)
        a, b = doc["without_compat"].get("tokens_per_s"), doc["with_compat"].get("tokens_per_s")
        if a and b:
            doc["overhead_fraction"] = round(1 - b / a, 4)
        chosen = (doc["with_compat"].get("compat_profile") or {}).get("attention_backend")
        doc["profile_backend"] = chosen
        doc["backend_used_matches_profile"] = bool(chosen) and chosen in doc["with_compat"]["backends_logged"]
    except Exception as exc:  # always leave a record of how far it got
        doc["error"] = f"{type(exc).__name__}: {exc}"
    path = out / f"vllm-generate-{datetime.now(timezone.utc):%Y-%m-%d}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k not in ("without_compat", "with_compat")}, indent=2))


if __name__ == "__main__":
    main()
