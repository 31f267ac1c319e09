"""verl's own ppo_trainer.yaml, composed by Hydra (compose API) with `compat verl-overrides --format args` as a shell
splits it, for the five machines of issue 12; and the same config without compat, to show what breaks.

What is asserted is read the way the installed verl release reads it (keys: compat/data/verl.toml, checked here
against the real yaml): the rollout dtype, the FSDP param dtype of actor, ref and critic (through verl's own
PrecisionType), the attention key where the release honours it, use_remove_padding, and the runtime_env run_ppo hands
to ray.init, validated by Ray's own RuntimeEnv.
"""
from __future__ import annotations

import pytest

from vhelp import FP16_ONLY, MACHINES, compat_overrides, compose, table_entry, verl_version


def _select(cfg, key: str):
    from omegaconf import OmegaConf
    return OmegaConf.select(cfg, key.lstrip("+"), default=None)


def fsdp_param_dtype(cfg, key: str):
    """The FSDP param dtype verl builds for the role whose table key is `key`, resolved as that release does:
    mixed_precision.param_dtype when a mixed_precision dict is there, else fsdp_config.dtype where the release reads
    it (0.6.1-0.7.x actor/ref), else bfloat16 (verl/workers/fsdp_workers.py, verl/workers/engine/fsdp)."""
    from verl.utils.torch_dtypes import PrecisionType
    import torch

    key = key.lstrip("+")
    fsdp = key.rsplit(".mixed_precision.", 1)[0] if ".mixed_precision." in key else key.rsplit(".", 1)[0]
    mp = _select(cfg, f"{fsdp}.mixed_precision")
    if mp is not None:
        return PrecisionType.to_dtype(mp.get("param_dtype", "bf16"))
    if key.endswith(".dtype") and not key.endswith("model_dtype"):
        return PrecisionType.to_dtype(_select(cfg, key))
    return torch.bfloat16


def merged_runtime_env(cfg):
    """run_ppo's runtime_env for this config: verl's defaults merged with ray_kwargs.ray_init.runtime_env
    (verl/trainer/main_ppo.py run_ppo, 0.6.0+), as a plain dict, as ray.init receives it."""
    import inspect

    from omegaconf import OmegaConf
    from verl.trainer import constants_ppo

    fn = constants_ppo.get_ppo_ray_runtime_env
    default = fn(cfg) if inspect.signature(fn).parameters else fn()
    ray_init = cfg.ray_kwargs.get("ray_init", {})
    merged = OmegaConf.merge(default, ray_init.get("runtime_env", {}))
    return OmegaConf.to_container(OmegaConf.create({**ray_init, "runtime_env": merged}))["runtime_env"]


def test_table_entry_matches_the_installed_release_yaml():
    """Every plain (declared) key compat writes for this release exists in its composed config."""
    rel = table_entry()
    cfg = compose([])
    plain = [rel.rollout_dtype, *rel.remove_padding] + [k for _, k in rel.fsdp_dtype if not k.startswith("+")]
    for key in plain:
        assert _select(cfg, key) is not None, f"verl {verl_version()}: {key} is not declared in ppo_trainer.yaml"
    assert _select(cfg, "actor_rollout_ref.model.override_config") is not None
    if rel.ray_runtime_env == "ray_kwargs":
        assert _select(cfg, "ray_kwargs.ray_init") is not None
    else:
        assert _select(cfg, "ray_kwargs") is None and _select(cfg, "ray_init") is not None


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_compat_overrides_compose_into_what_the_machine_needs(machine):
    import torch

    rel = table_entry()
    cfg = compose(compat_overrides(machine))
    want = torch.float16 if machine in FP16_ONLY else torch.bfloat16
    assert cfg.actor_rollout_ref.rollout.dtype == str(want).split(".")[1]
    for role, key in rel.fsdp_dtype:
        assert fsdp_param_dtype(cfg, key) == want, (role, key)
    for key in rel.remove_padding:
        assert _select(cfg, key) is False
    attn = _select(cfg, "actor_rollout_ref.model.override_config.attn_implementation")
    assert attn == ("sdpa" if rel.attn_honoured else None)   # no flash-attn in this env: the profile says sdpa
    if rel.attn_honoured:
        assert _select(cfg, "critic.model.override_config.attn_implementation") == "sdpa"
    if rel.ray_runtime_env == "ray_kwargs":
        from ray.runtime_env import RuntimeEnv

        env = merged_runtime_env(cfg)
        RuntimeEnv(**env)                                       # Ray's own validation: Dict[str, str]
        assert env["worker_process_setup_hook"] == "compat.integrations.ray.worker_setup"
        assert all(isinstance(v, str) for v in env["env_vars"].values()), env["env_vars"]
        if machine == "rtx4090-old-driver":
            assert env["env_vars"]["NCCL_P2P_DISABLE"] == "1" and env["env_vars"]["NCCL_IB_DISABLE"] == "1"


@pytest.mark.parametrize("machine", FP16_ONLY)
def test_without_compat_fsdp_trains_in_bfloat16_on_fp16_only_gpus(machine):
    """The bug compat's dtype keys fix: verl's defaults keep bfloat16 for every role (and float16 rollout is off)."""
    import torch

    rel = table_entry()
    cfg = compose([])
    assert cfg.actor_rollout_ref.rollout.dtype == "bfloat16"
    for _role, key in rel.fsdp_dtype:
        assert fsdp_param_dtype(cfg, key) == torch.bfloat16


def test_unquoted_env_value_is_an_int_that_ray_rejects():
    """The bug compat's quoting fixes: Hydra reads NCCL_P2P_DISABLE=1 as int 1; Ray refuses a non-str env value."""
    rel = table_entry()
    if rel.ray_runtime_env != "ray_kwargs":
        cfg = compose([])
        assert _select(cfg, "ray_kwargs") is None   # this release reads no runtime_env key at all (test_ray_workers)
        return
    from ray.runtime_env import RuntimeEnv

    cfg = compose(["++ray_kwargs.ray_init.runtime_env.env_vars.NCCL_P2P_DISABLE=1"])
    env = merged_runtime_env(cfg)
    assert env["env_vars"]["NCCL_P2P_DISABLE"] == 1
    with pytest.raises(TypeError, match=r"must be of type Dict\[str, str\]"):
        RuntimeEnv(**env)
