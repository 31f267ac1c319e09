"""compat reaches the processes vLLM creates, on the real release of this matrix env.

- vLLM >= 0.5.5 loads general plugins (vllm/plugins/__init__.py load_general_plugins, entry-point group
  `vllm.general_plugins`, filtered by VLLM_PLUGINS): its own loader must run compat.setup(), and respect the filter.
- A child started with multiprocessing 'spawn' (how vLLM starts workers) inherits no patches from its parent; it is
  set up when it calls load_general_plugins() as vLLM's workers do (worker_base.py), and the release's patch sets
  are then applied in the child.
- vLLM 0.5.4 has no plugin mechanism: the documented alternative is COMPAT_AUTOLOAD=1 (compat-autoload.pth).

Each case runs in a subprocess so the pytest process never imports vLLM.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from promises import need

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hardware"
TIMEOUT_S = 900  # first vLLM import in a fresh env byte-compiles it on 2 cores

pytestmark = pytest.mark.slow

# the patch set each release must show applied in a spawned worker (compat/patches/sets, docs/patches.md)
EXPECTED_SETS = {"0.7.0": "vllm07", "0.7.1": "vllm07", "0.7.2": "vllm07",
                 "0.8.2": "vllm082", "0.8.3": "vllm082", "0.8.4": "vllm082"}

REPORT = """
def report(stage):
    import compat, os
    try:
        from compat.patches import applied_sets
        sets = list(applied_sets())
    except ImportError:
        sets = None
    rep = compat.current()
    return {"stage": stage, "pid": os.getpid(), "set_up": rep is not None,
            "profile": rep.resolved.profile.name if rep else None, "applied_sets": sets,
            "backend": os.environ.get("VLLM_ATTENTION_BACKEND")}
"""


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPAT_", "VLLM_"))}
    env["COMPAT_HARDWARE"] = str(FIXTURES / "v100-sxm2.toml")   # a fixed profile; software is this env's
    env.update(extra)
    return env


def _run(script: str, env) -> list:
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads(ln[len("COMPAT-RESULT "):]) for ln in proc.stdout.splitlines()
            if ln.startswith("COMPAT-RESULT ")]


def _need_entry_point():
    eps = [e for e in importlib.metadata.entry_points(group="vllm.general_plugins") if e.name == "compat"]
    # vLLM finds compat only through this entry point: without it the claim under test is false, not untestable
    assert eps, ("compat is not installed as a distribution in this env (no vllm.general_plugins entry point): "
                 "`pip install -e .` (tox installs it)")
    assert eps[0].value == "compat.integrations.vllm_plugin:register"


LOAD = REPORT + """
import json, compat
assert compat.current() is None          # importing compat never sets anything up
from vllm.plugins import load_general_plugins
load_general_plugins()
print("COMPAT-RESULT " + json.dumps(report("after load_general_plugins")))
"""


@pytest.mark.vllm(">=0.5.5")
def test_vllm_loads_compat_through_load_general_plugins_and_respects_vllm_plugins():
    _need_entry_point()
    cases = {None: True, "compat": True, "other,compat": True, "other": False}
    procs = {}
    for value, _ in cases.items():       # the four vLLM imports run side by side (each ~1 GiB, ~20 s)
        env = _env() if value is None else _env(VLLM_PLUGINS=value)
        procs[value] = subprocess.Popen([sys.executable, "-c", LOAD], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env)
    for value, expected in cases.items():
        out, err = procs[value].communicate(timeout=TIMEOUT_S)
        assert procs[value].returncode == 0, err[-4000:]
        (res,) = [json.loads(ln.split(" ", 1)[1]) for ln in out.splitlines() if ln.startswith("COMPAT-RESULT ")]
        assert res["set_up"] is expected, f"VLLM_PLUGINS={value!r}: {res}"
        if expected:
            assert res["profile"] == "v100"


SPAWN = REPORT + """
import json, multiprocessing as mp

def worker(q):
    # what vLLM's worker processes do first (vllm/worker/worker_base.py init_worker; v1 EngineCore)
    q.put(report("child before plugins"))
    from vllm.plugins import load_general_plugins
    load_general_plugins()
    q.put(report("child after plugins"))

if __name__ == "__main__":
    import compat
    compat.setup()                      # the user's own call, in the parent only
    import vllm
    print("COMPAT-RESULT " + json.dumps(report("parent")))
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=worker, args=(q,))
    p.start()
    for _ in range(2):
        print("COMPAT-RESULT " + json.dumps(q.get(timeout=900)))
    p.join(60)
    assert p.exitcode == 0, p.exitcode
"""


@pytest.mark.vllm(">=0.5.5")
def test_spawned_worker_is_set_up_and_patched_by_the_plugin(tmp_path):
    _need_entry_point()
    script = tmp_path / "spawn_worker.py"
    script.write_text(SPAWN)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=_env(),
                          timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-4000:]
    parent, before, after = [json.loads(ln.split(" ", 1)[1]) for ln in proc.stdout.splitlines()
                             if ln.startswith("COMPAT-RESULT ")]
    assert before["pid"] == after["pid"] != parent["pid"]
    assert parent["set_up"] and not before["set_up"]          # nothing of the parent's setup() crossed over
    assert after["set_up"] and after["profile"] == "v100"
    version = importlib.metadata.version("vllm")
    expected = EXPECTED_SETS.get(version)
    assert after["applied_sets"] is not None and parent["applied_sets"] is not None, (parent, after)
    if expected:
        assert expected in parent["applied_sets"] and expected in after["applied_sets"], (parent, after)
        assert expected not in (before["applied_sets"] or [])
    else:
        assert not set(after["applied_sets"]) & set(EXPECTED_SETS.values()), after


def _pth_installed() -> bool:
    return (Path(sysconfig.get_paths()["purelib"]) / "compat-autoload.pth").exists()


AUTOLOAD = REPORT + """
import json, multiprocessing as mp

def worker(q):
    q.put(report("child at start"))      # before any vLLM or compat call in the child

if __name__ == "__main__":
    import vllm
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=worker, args=(q,))
    p.start()
    print("COMPAT-RESULT " + json.dumps(q.get(timeout=900)))
    p.join(60)
"""


@pytest.mark.vllm("<0.5.5")
def test_release_without_general_plugins_uses_autoload(tmp_path):
    """0.5.4 has no vllm/plugins package; COMPAT_AUTOLOAD=1 sets up every interpreter, spawned workers too."""
    proc = subprocess.run([sys.executable, "-c", "import vllm.plugins"], capture_output=True, text=True,
                          env=_env(), timeout=TIMEOUT_S)
    assert proc.returncode != 0 and "No module named 'vllm.plugins'" in proc.stderr
    if not _pth_installed():
        need("autoload-pth", "compat-autoload.pth is not in this env's site-packages (compat not installed by tox)")
    script = tmp_path / "autoload_worker.py"
    script.write_text(AUTOLOAD)
    for autoload, expected in (("1", True), (None, False)):
        env = _env() if autoload is None else _env(COMPAT_AUTOLOAD=autoload)
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                              timeout=TIMEOUT_S)
        assert proc.returncode == 0, proc.stderr[-4000:]
        (child,) = [json.loads(ln.split(" ", 1)[1]) for ln in proc.stdout.splitlines()
                    if ln.startswith("COMPAT-RESULT ")]
        assert child["set_up"] is expected, child
