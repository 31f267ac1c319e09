"""doctor --deep's multi-GPU checks (issue 12.5), on the CPU.

The GPU steps themselves (`_deep_probe --p2p`, `--nccl-rank`) need two GPUs; they ran on the device's
2 x H200 machine (docs/validation/2026-12-01-h200x2/). Here: the deadline/kill logic with real processes
whose GPU work is replaced by the smallest stand-in (a python -c that prints what a rank prints, or sleeps
like a hung rank), the verdict and findings from probe results, the retry with NCCL_P2P_DISABLE=1, the
verdict cache, and setup()'s use of it for the RTX 4090 P2P rule instead of the driver cutoff.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from compat.choose import resolve
from compat.detect import p2p_verdict
from compat.detect.model import GPU, Environment, Hardware, Software
from compat.profiles import load_profiles
from compat.report import deep
from compat.report.deep import StageRun, check_allreduce, check_p2p, multi_gpu_verdict, verdict_findings


def _py(code: str):
    return [sys.executable, "-c", code]


# ------------------------------------------------------------------------------------------- run_stage


def test_parse_output_takes_last_result_and_last_stage():
    out = '{"stage": "p2p 0->1"}\nnoise\n{"stage": "p2p 1->0"}\n{"pairs": []}\n'
    assert deep.parse_output(out) == ({"pairs": []}, "p2p 1->0")
    assert deep.parse_output('{"stage": "nccl init rank 0/2"}\n') == (None, "nccl init rank 0/2")
    assert deep.parse_output("Traceback ...\n{broken") == (None, "")


def test_run_stage_collects_every_rank():
    argvs = [_py(f"import json; print(json.dumps({{'stage': 's{r}'}})); print(json.dumps({{'rank': {r}}}))")
             for r in range(2)]
    run = deep.run_stage(argvs, 30, os.environ)
    assert not run.hung
    assert run.results == ({"rank": 0}, {"rank": 1})


def test_run_stage_kills_a_hung_rank_and_its_children_at_the_deadline(tmp_path):
    """Stand-in for a hung NCCL rank: it prints its progress, starts a child, and sleeps."""
    pid_file = tmp_path / "child.pid"
    hang = _py("import json, subprocess, sys, time; print(json.dumps({'stage': 'nccl all_reduce 1027 rank 1'}), "
               "flush=True); c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
               f"open({str(pid_file)!r}, 'w').write(str(c.pid)); time.sleep(600)")
    ok = _py("import json; print(json.dumps({'rank': 0, 'ok': True}))")
    t = time.monotonic()
    run = deep.run_stage([ok, hang], 3, os.environ)
    assert time.monotonic() - t < 20
    assert run.hung and run.last_stage == "nccl all_reduce 1027 rank 1"
    assert run.results[0] == {"rank": 0, "ok": True} and run.results[1] is None
    child = int(pid_file.read_text())
    for _ in range(50):  # the grandchild went with its process group
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the hung rank's child survived the kill")


# ------------------------------------------------------------------------------- verdicts from results


def _runner(script):
    """A stand-in runner: answers each stage from `script(argvs, env)` and records the calls."""
    calls = []

    def run(argvs, timeout, env):
        calls.append((argvs, dict(env)))
        return script(argvs, env)

    run.calls = calls  # type: ignore[attr-defined]
    return run


def _ranks(world, mismatches=0):
    return tuple({"rank": r, "world": world, "nccl": "2.27.5", "ok": not mismatches,
                  "checks": [{"numel": 1027, "mismatches": 0}, {"numel": 33554432, "mismatches": mismatches}]}
                 for r in range(world))


def _pairs(bad=0):
    return {"gpus": 2, "pairs": [{"src": 0, "dst": 1, "peer_access": True, "ok": not bad, "mismatches": bad,
                                  "gbps": 350.0},
                                 {"src": 1, "dst": 0, "peer_access": True, "ok": True, "mismatches": 0,
                                  "gbps": 360.0}]}


def _stage(argvs, results, hung=False, stage=""):
    return StageRun(tuple(results), hung, stage, "")


def test_healthy_node_verdict_and_info_findings():
    def script(argvs, env):
        return _stage(argvs, [_pairs()] if "--p2p" in argvs[0] else _ranks(len(argvs)))

    run = _runner(script)
    v = multi_gpu_verdict(2, timeout=5, env={"NCCL_P2P_DISABLE": "1", "NCCL_NVLS_ENABLE": "0"}, runner=run)
    assert v["p2p_ok"] is True and "allreduce_p2p_disabled" not in v
    # P2P itself is judged: a workaround already in the env is taken out; other NCCL settings stay
    assert all("NCCL_P2P_DISABLE" not in env and env["NCCL_NVLS_ENABLE"] == "0" for _, env in run.calls)
    assert [a[-3:-1] for a in run.calls[1][0]] == [["0", "2"], ["1", "2"]]  # one process per GPU, started together
    f = verdict_findings(v)
    assert [(x.id, x.severity) for x in f] == [("deep-p2p", "info"), ("deep-nccl-allreduce", "info")]
    assert "correct on all 2 GPU pairs" in f[0].message and "2-rank NCCL 2.27.5" in f[1].message


def test_wrong_allreduce_data_is_an_error_whose_fix_is_checked_with_p2p_disabled():
    def script(argvs, env):
        if "--p2p" in argvs[0]:
            return _stage(argvs, [_pairs(bad=17)])
        broken = env.get("NCCL_P2P_DISABLE") != "1"
        return _stage(argvs, _ranks(len(argvs), mismatches=5 if broken else 0))

    run = _runner(script)
    v = multi_gpu_verdict(2, timeout=5, env={}, runner=run)
    assert v["p2p_ok"] is False
    assert run.calls[-1][1]["NCCL_P2P_DISABLE"] == "1" and v["allreduce_p2p_disabled"]["ok"]
    f = {x.id: x for x in verdict_findings(v)}
    assert f["deep-p2p"].severity == "error" and "GPU 0->1 17 wrong values" in f["deep-p2p"].message
    assert f["deep-nccl-allreduce"].severity == "error" and "wrong sums" in f["deep-nccl-allreduce"].message
    assert "NCCL_P2P_DISABLE=1" in f["deep-nccl-allreduce"].fix
    assert "with NCCL_P2P_DISABLE=1 the all_reduce is correct" in f["deep-nccl-allreduce"].fix


def test_hang_is_an_error_naming_the_stage():
    def script(argvs, env):
        if "--p2p" in argvs[0]:
            return _stage(argvs, [None], hung=True, stage="p2p 1->0")
        return _stage(argvs, [None] * len(argvs), hung=True, stage="nccl all_reduce 33554432 rank 0")

    v = multi_gpu_verdict(2, timeout=7, env={}, runner=_runner(script))
    assert v["p2p"]["hung"] and "p2p 1->0" in v["p2p"]["detail"] and "7s" in v["p2p"]["detail"]
    assert v["allreduce"]["hung"] and v["allreduce_p2p_disabled"]["hung"]
    f = {x.id: x for x in verdict_findings(v)}
    assert f["deep-nccl-allreduce"].severity == "error"
    assert "fails with P2P off too" in f["deep-nccl-allreduce"].fix  # the workaround did not help either


def test_crashed_rank_is_an_error():
    def script(argvs, env):
        return _stage(argvs, [{"error": "Traceback: NCCL error: unhandled system error"}, _ranks(2)[1]])

    r = check_allreduce(2, 5, {}, runner=_runner(script))
    assert not r["ok"] and "rank(s) [0]" in r["detail"] and "unhandled system error" in r["detail"]
    p = check_p2p(5, {}, runner=_runner(lambda a, e: _stage(a, [None])))
    assert not p["ok"] and "crashed" in p["detail"]


# ------------------------------------------------------------------------------------------ the cache


UUIDS = ["GPU-1a2b3c4d-0000-0000-0000-000000000000", "GPU-5e6f7a8b-0000-0000-0000-000000000000"]


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    if not os.path.exists("/proc/sys/kernel/random/boot_id"):
        pytest.skip("needs base-python: a Linux boot id (the cache key)")
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("COMPAT_NO_CACHE", raising=False)
    return env


def test_verdict_cache_roundtrip_and_keys(cache_env):
    assert p2p_verdict.p2p_ok("550.54.14", UUIDS, cache_env) is None
    path = p2p_verdict.write_verdict("550.54.14", UUIDS, {"p2p_ok": False, "p2p": "wrong data"}, cache_env)
    assert path is not None and path.exists()
    assert p2p_verdict.p2p_ok("550.54.14", list(reversed(UUIDS)), cache_env) is False  # order does not matter
    assert p2p_verdict.p2p_ok("550.54.15", UUIDS, cache_env) is None    # another driver
    assert p2p_verdict.p2p_ok("550.54.14", UUIDS[:1], cache_env) is None  # another GPU set
    assert p2p_verdict.p2p_ok("550.54.14", UUIDS, dict(cache_env, COMPAT_NO_CACHE="1")) is None
    path.write_text("{not json")
    assert p2p_verdict.p2p_ok("550.54.14", UUIDS, cache_env) is None
    path.write_text(json.dumps({"p2p_ok": "yes", "gpu_uuids": sorted(UUIDS)}))
    assert p2p_verdict.p2p_ok("550.54.14", UUIDS, cache_env) is None


def _rtx4090x2(driver):
    gpus = tuple(GPU(i, "NVIDIA GeForce RTX 4090", (8, 9), 24564, UUIDS[i]) for i in range(2))
    return Environment(hardware=Hardware(driver=driver, cuda="12.4", gpus=gpus, source="nvml"),
                       software=Software(python="3.11.7"))


def _nccl(env):
    r = resolve(load_profiles()["ada"], env)
    return {k: v for k, v, _ in r.env if k.startswith("NCCL_")}


def test_setup_rule_follows_the_cached_verdict_over_the_driver_cutoff(cache_env):
    old, new = _rtx4090x2("535.104.05"), _rtx4090x2("560.35.03")
    # no verdict: the driver heuristic (profiles/ada.toml driver_below = 550.40.07)
    assert _nccl(old) == {"NCCL_P2P_DISABLE": "1", "NCCL_IB_DISABLE": "1"} and _nccl(new) == {}
    # doctor --deep proved P2P sound on the old driver: no workaround
    p2p_verdict.write_verdict("535.104.05", UUIDS, {"p2p_ok": True}, cache_env)
    assert _nccl(old) == {}
    # ... and broken on the new one: the workaround although the driver is past the cutoff
    p2p_verdict.write_verdict("560.35.03", UUIDS, {"p2p_ok": False}, cache_env)
    assert _nccl(new) == {"NCCL_P2P_DISABLE": "1", "NCCL_IB_DISABLE": "1"}
    reason = next(why for k, _, why in resolve(load_profiles()["ada"], new).env if k == "NCCL_P2P_DISABLE")
    assert "doctor --deep found P2P broken" in reason


def test_setup_reads_the_verdict_without_torch(cache_env):
    code = ("import sys; from compat.detect import p2p_verdict; p2p_verdict.p2p_ok('1', ['GPU-x']); "
            "assert 'torch' not in sys.modules")
    import subprocess

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
