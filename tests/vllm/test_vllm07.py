"""vllm07 patch set on the real vLLM 0.7.x releases (CPU): each test fails without the patch and passes with it.

Every probe runs in a fresh interpreter the way a user's process does: `compat.patches.activate({})` first, then
vLLM is imported and the post-import hook applies the set. The pytest process never imports vLLM.

Fail-without evidence: run with the set switched off, e.g.
    COMPAT_DISABLE_PATCHES=vllm07 .tox/vllm072/bin/python -m pytest tests/vllm/test_vllm07.py
(the kill switch is read here at collection time and handed to the probes, because the suite's autouse fixture
clears COMPAT_* variables inside each test). docs/patches.md records the failures.
"""

from __future__ import annotations

import socket

import pytest

from probes import KILL, expect_applied, result, spawn


def _expect_applied() -> bool:
    from compat.patches.sets.vllm07 import PATCH_SET

    return expect_applied(PATCH_SET)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


GLOO_PROBE = """
    import json, sys
    import compat.patches as cp
    cp.activate({})
    from vllm.distributed import parallel_state as ps
    rank, port = int(sys.argv[1]), sys.argv[2]
    ps.init_distributed_environment(world_size=2, rank=rank, local_rank=rank, backend="gloo",
                                    distributed_init_method=f"tcp://127.0.0.1:{port}")
    out = {"applied": list(cp.applied_sets())}
    try:
        ps.initialize_model_parallel(1, 1, backend="gloo")   # TP=1 x PP=1 inside a world of 2
    except RuntimeError as exc:
        out["error"] = str(exc)
    else:
        out.update(tp=ps.get_tp_group().ranks, pp=ps.get_pp_group().ranks,
                   tp_world=ps.get_tensor_model_parallel_world_size())
    print(json.dumps(out), flush=True)
"""


@pytest.mark.slow
@pytest.mark.vllm(">=0.7.0,<0.8")
def test_tp_group_smaller_than_the_world_builds_groups():
    """verl-style colocation: a TP=1 vLLM inside a gloo world of 2. 0.7.0-0.7.2 raise without the patch."""
    port = str(_free_port())
    procs = [spawn(GLOO_PROBE, str(rank), port) for rank in (0, 1)]
    results = [result(p) for p in procs]
    for rank, res in enumerate(results):
        assert ("vllm07" in res["applied"]) == _expect_applied()
        assert "error" not in res, f"rank {rank}: {res['error']}"
        assert res["tp"] == [rank] and res["pp"] == [rank] and res["tp_world"] == 1


LAUNCHER_PROBE = """
    import json
    import compat.patches as cp
    cp.activate({})
    from vllm.config import VllmConfig
    from vllm.executor.uniproc_executor import ExecutorWithExternalLauncher
    calls = []
    executor = ExecutorWithExternalLauncher.__new__(ExecutorWithExternalLauncher)  # the real class, no __init__
    executor.vllm_config = VllmConfig()
    # spy on the collaborator the executor hands the worker's arguments to (it would start the worker)
    executor.collective_rpc = lambda method, timeout=None, args=(), kwargs=None: calls.append((method, args))
    executor._init_executor()   # the real method: builds the driver worker wrapper and its init kwargs
    method, args = calls[0]
    init = {k: v for k, v in args[0][0].items() if k != "vllm_config"}
    statuses = {r.id: r.status for r in cp.status() if r.patch_set == "vllm07"}
    print(json.dumps({"applied": list(cp.applied_sets()), "method": method, "init": init, "status": statuses}))
"""


@pytest.mark.slow
@pytest.mark.vllm(">=0.7.0,<=0.7.3")
def test_external_launcher_uses_local_rank():
    """Second node of a torchrun launch: RANK=3, LOCAL_RANK=1 -> the worker must get local_rank 1 (cuda:1)."""
    res = result(spawn(LAUNCHER_PROBE, RANK="3", LOCAL_RANK="1", WORLD_SIZE="4"))
    assert ("vllm07" in res["applied"]) == _expect_applied()
    assert res["method"] == "init_worker"
    assert res["init"]["rank"] == 3
    assert res["init"]["local_rank"] == 1
    if _expect_applied():  # patches named in COMPAT_DISABLE_PATCHES report "disabled", the rest "applied"
        killed = {k.strip() for k in KILL.replace(",", " ").split()}
        assert res["status"] == {pid: "disabled" if pid in killed else "applied" for pid in res["status"]}


PT_PROBE = """
    import json, sys
    import compat.patches as cp
    cp.activate({})
    import torch
    from vllm.model_executor.model_loader import weight_utils
    calls = []
    torch.cuda.empty_cache = lambda: calls.append(1)   # spy: the iterator looks it up at call time
    files = sys.argv[1:]
    seen = {name: tensor.tolist() for name, tensor in weight_utils.pt_weights_iterator(files)}
    out = {"applied": list(cp.applied_sets()), "seen": seen, "empty_cache": len(calls)}
    cp.revert()   # the exact original again: the call comes back
    list(weight_utils.pt_weights_iterator(files))
    out["empty_cache_after_revert"] = len(calls) - out["empty_cache"]
    print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.vllm(">=0.7.0,<=0.7.3")
def test_pt_weights_iterator_never_empties_the_cuda_cache(tmp_path):
    torch = pytest.importorskip("torch")
    files = []
    for i in range(3):
        path = tmp_path / f"pytorch_model-0000{i + 1}-of-00003.bin"
        torch.save({f"layer{i}.weight": torch.full((2,), float(i))}, path)
        files.append(str(path))
    res = result(spawn(PT_PROBE, *files))
    assert ("vllm07" in res["applied"]) == _expect_applied()
    assert res["seen"] == {f"layer{i}.weight": [float(i)] * 2 for i in range(3)}
    assert res["empty_cache"] == 0, f"torch.cuda.empty_cache called {res['empty_cache']} times (once per shard)"
    if _expect_applied():
        assert res["empty_cache_after_revert"] == 3  # revert restored the release's own code
