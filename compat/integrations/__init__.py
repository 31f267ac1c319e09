"""Reach every process a job creates: vLLM workers, Ray workers, shell scripts, verl configs (issue 8).

    vllm_plugin.py  `vllm.general_plugins` entry point: compat.setup() in every process vLLM starts (vLLM >= 0.5.5)
    autoload.py     opt-in (COMPAT_AUTOLOAD=1) setup() at interpreter start, through compat-autoload.pth
    shell.py        `python -m compat env`: the profile's exports for bash / fish / dotenv
    ray.py          compat.ray_runtime_env() and `python -m compat doctor --ray`
    verl.py         `python -m compat verl-overrides`: Hydra overrides for verl

Nothing here imports torch, vLLM or Ray at module level; Ray is imported only by the functions that need it.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any, Callable, Optional

WARN_PREFIX = "compat: warning:"


def safe_setup(where: str, setup: Optional[Callable[[], Any]] = None) -> Any:
    """Run compat.setup() for a process compat did not start; never raise.

    A plugin or hook that raises can stop vLLM (vLLM >= 0.7.0 calls general plugins outside its try/except,
    vllm/plugins/__init__.py load_general_plugins) or a Ray worker from starting, which is worse than running
    without compat. Any failure becomes one warning line on stderr (the full traceback with COMPAT_DEBUG=1).
    """
    try:
        if setup is None:
            import compat
            setup = compat.setup
        return setup()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a setup failure must never take the process down
        try:
            import os
            msg = f"{WARN_PREFIX} setup() from {where} failed: {type(exc).__name__}: {exc}".replace("\n", " ")
            sys.stderr.write(msg + "\n")
            if os.environ.get("COMPAT_DEBUG", "").strip().lower() in ("1", "true", "yes", "on"):
                traceback.print_exc()
        except Exception:  # noqa: BLE001 - stderr closed or similar
            pass
        return None
