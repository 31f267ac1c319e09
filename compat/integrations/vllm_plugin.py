"""vLLM general plugin: every process vLLM creates runs compat.setup().

Declared in pyproject.toml as `[project.entry-points."vllm.general_plugins"] compat = ...`. vLLM calls
`load_general_plugins()` in the engine process (EngineArgs / LLMEngine), in each worker it spawns (worker_base.py
init_worker / WorkerWrapperBase) and, from 0.10, in the V1 EngineCore process (vllm/v1/engine/core.py), so the
profile's env vars and the patch sets reach processes the user's own `compat.setup()` never ran in.

Releases (checked in each release's vllm/plugins/__init__.py and callers, see docs/integrations.md):
  0.5.4            no plugin mechanism at all -> use COMPAT_AUTOLOAD=1 (compat-autoload.pth)
  0.5.5 - 0.6.6    load_general_plugins() loads and calls each plugin inside try/except (once per process
                   from 0.6.5)
  0.7.0 and later  plugins are loaded inside try/except but *called* outside it, once per process
VLLM_PLUGINS (comma-separated entry-point names, unset = all) is applied by vLLM itself: `VLLM_PLUGINS=other`
leaves compat out, `VLLM_PLUGINS=compat,...` or unset keeps it in. This module never reads it.
"""

from __future__ import annotations

from typing import Any

from . import safe_setup

ENTRY_POINT_GROUP = "vllm.general_plugins"
ENTRY_POINT_NAME = "compat"


def register() -> Any:
    """vLLM's hook: set compat up in this process. Re-entrant and cheap (setup() caches per process); never raises,
    because an exception here would abort vLLM's engine or worker start in releases >= 0.7.0."""
    return safe_setup("the vLLM plugin")
