"""One GRPO step through verl 0.5.0's own worker, in one process (no Ray cluster, no vLLM): run by run.sh.

    python grpo_step.py --model DIR --out FILE.json --variant compat|compat-no-attn-set|no-compat [--cpu]

verl code that runs (verl 0.5.0 wheel): verl/workers/fsdp_workers.py ActorRolloutRefWorker(role="actor_rollout"),
built from verl's own ppo_trainer.yaml composed with Hydra; init_model() (its _build_model_optimizer, which
hard-codes AutoConfig.from_pretrained(..., attn_implementation="flash_attention_2") at l.253-254, FSDP wrap,
optimizer); generate_sequences() through verl/workers/rollout/hf_rollout.py HFRollout (rollout.name=hf, n samples
per prompt); compute_log_prob(); verl/trainer/ppo/core_algos.py compute_grpo_outcome_advantage(); update_actor()
(verl/workers/actor/dp_actor.py update_policy: PPO clipped loss, grad clip, optimizer step).
What is this script's own: the random prompts, the toy reward (share of response tokens equal to one token id,
as an outcome score on the last response token) and the response mask, which ray_trainer.py computes the same
way (attention_mask[:, -response_length:]). Torch distributed is world size 1 from RANK/WORLD_SIZE/MASTER_* env.

Variants: compat = compat.setup() first + compat's `verl-overrides` keys; compat-no-attn-set = the same with
COMPAT_DISABLE_PATCHES=transformers_attn (set by run.sh); no-compat = neither. Without the attention set verl's
flash_attention_2 request fails on a machine without flash-attn ("FlashAttention2 has been toggled on, but it cannot
be used"); that error is the expected outcome of those variants and is recorded, not raised.
--cpu (dry run off the device): gloo process group and verl on the CPU; the one stand-in is for the CUDA device
queries verl logs (torch.cpu has no memory_allocated/max_memory_allocated/mem_get_info/get_device_name: they read
0 / "CPU" there). The device run
has no stand-in.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

FLASH_ERROR = "FlashAttention2 has been toggled on, but it cannot be used"
T0 = time.time()


def log(msg: str) -> None:
    print(f"[grpo_step {time.time() - T0:6.1f}s] {msg}", flush=True)


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def compat_overrides() -> list[str]:
    """What a user passes to verl: `python -m compat verl-overrides --format args`, split as bash splits it."""
    proc = subprocess.run([sys.executable, "-m", "compat", "verl-overrides", "--format", "args"],
                          capture_output=True, text=True, timeout=120)
    log(f"compat verl-overrides (exit {proc.returncode}):\n{proc.stderr.strip()}\n{proc.stdout.strip()}")
    if proc.returncode not in (0, 1):
        raise SystemExit(f"compat verl-overrides failed: {proc.stderr.strip()}")
    return shlex.split(proc.stdout)


def compose(overrides: list[str]):
    """verl's own ppo_trainer.yaml (the installed release's), composed with Hydra's compose API."""
    import verl
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    config_dir = str(Path(verl.__file__).resolve().parent / "trainer" / "config")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=overrides)


