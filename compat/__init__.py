"""compat: make one LLM training/inference codebase run on whatever NVIDIA machine it lands on.

    import compat
    compat.setup()                  # detect, choose profile, export env, register vLLM patch sets
    llm = vllm.LLM(model, **compat.vllm_kwargs())
    model = AutoModel.from_pretrained(path, **compat.hf_kwargs())

Importing compat and calling setup() never imports torch or vLLM.
"""

from __future__ import annotations

from ._setup import Report, current, hf_kwargs, revert, setup, vllm_kwargs
from .errors import CompatError
from .findings import Finding

__version__ = "0.1.0"
__all__ = ["setup", "revert", "current", "vllm_kwargs", "hf_kwargs", "Report", "Finding", "CompatError",
           "__version__", "ray_runtime_env"]


def __getattr__(name: str):  # lazy, so `import compat` never imports Ray
    if name == "ray_runtime_env":
        from .integrations.ray import ray_runtime_env
        return ray_runtime_env
    raise AttributeError(f"module 'compat' has no attribute {name!r}")
