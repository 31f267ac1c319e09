"""Ray integration without Ray: the runtime env, the per-node worker hook, heterogeneity findings, missing Ray.
(tests/ray/test_doctor_ray.py runs a real multi-node local cluster in `tox -e ray`.)"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from helpers import run_python

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hardware"


@pytest.fixture(autouse=True)
def _no_compat_env(monkeypatch):
    for var in ("COMPAT_HARDWARE", "COMPAT_AUTOLOAD", "COMPAT_RAY_EXPORTED"):
        monkeypatch.delenv(var, raising=False)


_py = run_python


def test_runtime_env_carries_profile_exports_switches_and_hook(monkeypatch, tmp_path):
    import compat
    from helpers import with_packages
    monkeypatch.setenv("COMPAT_HIDDEN_STATES", "1")
    monkeypatch.setenv("NCCL_IB_DISABLE", "0")                 # the user's own value
    hw = with_packages(tmp_path, "rtx4090-old-driver")          # no vLLM: no attention-backend export either
    rt = compat.ray_runtime_env(hardware=str(hw))
    assert rt["worker_process_setup_hook"] == "compat.integrations.ray.worker_setup"
    ev = rt["env_vars"]
    assert ev["NCCL_P2P_DISABLE"] == "1"
    assert ev["NCCL_IB_DISABLE"] == "0"                        # passed as theirs, never replaced
    assert ev["COMPAT_RAY_EXPORTED"] == "NCCL_P2P_DISABLE"     # only what compat chose may be re-resolved
    assert ev["COMPAT_HIDDEN_STATES"] == "1"
    assert ev["COMPAT_HARDWARE"] == str(hw)
    assert all(isinstance(v, str) for v in ev.values())
    json.dumps(rt)                                              # Ray needs a plain, serialisable dict


def test_import_compat_and_runtime_env_never_import_ray():
    proc = _py("import sys, compat\nassert 'ray' not in sys.modules\ncompat.ray_runtime_env()\n"
               "assert 'ray' not in sys.modules and 'compat.integrations.ray' in sys.modules")
    assert proc.returncode == 0, proc.stderr


def test_worker_hook_re_resolves_driver_values_for_its_own_node():
    """Driver on a V100 (vLLM 0.7.2 -> XFORMERS); this worker's node is an H100 with vLLM 0.11 -> FLASH_ATTN."""
    proc = _py("import os\nfrom compat.integrations.ray import worker_setup\n"
               "rep = worker_setup()\nassert rep is not None\n"
               "print(os.environ['VLLM_ATTENTION_BACKEND'], os.environ['NCCL_IB_DISABLE'])",
               env={"COMPAT_HARDWARE": str(FIXTURES / "h100-vllm0110.toml"),
                    "VLLM_ATTENTION_BACKEND": "XFORMERS", "COMPAT_RAY_EXPORTED": "VLLM_ATTENTION_BACKEND",
                    "NCCL_IB_DISABLE": "0"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["FLASH_ATTN", "0"]


def test_worker_hook_keeps_driver_values_when_setup_fails():
    proc = _py("import os\nfrom compat.integrations.ray import worker_setup\n"
               "assert worker_setup() is None\nprint(os.environ['VLLM_ATTENTION_BACKEND'])",
               env={"COMPAT_PROFILE": "no-such-profile", "VLLM_ATTENTION_BACKEND": "XFORMERS",
                    "COMPAT_RAY_EXPORTED": "VLLM_ATTENTION_BACKEND"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "XFORMERS"
    assert proc.stderr.startswith("compat: warning: setup() from the Ray worker setup hook failed")


def _node(ip, fixture):
    from compat.integrations.ray import node_report
    import compat.detect
    compat.detect.clear_cache()
    d = node_report(str(FIXTURES / fixture))
    d.update(ip=ip, node_id=f"{ip}-node")
    return d


def test_heterogeneity_findings():
    from compat.integrations.ray import cluster_findings, heterogeneity, render_text
    a = _node("10.0.0.1", "v100-sxm2.toml")
    b = _node("10.0.0.2", "h100-sxm.toml")
    ids = {f.id: f for f in heterogeneity([a, b])}
    assert {"ray-heterogeneous-driver", "ray-heterogeneous-gpu", "ray-heterogeneous-dtype"} <= set(ids)
    assert "535.104.05 on 10.0.0.1" in ids["ray-heterogeneous-driver"].message
    assert not heterogeneity([a, copy.deepcopy(a)])
    # package versions: vLLM differs -> error; flash-attn differs -> warning
    c = copy.deepcopy(a)
    c["ip"] = "10.0.0.3"
    c["report"]["software"]["packages"]["vllm"] = "0.99.0"  # differs from whatever this env has
    c["report"]["software"]["packages"]["flash-attn"] = "2.7.0"
    found = {f.id: f.severity for f in cluster_findings([a, c], missing=["10.0.0.9 (deadbeef)"])}
    assert found["ray-heterogeneous-vllm"] == "error"
    assert found["ray-heterogeneous-flash-attn"] == "warning"
    assert found["ray-node-unreachable"] == "error"
    text = render_text([a, b], heterogeneity([a, b]))
    assert "2 node(s)" in text and "WARN" in text


def test_missing_ray_is_a_clear_error_exit_2():
    proc = _py("import sys; sys.modules['ray'] = None\nfrom compat.cli import main\n"
               "sys.exit(main(['doctor', '--ray']))")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "compat doctor: error: Ray is not installed: pip install compat[ray]"