def count_sdpa() -> dict:
    """Count calls of torch's scaled_dot_product_attention: the proof that the model's attention ran through sdpa
    (transformers' sdpa_attention_forward looks the function up on torch.nn.functional at every call)."""
    import torch.nn.functional as F

    counter: dict = {"calls": 0, "query_dtypes": set()}
    original = F.scaled_dot_product_attention

    def counted(*args, **kwargs):
        counter["calls"] += 1
        q = args[0] if args else kwargs.get("query")
        counter["query_dtypes"].add(str(getattr(q, "dtype", None)))
        return original(*args, **kwargs)

    F.scaled_dot_product_attention = counted
    return counter


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--variant", choices=["compat", "compat-no-attn-set", "no-compat"], required=True)
    ap.add_argument("--cpu", action="store_true", help="dry run: gloo + CPU (the device run uses cuda/nccl)")
    ap.add_argument("--strategy", choices=["fsdp", "fsdp2"], default="fsdp",
                    help="verl's actor.strategy: fsdp = FSDP1 (0.5.0's default), fsdp2 = fully_shard; the CPU dry "
                         "run needs fsdp2 (FSDP1 with verl's sync_module_states=True wants a GPU)")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=4, help="samples per prompt (GRPO group size)")
    ap.add_argument("--length", type=int, default=16, help="prompt and response length")
    args = ap.parse_args()
    result: dict = {"variant": args.variant, "cpu": args.cpu, "strategy": args.strategy}
    os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"})
    os.environ.setdefault("MASTER_PORT", free_port())

    overrides: list[str] = []
    if args.variant != "no-compat":
        import compat

        report = compat.setup()
        result["compat"] = {"profile": report.resolved.as_dict(),
                            "gpus": [g.name for g in report.environment.hardware.gpus],
                            "disabled_patches": os.environ.get("COMPAT_DISABLE_PATCHES", "")}
        overrides = compat_overrides()
        result["compat_overrides"] = overrides

    import torch

    sdpa = count_sdpa()
    from importlib.metadata import version

    import numpy as np
    import transformers
    import verl
    from verl import DataProto

    result["versions"] = {p: version(p) for p in ("verl", "ray", "torch", "transformers", "tensordict", "peft",
                                                  "accelerate", "hydra-core", "omegaconf", "numpy")}
    result["versions"]["python"] = sys.version.split()[0]
    result["device"] = "cpu" if args.cpu else torch.cuda.get_device_name(0)
    log(f"verl {verl.__version__} from {verl.__file__}; transformers {transformers.__version__}; "
        f"torch {torch.__version__}; device {result['device']}")
    if args.cpu:
        torch.distributed.init_process_group("gloo", rank=0, world_size=1)   # verl would ask for nccl
        for name in ("memory_allocated", "max_memory_allocated", "memory_reserved", "max_memory_reserved"):
            if not hasattr(torch.cpu, name):                                # stand-in: CUDA memory counters
                setattr(torch.cpu, name, lambda *a, **k: 0)
        if not hasattr(torch.cpu, "mem_get_info"):
            torch.cpu.mem_get_info = lambda *a, **k: (0, 0)
        if not hasattr(torch.cpu, "get_device_name"):                      # verl's MFU counter asks for it
            torch.cpu.get_device_name = lambda *a, **k: "CPU"
        if not hasattr(torch.cpu, "empty_cache"):
            torch.cpu.empty_cache = lambda: None
    else:
        torch.cuda.set_device(0)

    L = args.length
    cfg = compose(overrides + [
        f"actor_rollout_ref.model.path={args.model}",
        "algorithm.adv_estimator=grpo",
        "actor_rollout_ref.rollout.name=hf",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        f"actor_rollout_ref.rollout.n={args.n}",
        "actor_rollout_ref.rollout.do_sample=True",
        "actor_rollout_ref.rollout.temperature=1.0",
        f"data.max_prompt_length={L}",
        f"data.max_response_length={L}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={args.prompts}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={args.prompts * args.n // 2}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={args.prompts * args.n}",
        "actor_rollout_ref.actor.use_kl_loss=False",
        "actor_rollout_ref.actor.entropy_coeff=0",
        "actor_rollout_ref.actor.optim.lr=1e-3",
        "actor_rollout_ref.actor.use_dynamic_bsz=False",
        f"actor_rollout_ref.actor.strategy={args.strategy}",
    ])
    arr = cfg.actor_rollout_ref
    result["config"] = {"rollout.name": arr.rollout.name, "rollout.n": arr.rollout.n,
                        "use_remove_padding": arr.model.get("use_remove_padding"),
                        "actor.strategy": arr.actor.strategy,
                        "param_dtype": str(arr.actor.fsdp_config.get("mixed_precision", {}).get("param_dtype"))}

    from verl.trainer.ppo import core_algos
    from verl.utils.model import compute_position_id_with_mask
    from verl.workers.fsdp_workers import ActorRolloutRefWorker

    worker = ActorRolloutRefWorker(config=arr, role="actor_rollout")
    log("ActorRolloutRefWorker built; init_model()")
    try:
        worker.init_model()
    except Exception as exc:  # noqa: BLE001 - without compat's set this is the expected outcome
        chain = [exc] + [e for e in (exc.__cause__, exc.__context__) if e is not None]
        result["error"] = " <- ".join(f"{type(e).__name__}: {e}" for e in chain)
        result["flash_attn_error"] = any(FLASH_ERROR in str(e) for e in chain)
        result["trace"] = traceback.format_exc()[-3000:]
        log(f"init_model failed: {result['error']}")
        return finish(args, result)

    model = getattr(worker, "actor_module", worker.actor_module_fsdp)   # the HF model (FSDP2 shards it in place)
    fsdp = worker.actor_module_fsdp
    mp = getattr(fsdp, "mixed_precision", None)                             # FSDP1
    if mp is None and hasattr(fsdp, "_get_fsdp_state"):                     # FSDP2 (fully_shard)
        mp = getattr(fsdp._get_fsdp_state(), "_mp_policy", None)
    result["model"] = {
        "class": type(model).__name__,
        "attn_implementation": model.config._attn_implementation,
        "param_dtype_stored": str(next(fsdp.parameters()).dtype),
        "fsdp_param_dtype": str(getattr(mp, "param_dtype", None)),
        "fsdp": type(fsdp).__name__,
        "params": sum(p.numel() for p in fsdp.parameters()),
    }
    log(f"model: {result['model']}")

    # random prompts, left-padded as verl's dataset makes them
    g = torch.Generator().manual_seed(0)
    tok = worker.tokenizer
    B = args.prompts
    ids = torch.randint(0, 60, (B, L), generator=g)
    attn = torch.ones(B, L, dtype=torch.long)
    for i in range(B):                             # prompt i has i pad tokens on the left
        attn[i, :i] = 0
        ids[i, :i] = tok.pad_token_id
    prompts = DataProto.from_dict(tensors={"input_ids": ids, "attention_mask": attn,
                                           "position_ids": compute_position_id_with_mask(attn)},
                                  meta_info={"do_sample": True})
    torch.manual_seed(0)                           # the sampling in generate
    t = time.time()
    sdpa_before = sdpa["calls"]
    gen = worker.generate_sequences(prompts)
    result["timing_s"] = {"generate": round(time.time() - t, 3)}
    result["sdpa_calls_generate"] = sdpa["calls"] - sdpa_before
    responses = gen.batch["responses"]
    R = responses.shape[1]
    response_mask = gen.batch["attention_mask"][:, -R:]
    log(f"generated {tuple(responses.shape)} (prompts x n = {B} x {args.n}); sdpa calls {result['sdpa_calls_generate']}")

    # toy outcome reward: share of valid response tokens equal to token id 7, on the last valid response token
    target = 7
    hits = ((responses == target) & response_mask.bool()).sum(-1).float()
    valid = response_mask.sum(-1).clamp(min=1)
    score = hits / valid
    token_level_rewards = torch.zeros(responses.shape, dtype=torch.float32)
    last = (response_mask.sum(-1) - 1).clamp(min=0)
    token_level_rewards[torch.arange(len(last)), last] = score
    uid = np.repeat(np.arange(B), args.n).astype(object)       # HFRollout repeats each prompt n times in place
    advantages, returns = core_algos.compute_grpo_outcome_advantage(
        token_level_rewards=token_level_rewards, response_mask=response_mask.float(), index=uid)
    gen.batch["response_mask"] = response_mask
    gen.batch["token_level_rewards"] = token_level_rewards
    gen.batch["advantages"] = advantages
    gen.batch["returns"] = returns
    result["reward"] = {"mean": score.mean().item(), "max": score.max().item(),
                        "adv_abs_mean": advantages.abs().mean().item()}

    t = time.time()
    old = worker.compute_log_prob(gen)
    result["timing_s"]["compute_log_prob"] = round(time.time() - t, 3)
    gen = gen.union(old)
    gen.meta_info["temperature"] = arr.rollout.temperature
    gen.meta_info["global_token_num"] = torch.sum(gen.batch["attention_mask"], dim=-1).tolist()
    t = time.time()
    sdpa_before = sdpa["calls"]
    out = worker.update_actor(gen)
    result["timing_s"]["update_actor"] = round(time.time() - t, 3)
    result["sdpa_calls_update"] = sdpa["calls"] - sdpa_before
    result["sdpa_query_dtypes"] = sorted(sdpa["query_dtypes"])
    if args.variant != "no-compat":
        from compat.patches.engine import applied_sets
        result["compat"]["applied_sets"] = list(applied_sets())
    metrics = {k: (float(np.mean(v)) if isinstance(v, list) else float(v)) for k, v in out.meta_info["metrics"].items()}
    result["metrics"] = metrics

    # the step changed the policy: log-probs of the same responses before and after update_actor
    after = worker.compute_log_prob(gen)
    delta = (after.batch["old_log_probs"] - old.batch["old_log_probs"]) * response_mask
    result["logprob_change_abs_mean"] = (delta.abs().sum() / response_mask.sum()).item()
    log(f"metrics: pg_loss {metrics.get('actor/pg_loss')}, grad_norm {metrics.get('actor/grad_norm')}, "
        f"lr {metrics.get('actor/lr')}, logprob change {result['logprob_change_abs_mean']:.3e}")
    result["ok"] = True
    return finish(args, result)


def finish(args, result: dict) -> int:
    """Write the result; exit 0 when the variant did what it should: compat trains, the others hit the flash error."""
    result["wall_s"] = round(time.time() - T0, 2)
    expected = result.get("ok", False) if args.variant == "compat" else result.get("flash_attn_error", False)
    result["as_expected"] = bool(expected)
    Path(args.out).write_text(json.dumps(result, indent=1, default=str) + "\n")
    log(f"wrote {args.out}")
    try:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001
        pass
    return 0 if expected else 1


if __name__ == "__main__":
    sys.exit(main())
