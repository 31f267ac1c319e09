"""Child process of test_model_loading.py: build verl's actor, ref and critic HF models the way the installed verl
release does, from its ppo_trainer.yaml composed with the overrides in argv[1] (JSON list), for the tiny model at
argv[2]; writes {role: {"attn", "dtype"} or {"error"}} to argv[3]. argv[4] == "worker-hook": call compat's Ray
worker_setup hook first, as verl's Ray workers do with compat's runtime_env (0.6.0+); COMPAT_AUTOLOAD=1 in the
environment is the path for 0.4.x/0.5.x (the .pth sets compat up at interpreter start).

verl's own builders run: ActorRolloutRefWorker._build_model_optimizer / CriticWorker._build_critic_model_optimizer
(verl/workers/fsdp_workers.py, 0.4.x-0.7.x) or HFModelConfig + FSDPEngine._build_module (0.8+). Stand-ins, because
the next steps need a GPU: the builder's `self` is a namespace with the attributes the builder reads (no device
mesh: rank 0 on one process), GPU memory logging is a no-op, and verl's apply_monkey_patch (called right after
from_pretrained, before FSDP wrapping) hands the model back instead of patching it for flash-attn varlen.
"""
import inspect
import json
import sys
import traceback
import types

if len(sys.argv) > 4 and sys.argv[4] == "worker-hook":
    from compat.integrations.ray import worker_setup
    worker_setup()

from omegaconf import OmegaConf  # noqa: E402

from vhelp import compose  # noqa: E402

overrides, model_path, out_path = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
cfg = compose(overrides + [f"actor_rollout_ref.model.path={model_path}", f"critic.model.path={model_path}"])


class Built(Exception):
    pass


def stop(model=None, *args, **kwargs):
    raise Built(model if model is not None else kwargs.get("model"))


def call(fn, **kwargs):
    params = inspect.signature(fn).parameters
    return fn(**{k: v for k, v in kwargs.items() if k in params})


def legacy(role):
    from verl.workers import fsdp_workers as fw

    fw.apply_monkey_patch = stop
    fw.log_gpu_memory_usage = lambda *a, **k: None
    arr = cfg.actor_rollout_ref
    if role == "critic":
        stub = types.SimpleNamespace(config=cfg.critic, rank=0, device_mesh=None, _is_lora=False,
                                     ulysses_sequence_parallel_size=1, _is_offload_param=False)
        return call(fw.CriticWorker._build_critic_model_optimizer, self=stub, config=cfg.critic)
    stub = types.SimpleNamespace(config=arr, _is_actor=role == "actor", _is_ref=role == "ref", _is_rollout=False,
                                 rank=0, device_mesh=None, _is_lora=False, ulysses_sequence_parallel_size=1,
                                 _is_offload_param=False, use_orig_params=False)
    fsdp = arr.actor.fsdp_config if role == "actor" else arr.ref.fsdp_config
    return call(fw.ActorRolloutRefWorker._build_model_optimizer, self=stub, model_path=model_path, fsdp_config=fsdp,
                optim_config=arr.actor.optim if role == "actor" else None,
                override_model_config=OmegaConf.to_container(arr.model.get("override_config", {})),
                use_remove_padding=arr.model.get("use_remove_padding", False), role=role,
                trust_remote_code=False)


def engine(role):
    from verl.utils import omega_conf_to_dataclass
    from verl.workers.engine.fsdp import transformer_impl as ti

    ti.apply_monkey_patch = stop
    model_cfg = cfg.critic.model if role == "critic" else cfg.actor_rollout_ref.model
    fsdp = {"actor": cfg.actor_rollout_ref.actor.fsdp_config, "ref": cfg.actor_rollout_ref.ref.fsdp_config,
            "critic": cfg.critic.get("fsdp")}[role]
    model_config = omega_conf_to_dataclass(model_cfg)
    if role == "critic":  # the trainer builds the critic as a value model (verl/trainer/ppo/ray_trainer.py)
        object.__setattr__(model_config, "model_type", "value_model")
    engine_config = omega_conf_to_dataclass(fsdp)
    if role == "ref":
        object.__setattr__(engine_config, "forward_only", True)
    stub = types.SimpleNamespace(model_config=model_config, engine_config=engine_config, device_mesh=None,
                                 use_remove_padding=model_config.use_remove_padding,
                                 ulysses_sequence_parallel_size=1, rank=0)
    return ti.FSDPEngine._build_module(stub)


try:
    import verl.workers.fsdp_workers  # noqa: F401
    build = legacy
except ImportError:
    build = engine

result = {}
for role in ("actor", "ref", "critic"):
    try:
        build(role)
        result[role] = {"error": "the builder returned without reaching apply_monkey_patch"}
    except Built as b:
        m = b.args[0]
        result[role] = {"attn": m.config._attn_implementation, "dtype": str(next(m.parameters()).dtype)}
    except Exception as exc:  # noqa: BLE001 - the error is the result
        chain = [exc] + ([exc.__cause__] if exc.__cause__ else []) + ([exc.__context__] if exc.__context__ else [])
        result[role] = {"error": " <- ".join(f"{type(e).__name__}: {e}" for e in chain),
                        "trace": traceback.format_exc()[-2500:]}
with open(out_path, "w") as f:
    json.dump(result, f)
