"""verl's own model builders (actor, ref, critic) load a tiny random Qwen2 (save_pretrained in tmp) on five simulated
machines: with compat the model gets the profile's attention (sdpa: no flash-attn here) and never bfloat16 on
V100/T4; without compat every machine gets transformers' "FlashAttention2 has been toggled on, but it cannot be used"
ImportError, because verl asks for flash_attention_2 (hard-coded in 0.4.x-0.6.0, the default of
override_config.attn_implementation later).

Each case is a fresh process (tests/verl/build_driver.py, which names its stand-ins), set up the way compat reaches
that release's Ray workers: COMPAT_AUTOLOAD=1 (the .pth) where verl's runtime_env is hard-coded (0.4.x, 0.5.x),
compat's worker_process_setup_hook where it reads ray_kwargs.ray_init.runtime_env (0.6.0+); with compat's overrides
(`verl-overrides --format args`). Done-when of issue 12: verl 0.4.1 + simulated V100 -> sdpa + float16 (the ref).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from vhelp import FIXTURES, FP16_ONLY, HERE, MACHINES, ROOT, clean_env, compat_overrides, table_entry

pytestmark = pytest.mark.slow
FLASH_ERROR = "FlashAttention2 has been toggled on, but it cannot be used"


def build(model: Path, machine: str, with_compat: bool):
    rel = table_entry()
    out = Path(tempfile.mkdtemp(prefix="vb")) / "built.json"
    env = clean_env(COMPAT_HARDWARE=str(FIXTURES / MACHINES[machine]), PYTHONPATH=f"{ROOT}:{HERE}")
    args = [sys.executable, str(HERE / "build_driver.py")]
    if with_compat:
        overrides = compat_overrides(machine)
        if rel.ray_runtime_env == "hard-coded":
            env["COMPAT_AUTOLOAD"] = "1"
            tail = []
        else:
            tail = ["worker-hook"]
    else:
        overrides, tail = [], []
    proc = subprocess.run(args + [json.dumps(overrides), str(model), str(out)] + tail, capture_output=True,
                          text=True, env=env, timeout=1200, cwd=out.parent)
    assert proc.returncode == 0 and out.exists(), proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_with_compat_models_load_with_the_profiles_attention_and_dtype(tiny_model, machine):
    rel = table_entry()
    built = build(tiny_model, machine, with_compat=True)
    for role, got in built.items():
        assert "error" not in got, (role, got.get("trace") or got)
        assert got["attn"] == "sdpa", (role, got)
        if machine in FP16_ONLY:
            assert got["dtype"] != "torch.bfloat16", (role, got)
    assert built["actor"]["dtype"] == "torch.float32"            # fp32 master weights; FSDP computes in param_dtype
    if dict(rel.model_dtype).get("ref"):                        # 0.4.x/0.5.x load the ref in bfloat16 by default
        assert built["ref"]["dtype"] == ("torch.float16" if machine in FP16_ONLY else "torch.bfloat16")


def test_without_compat_verl_crashes_on_flash_attention(tiny_model):
    built = build(tiny_model, "v100", with_compat=False)
    for role in ("actor", "ref", "critic"):
        assert FLASH_ERROR in built[role].get("error", ""), (role, built[role])
