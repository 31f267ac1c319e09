"""Shared by the patch tests: run a vLLM probe in a fresh child process, as a vLLM worker starts, and read the
JSON line it prints. The child gets this checkout on PYTHONPATH and COMPAT_DISABLE_PATCHES as this test run
had it at import (tests/vllm/test_fail_without_patch.py sets it to show each patch test failing without its patch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
KILL = os.environ.get("COMPAT_DISABLE_PATCHES", "")
TIMEOUT_S = 600  # a cold first import of vLLM + torch byte-compiles on 2 cores


# A one-rank gloo world on CPU: what vLLM's layers need before they can be built (column 0, for probe code).
SINGLE_RANK_WORLD = """
import socket
from vllm.distributed import parallel_state as ps
with socket.socket() as _sock:
    _sock.bind(("127.0.0.1", 0))
    _port = _sock.getsockname()[1]
ps.init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                distributed_init_method=f"tcp://127.0.0.1:{_port}")
ps.initialize_model_parallel(1, 1, backend="gloo")
"""


def installed_vllm() -> Optional[str]:
    from compat.detect.software import installed_version

    return installed_version("vllm")


def killed(*names: str, kill: str = KILL) -> bool:
    """Whether the kill switch names any of these patch sets / patch ids (or `all`)."""
    return bool({k.strip() for k in kill.replace(",", " ").split()} & {"all", *names})


def expect_applied(patch_set, kill: str = KILL) -> bool:
    """The set should be applied here: the installed release is in its range and the set is not switched off."""
    from compat import versions

    return versions.in_spec(installed_vllm(), patch_set.versions) and not killed(patch_set.name, kill=kill)


def child_env(kill: str = KILL, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPAT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    if kill:
        env["COMPAT_DISABLE_PATCHES"] = kill
    env.update(extra)
    return env


def spawn(code: str, *args: str, kill: str = KILL, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=child_env(kill, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=TIMEOUT_S)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"probe exited {proc.returncode} without a result:\n{err[-4000:]}"
    return json.loads(lines[-1])


def run(code: str, *args: str, kill: str = KILL, **env: str) -> dict:
    return result(spawn(code, *args, kill=kill, **env))
