"""What installing one vLLM release means: the one rule the tox matrix and `compat plan`/`install` both follow.

A row of compat/data/vllm_releases.toml becomes a ReleaseSet: the cutoff as a full UTC timestamp, the overrides,
and the requirements (vllm, its torch pin, the undeclared run-time dependencies in `also_install`). tools/matrix.py
builds the matrix envs' `uv pip install` with `uv_install`; the planner builds its uv and pip steps from the same
object, so a matrix env and a planned install get the same set (tests/test_install_plan.py checks every release).

Stdlib only and no compat imports: tools/matrix.py loads this file by path before compat is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Tuple


@dataclass(frozen=True)
class ReleaseSet:
    vllm: str
    torch: str
    cutoff: str                      # "2025-02-20T00:00:00Z": uploads after it are ignored by both installers
    overrides: Tuple[str, ...]       # uv --override lines (pip emulates them)
    also_install: Tuple[str, ...]    # undeclared run-time dependencies (setuptools for triton <= 3.2)

    def requirements(self, torch_requirement: Optional[str] = None) -> List[str]:
        """vllm==X, the torch pin (`torch==2.8.0+cu126` when a variant index provides it), then also_install."""
        return [f"vllm=={self.vllm}", torch_requirement or f"torch=={self.torch}", *self.also_install]

    def uv_install(self, uv: str, python: str, override_file: Optional[str] = None,
                   torch_backend: Optional[str] = None) -> List[str]:
        """The one `uv pip install` of the set (override_file must hold `overrides` when there are any)."""
        cmd = [uv, "pip", "install", "--python", python, "--exclude-newer", self.cutoff]
        if torch_backend:
            cmd += ["--torch-backend", torch_backend]
        if override_file:
            cmd += ["--override", override_file]
        return cmd + self.requirements()


def release_set(rel: Mapping[str, Any], time_of_day: str) -> ReleaseSet:
    """The set for one vllm_releases.toml row; `time_of_day` is installer.toml [cutoff] time_of_day."""
    return ReleaseSet(vllm=rel["version"], torch=rel["torch"], cutoff=f"{rel['exclude_newer']}{time_of_day}",
                      overrides=tuple(rel.get("overrides", ())), also_install=tuple(rel.get("also_install", ())))
