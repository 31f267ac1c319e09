"""compat: make one LLM training/inference codebase run on whatever NVIDIA machine it lands on.

    import compat
    compat.setup()                  # detect, choose profile, export env, register vLLM patch sets
    llm = vllm.LLM(model, **compat.vllm_kwargs())
    model = AutoModel.from_pretrained(path, **compat.hf_kwargs())

Importing compat and calling setup() never imports torch or vLLM. `import compat` itself loads only the
names below on first use, so the .pth autoload check and integrations that only need a submodule stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it (loaded on first attribute access)
_LAZY = {
    "setup": "._setup", "revert": "._setup", "current": "._setup", "vllm_kwargs": ".kwargs",
    "hf_kwargs": ".kwargs", "Report": ".report.model", "Finding": ".findings", "CompatError": ".errors",
    "ray_runtime_env": ".integrations.ray",
}
__all__ = [*_LAZY, "__version__"]

if TYPE_CHECKING:  # `X as X`: explicit re-exports for type checkers (the runtime loads them lazily)
    from ._setup import current as current
    from ._setup import revert as revert
    from ._setup import setup as setup
    from .errors import CompatError as CompatError
    from .findings import Finding as Finding
    from .integrations.ray import ray_runtime_env as ray_runtime_env
    from .kwargs import hf_kwargs as hf_kwargs
    from .kwargs import vllm_kwargs as vllm_kwargs
    from .report.model import Report as Report


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'compat' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
