"""Ray workers verl starts, on an RTX 4090 with a driver older than 550.40.07 (NCCL P2P must be off), simulated with
COMPAT_HARDWARE: with compat each worker is set up and has the profile's NCCL env; without it, it has neither.

verl's own run_ppo starts a local Ray cluster (CPU) with its own ray.init and starts the TaskRunner slot in it
(tests/verl/ray_driver.py; the TaskRunner is the one stand-in, named there). How compat gets in depends on the
release (compat/data/verl.toml ray_runtime_env):
- "ray_kwargs" (0.6.0+): compat's overrides put the env vars (as strings) and compat's worker_process_setup_hook
  into ray_kwargs.ray_init.runtime_env, which run_ppo merges into ray.init;
- "hard-coded" (0.4.x, 0.5.x): run_ppo's runtime_env is fixed, so the shell that starts verl carries
  `eval "$(python -m compat env)"; export COMPAT_AUTOLOAD=1` (what verl-overrides prints), which the raylet and
  every worker inherit; the .pth sets compat up at worker start.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from vhelp import FIXTURES, HERE, MACHINES, ROOT, clean_env, compat_overrides, table_entry

MACHINE = "rtx4090-old-driver"
pytestmark = pytest.mark.slow


def run_verl(overrides, shell_prefix: str = "", timeout: int = 900):
    """run_ppo in a fresh driver process; returns (proc, what the Probe worker saw or None)."""
    tmp = tempfile.mkdtemp(prefix="rv", dir="/tmp")             # short: Ray's socket paths have a length limit
    out = Path(tmp) / "probe.json"
    env = clean_env(COMPAT_HARDWARE=str(FIXTURES / MACHINES[MACHINE]), RAY_TMPDIR=tmp,
                    PYTHONPATH=f"{ROOT}:{HERE}",
                    # the raylet gives its runtime-env agent 30 s to start (Ray 2.47): too short on a loaded 2-core box
                    RAY_agent_register_timeout_ms="300000")
    cmd = (f"{shell_prefix}exec {shlex.quote(sys.executable)} {shlex.quote(str(HERE / 'ray_driver.py'))} "
           f"{shlex.quote(json.dumps(overrides))} {shlex.quote(str(out))}")
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env, timeout=timeout, cwd=tmp)
    seen = json.loads(out.read_text()) if out.exists() else None
    return proc, seen


def test_worker_started_by_verl_is_set_up_with_the_nccl_env():
    rel = table_entry()
    overrides = compat_overrides(MACHINE)
    prefix = ""
    if rel.ray_runtime_env == "hard-coded":
        assert not any(o.lstrip("+").startswith("ray_kwargs") for o in overrides)   # the release reads none
        prefix = f'eval "$({shlex.quote(sys.executable)} -m compat env)"; export COMPAT_AUTOLOAD=1; '
    else:
        assert "++ray_kwargs.ray_init.runtime_env.env_vars.NCCL_P2P_DISABLE='1'" in overrides
    proc, seen = run_verl(overrides, prefix)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seen is not None, proc.stderr[-3000:]
    assert seen["compat_set_up"] and seen["profile"] == "ada", seen
    assert seen["env"]["NCCL_P2P_DISABLE"] == "1" and seen["env"]["NCCL_IB_DISABLE"] == "1", seen


def test_without_compat_the_worker_has_no_nccl_env_and_no_compat():
    proc, seen = run_verl([])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seen == {"env": {"NCCL_P2P_DISABLE": None, "NCCL_IB_DISABLE": None,
                            "COMPAT_HARDWARE": str(FIXTURES / MACHINES[MACHINE])},
                    "compat_set_up": False, "profile": None}


def test_unquoted_env_value_makes_verls_ray_init_fail():
    """What users hit before compat quoted the values: Hydra's int 1 reaches ray.init (releases that read
    ray_kwargs.ray_init.runtime_env; 0.4.x/0.5.x read no such key, and the test checks they have none)."""
    rel = table_entry()
    if rel.ray_runtime_env == "hard-coded":
        from vhelp import compose
        assert "ray_kwargs" not in compose([])
        return
    proc, seen = run_verl(["++ray_kwargs.ray_init.runtime_env.env_vars.NCCL_P2P_DISABLE=1"])
    assert proc.returncode != 0 and seen is None
    assert "runtime_env['env_vars'] must be of type Dict[str, str]" in proc.stderr, proc.stderr[-3000:]
