"""Run a probe with a deadline: a wedged GPU can hang NVML or nvidia-smi forever."""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, TypeVar, cast

T = TypeVar("T")


class ProbeTimeout(Exception):
    pass


def call_with_timeout(fn: Callable[[], T], seconds: float) -> T:
    """Call fn in a daemon thread; raise ProbeTimeout if it has not returned in time.

    The thread is left behind on timeout (Python cannot kill it); being a daemon it never blocks exit.
    """
    box: Dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, name="compat-probe", daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise ProbeTimeout(f"probe did not answer within {seconds:g}s")
    if "error" in box:
        raise box["error"]
    return cast(T, box["value"])
