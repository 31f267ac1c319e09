"""Helpers for tests/verl: the machines, compat's overrides as a shell passes them, verl's config composed."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "hardware"
HERE = Path(__file__).resolve().parent
# the five machines of issue 12: fp16-only GPUs without flash-attn, an Ada card on an old driver, Ampere, Hopper
MACHINES = {"v100": "v100-sxm2.toml", "t4": "t4-driver470.toml", "rtx4090-old-driver": "rtx4090-old-driver.toml",
            "a100": "a100-sxm4.toml", "h100": "h100-sxm.toml"}
FP16_ONLY = ("v100", "t4")

def verl_version() -> str:
    from importlib.metadata import version
    return version("verl")


def table_entry():
    from compat.integrations.verl import release_for
    rel, _ = release_for(verl_version())
    return rel


def table_row() -> dict:
    """This release's raw row of compat/data/verl.toml (its bert_padding_* facts are for tests and docs only)."""
    from compat import versions
    from compat._toml import load_data

    v = versions.release(verl_version())
    return next(r for r in load_data("verl")["release"] if versions.release(r["version"]) == v)


def worker_modules() -> list:
    """The worker modules of this release that take the flash_attn.bert_padding import at module level (table:
    bert_padding_source); 0.7.0+: the modules that import it lazily."""
    from compat import versions

    if versions.parse(verl_version()) < versions.parse("0.6.0"):
        return ["verl.workers.actor.dp_actor", "verl.workers.critic.dp_critic"]
    if versions.parse(verl_version()) < versions.parse("0.7.0"):
        return ["verl.workers.roles.utils.padding", "verl.workers.actor.dp_actor"]
    return ["verl.utils.attention_utils", "verl.workers.utils.padding"]  # 0.7.0+: dp_actor.py is gone in 0.8.0


def clean_env(**extra: str) -> Dict[str, str]:
    """This process's environment without compat's, NCCL's or vLLM's variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COMPAT_", "NCCL_", "VLLM_", "RAY_")) or k == "COMPAT_MATRIX_ENV"}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def compat_overrides(machine: str, env: Optional[Dict[str, str]] = None) -> List[str]:
    """What `compat verl-overrides --format args` prints for this machine and the installed verl, split as a shell
    splits it (the user runs `python -m verl.trainer.main_ppo $(...)`, here: a bash word list)."""
    proc = subprocess.run([sys.executable, "-m", "compat", "verl-overrides", "--format", "args", "--hardware",
                           str(FIXTURES / MACHINES[machine])], capture_output=True, text=True,
                          env=env or clean_env(), timeout=120)
    assert proc.returncode in (0, 1), proc.stderr   # 1: the report has error findings (T4 on driver 470 vs cu124)
    words = subprocess.run(["bash", "-c", 'for w in ' + proc.stdout.strip() + '; do printf "%s\\0" "$w"; done'],
                           capture_output=True, text=True, check=True).stdout
    out = [w for w in words.split("\0") if w]
    assert out == shlex.split(proc.stdout)
    return out


def config_dir() -> str:
    import verl
    return str(Path(verl.__file__).resolve().parent / "trainer" / "config")


def compose(overrides: List[str]):
    """verl's own ppo_trainer.yaml composed through Hydra's compose API with these overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=list(overrides))
