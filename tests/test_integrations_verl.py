"""`python -m compat verl-overrides`: the overrides a V100 / H100 / old-vLLM machine needs, in both formats."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hardware"


def machine(tmp_path, gpu: str, cc: str, vllm=None, flash_attn=None, driver="535.104.05"):
    pk = {"torch": "2.5.1+cu124", "transformers": "4.49.0"}
    if vllm:
        pk["vllm"] = vllm
    if flash_attn:
        pk["flash-attn"] = flash_attn
    text = (f'[driver]\nversion = "{driver}"\ncuda = "12.2"\n[[gpus]]\nname = "{gpu}"\ncompute_capability = "{cc}"\n'
            f"memory_mib = 32768\ncount = 8\n[packages]\n" + "".join(f'{k} = "{v}"\n' for k, v in pk.items()))
    p = tmp_path / f"{gpu.replace(' ', '_')}-{vllm}.toml"
    p.write_text(text)
    return str(p)


@pytest.fixture(autouse=True)
def _no_compat_env(monkeypatch):
    for var in ("COMPAT_HARDWARE", "COMPAT_AUTOLOAD", "COMPAT_RAY_EXPORTED"):
        monkeypatch.delenv(var, raising=False)


def cli(*args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("COMPAT_", "NCCL_", "VLLM_"))}
    e["PYTHONPATH"] = str(ROOT)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "compat", "verl-overrides", *args], capture_output=True,
                          text=True, env=e, timeout=120)


def overrides_of(stdout: str):
    return [ln for ln in stdout.splitlines() if ln and not ln.startswith("#")]


def as_dict(lines):
    return {ln.split("=", 1)[0].lstrip("+"): ln.split("=", 1)[1] for ln in lines}


def test_v100_with_vllm_072_needs_no_hand_edits(tmp_path):
    proc = cli("--hardware", machine(tmp_path, "Tesla V100-SXM2-32GB", "7.0", vllm="0.7.2"))
    assert proc.returncode == 0, proc.stderr
    o = as_dict(overrides_of(proc.stdout))
    assert o["actor_rollout_ref.rollout.dtype"] == "float16"                    # vLLM refuses bf16 below sm80
    assert o["actor_rollout_ref.model.override_config.attn_implementation"] == "sdpa"
    assert o["critic.model.override_config.attn_implementation"] == "sdpa"
    assert o["actor_rollout_ref.model.use_remove_padding"] == "False"           # flash-attn varlen path
    assert o["actor_rollout_ref.rollout.enforce_eager"] == "False"              # vLLM >= 0.7: CUDA graphs
    assert o["actor_rollout_ref.rollout.free_cache_engine"] == "False"
    assert o["ray_kwargs.ray_init.runtime_env.env_vars.VLLM_ATTENTION_BACKEND"] == "'XFORMERS'"
    assert o["ray_kwargs.ray_init.runtime_env.worker_process_setup_hook"] == "compat.integrations.ray.worker_setup"
    comments = "\n".join(ln for ln in proc.stdout.splitlines() if ln.startswith("#"))
    for caveat in ("prefix caching is incompatible with sleep mode", "num_scheduler_step > 1", "n > 1"):
        assert caveat in comments


def test_added_keys_use_plus_plus_and_declared_keys_plain(tmp_path):
    lines = overrides_of(cli("--hardware", machine(tmp_path, "Tesla V100-SXM2-32GB", "7.0", vllm="0.7.2")).stdout)
    declared = ("actor_rollout_ref.rollout.", "actor_rollout_ref.model.use_remove_padding",
                "critic.model.use_remove_padding")
    for ln in lines:
        key = ln.split("=", 1)[0]
        if key.lstrip("+").startswith(declared):
            assert not key.startswith("+"), ln      # keys verl's ppo_trainer.yaml declares: plain override
        else:
            assert key.startswith("++"), ln         # override_config.*, ray_init.runtime_env.*: add or override


def test_old_vllm_gets_no_cuda_graph_pair(tmp_path):
    proc = cli("--hardware", machine(tmp_path, "Tesla V100-SXM2-32GB", "7.0", vllm="0.6.3"))
    o = as_dict(overrides_of(proc.stdout))
    assert "actor_rollout_ref.rollout.enforce_eager" not in o
    assert "actor_rollout_ref.rollout.free_cache_engine" not in o
    assert "no CUDA-graph pair" in proc.stdout


def test_no_vllm_installed_leaves_rollout_release_settings(tmp_path):
    proc = cli("--hardware", machine(tmp_path, "Tesla V100-SXM2-32GB", "7.0"))
    o = as_dict(overrides_of(proc.stdout))
    assert o["actor_rollout_ref.rollout.dtype"] == "float16"
    assert "actor_rollout_ref.rollout.enforce_eager" not in o


def test_h100_with_flash_attn_keeps_padding_free_path():
    proc = cli("--hardware", str(FIXTURES / "h100-vllm0110.toml"))
    assert proc.returncode == 0, proc.stderr
    o = as_dict(overrides_of(proc.stdout))
    assert o["actor_rollout_ref.rollout.dtype"] == "bfloat16"
    assert o["actor_rollout_ref.model.override_config.attn_implementation"] == "flash_attention_2"
    assert "actor_rollout_ref.model.use_remove_padding" not in o
    assert o["actor_rollout_ref.rollout.enforce_eager"] == "False"


def test_args_format_is_one_shell_line_and_comments_go_to_stderr(tmp_path):
    hw = machine(tmp_path, "Tesla V100-SXM2-32GB", "7.0", vllm="0.7.2")
    proc = cli("--hardware", hw, "--format", "args")
    assert proc.returncode == 0
    assert proc.stdout.count("\n") == 1
    assert shlex.split(proc.stdout) == overrides_of(cli("--hardware", hw).stdout)
    assert "prefix caching" in proc.stderr


def test_user_env_value_is_passed_to_ray_workers_as_theirs(tmp_path):
    hw = machine(tmp_path, "Tesla V100-SXM2-32GB", "7.0", vllm="0.7.2")
    proc = cli("--hardware", hw, env={"VLLM_ATTENTION_BACKEND": "TORCH_SDPA"})
    o = as_dict(overrides_of(proc.stdout))
    assert o["ray_kwargs.ray_init.runtime_env.env_vars.VLLM_ATTENTION_BACKEND"] == "'TORCH_SDPA'"
    assert "ray_kwargs.ray_init.runtime_env.env_vars.COMPAT_RAY_EXPORTED" not in o
    assert "passing your value 'TORCH_SDPA'" in proc.stdout


def test_hydra_value_quoting():
    from compat.integrations.verl import hydra_value
    assert hydra_value("XFORMERS") == "XFORMERS"
    assert hydra_value("a,b") == "'a,b'"
    assert hydra_value("null") == "'null'"
    assert hydra_value("it's") == "'it\\'s'"


def test_bad_input_exits_2():
    proc = cli("--hardware", "/nonexistent.toml")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


# --- per-release keys (compat/data/verl.toml) ------------------------------------------------------------------

def test_verl_041_gets_no_attention_key_and_carries_ray_env_through_the_shell(tmp_path):
    proc = cli("--hardware", str(FIXTURES / "rtx4090-old-driver.toml"), "--verl", "0.4.1")
    assert proc.returncode in (0, 1), proc.stderr   # 1: error findings where the env's torch needs a newer driver
    o = as_dict(overrides_of(proc.stdout))
    assert not any("override_config" in k for k in o)        # hard-coded flash_attention_2: the key does nothing
    assert not any(k.startswith("ray_kwargs") for k in o)    # 0.4.1 reads no runtime_env key
    assert o["actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype"] == "bfloat16"
    assert "hard-codes attn_implementation" in proc.stdout and "transformers patch set" in proc.stdout
    assert "fixed runtime_env" in proc.stdout and "COMPAT_AUTOLOAD=1" in proc.stdout
    assert "NCCL_P2P_DISABLE=1" in proc.stdout


def test_verl_041_v100_trains_fsdp_in_float16_and_loads_the_ref_in_float16(tmp_path):
    o = as_dict(overrides_of(cli("--hardware", str(FIXTURES / "v100-sxm2.toml"), "--verl", "0.4.1").stdout))
    for role in ("actor_rollout_ref.actor", "actor_rollout_ref.ref"):
        assert o[f"{role}.fsdp_config.mixed_precision.param_dtype"] == "float16"
    assert o["critic.model.fsdp_config.mixed_precision.param_dtype"] == "float16"
    assert o["actor_rollout_ref.ref.fsdp_config.model_dtype"] == "float16"   # 0.4.x loads the ref in bf16


def test_attention_key_from_061_on_and_runtime_env_from_060_on():
    hw = str(FIXTURES / "rtx4090-old-driver.toml")
    o60 = as_dict(overrides_of(cli("--hardware", hw, "--verl", "0.6.0").stdout))
    o61 = as_dict(overrides_of(cli("--hardware", hw, "--verl", "0.6.1").stdout))
    assert "actor_rollout_ref.model.override_config.attn_implementation" not in o60
    assert o61["actor_rollout_ref.model.override_config.attn_implementation"] == "sdpa"
    for o in (o60, o61):
        assert o["ray_kwargs.ray_init.runtime_env.env_vars.NCCL_P2P_DISABLE"] == "'1'"   # a string for Ray
    assert o61["actor_rollout_ref.actor.fsdp_config.dtype"] == "bfloat16"      # 0.6.1-0.7.x: fsdp_config.dtype
    o91 = as_dict(overrides_of(cli("--hardware", hw, "--verl", "0.9.1").stdout))
    assert o91["critic.fsdp.mixed_precision.param_dtype"] == "bfloat16"        # 0.8+: critic.fsdp engine config


def test_unknown_newer_and_between_releases_use_the_nearest_older_entry():
    from compat.integrations.verl import release_for, releases
    newest = releases()[-1].version
    rel, note = release_for("99.0.0")
    assert rel.version == newest and "newer than compat's table" in (note or "")
    rel, note = release_for("0.6.2")
    assert rel.version == "0.6.1" and note
    rel, note = release_for("0.4.1")
    assert rel.version == "0.4.1" and note is None


@pytest.mark.parametrize("bad", ["0.3.0", "not-a-version"])
def test_bad_or_too_old_verl_exits_2(bad):
    proc = cli("--hardware", str(FIXTURES / "v100-sxm2.toml"), "--verl", bad)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_hydra_value_never_leaves_a_number_or_bool_bare():
    from compat.integrations.verl import hydra_value, hydra_value_str
    for v in ("1", "0", "1.5", "1e3", "true", "False", "null", "inf", "nan"):
        assert hydra_value(v).startswith("'"), v
    assert hydra_value_str("XFORMERS") == "'XFORMERS'"


def test_every_verl_table_entry_is_sourced():
    from compat._toml import load_data
    table = load_data("verl")
    assert table["schema"] == 1
    for rel in table["release"]:
        for key in ("source", "reason", "attn_source", "ray_source", "fsdp_dtype_source", "rollout_dtype_source",
                    "remove_padding_source", "loss_scaling_source"):
            assert rel[key].strip(), (rel["version"], key)
        assert rel["ray_runtime_env"] in ("hard-coded", "ray_kwargs")
        assert set(rel["fsdp_dtype"]) == {"actor", "ref", "critic"}
        assert rel["attn_honoured"] == bool(rel.get("attn_keys"))
