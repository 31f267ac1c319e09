"""`python -m compat doctor --ray` and compat.ray_runtime_env() on a real local multi-node Ray cluster (CPU only).

Each node's raylet gets COMPAT_HARDWARE=<fixture> in its environment (ray.cluster_utils.Cluster.add_node(env_vars=)),
so the workers it starts see different machines: a V100 node, an H100 node and an A100 node.
Runs in `tox -e ray` (Ray is the optional [ray] extra); skipped where Ray is not installed and in the vLLM matrix
envs (they carry Ray as a vLLM dependency, but starting clusters there only costs matrix time).
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from argparse import Namespace
from contextlib import redirect_stdout
from pathlib import Path

import pytest

if os.environ.get("COMPAT_MATRIX_ENV", "").startswith("vllm"):
    pytest.skip("needs ray: Ray cluster tests run in `tox -e ray`", allow_module_level=True)
ray = pytest.importorskip("ray", reason="needs ray: Ray not installed, pip install compat[ray] (tox -e ray)")
if not hasattr(ray, "init"):  # this very directory, tests/ray, imported as a namespace package: Ray is absent
    pytest.skip("needs ray: Ray not installed, pip install compat[ray] (tox -e ray)", allow_module_level=True)
from ray.cluster_utils import Cluster  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "hardware"
NODES = {"v100": "v100-sxm2.toml", "h100": "h100-vllm0110.toml", "a100": "a100-sxm4.toml"}

pytestmark = pytest.mark.slow


def test_cli_without_a_cluster_is_exit_2(tmp_path):
    """Runs first, before the module's cluster exists."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env.pop("RAY_ADDRESS", None)   # "auto": looks for a cluster started on this machine, under Ray's temp dir
    env.update(PYTHONPATH=str(ROOT), HOME=str(tmp_path), TMPDIR=str(tmp_path), RAY_TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "compat", "doctor", "--ray"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no running Ray cluster" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def cluster():
    os.environ.pop("COMPAT_HARDWARE", None)
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"v100": 1}, "env_vars": {"COMPAT_HARDWARE": str(FIXTURES / NODES["v100"])}})
    for name in ("h100", "a100"):
        c.add_node(num_cpus=1, resources={name: 1}, env_vars={"COMPAT_HARDWARE": str(FIXTURES / NODES[name])})
    c.wait_for_nodes()
    ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def _doctor(**kw):
    buf = io.StringIO()
    from compat.integrations.ray import doctor_ray
    with redirect_stdout(buf):
        rc = doctor_ray(Namespace(json=kw.get("json", False), hardware=kw.get("hardware"), profile=kw.get("profile")))
    return rc, buf.getvalue()


def test_doctor_ray_gathers_one_report_per_node_and_flags_heterogeneity(cluster):
    rc, out = _doctor(json=True)
    data = json.loads(out)
    assert len(data["nodes"]) == 3 and data["unreachable"] == []
    assert len({n["node_id"] for n in data["nodes"]}) == 3
    profiles = sorted(n["report"]["profile"]["name"] for n in data["nodes"])
    assert profiles == ["a100", "hopper", "v100"], profiles
    ids = {f["id"]: f for f in data["findings"]}
    assert ids["ray-heterogeneous-driver"]["severity"] == "warning"
    assert "535.104.05" in ids["ray-heterogeneous-driver"]["message"]
    assert "580.159.04" in ids["ray-heterogeneous-driver"]["message"]
    assert "ray-heterogeneous-gpu" in ids and "ray-heterogeneous-dtype" in ids
    # the H100 fixture carries its own [packages] (vLLM 0.11.0, torch 2.8.0): version skew is an error
    assert ids["ray-heterogeneous-torch"]["severity"] == "error"
    assert rc == 1


def test_doctor_ray_text_output(cluster):
    rc, out = _doctor()
    assert out.startswith("compat doctor --ray: 3 node(s)")
    assert "Tesla V100-SXM2-32GB" in out and "H100" in out and "A100" in out
    assert "WARN" in out and "ERROR" in out and rc == 1


def test_homogeneous_cluster_is_ok(cluster):
    """--hardware FILE makes every node simulate the same machine (fixture without [packages]): no findings."""
    rc, out = _doctor(json=True, hardware=str(FIXTURES / "a100-sxm4.toml"))
    data = json.loads(out)
    assert [f for f in data["findings"] if f["id"].startswith("ray-")] == []
    assert {n["report"]["profile"]["name"] for n in data["nodes"]} == {"a100"}


DRIVER = """
import json, sys, ray, compat
rt = compat.ray_runtime_env(environ={"COMPAT_HIDDEN_STATES": "1"})
# Ray honours worker_process_setup_hook in the job's runtime env (ray.init), not in per-task options
ray.init(address=sys.argv[1], runtime_env=rt, logging_level="ERROR", log_to_driver=False)

@ray.remote(num_cpus=0)
def probe():
    import os
    import compat as c
    rep = c.current()
    return {"set_up": rep is not None, "profile": rep.resolved.profile.name if rep else None,
            "hidden_states": os.environ.get("COMPAT_HIDDEN_STATES"), "pid": os.getpid()}

out = {name: ray.get(probe.options(resources={name: 0.01}).remote(), timeout=300) for name in sys.argv[2:]}
print("COMPAT-RESULT " + json.dumps(out))
"""


def test_runtime_env_sets_up_every_worker_for_its_own_node(cluster, tmp_path):
    """A driver's ray.init(runtime_env=compat.ray_runtime_env()): every worker runs the hook, for its own node."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPAT_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, str(script), cluster.address, *NODES], capture_output=True, text=True,
                          env=env, timeout=600, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("COMPAT-RESULT ")]
    got = json.loads(line.split(" ", 1)[1])
    assert all(g["set_up"] for g in got.values()), got
    assert all(g["hidden_states"] == "1" for g in got.values()), got
    # the hook ran at worker start, before Ray narrowed CUDA_VISIBLE_DEVICES for a task: each node's own profile
    assert {k: g["profile"] for k, g in got.items()} == {"v100": "v100", "h100": "hopper", "a100": "a100"}, got
