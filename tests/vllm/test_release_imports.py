"""Smoke test of a matrix env: the real vLLM release the env name promises is installed, with the torch the table
pins, and `import vllm` works (in a subprocess, so this test never imports vLLM into the pytest process)."""
from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import pytest

IMPORT_TIMEOUT_S = 600  # first import of a fresh env byte-compiles vLLM + torch on 2 cores


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=IMPORT_TIMEOUT_S)


def _need_vllm(release: dict) -> str:
    """The installed vLLM version; a matrix env (the fixture resolved its promise) without vLLM is a FAILURE."""
    try:
        return importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"this env promises vLLM {release['version']} (torch {release['torch']}) but has no vLLM")


def test_installed_vllm_is_the_promised_release(matrix_release):
    assert _need_vllm(matrix_release) == matrix_release["version"]


def test_installed_torch_is_the_pinned_one(matrix_release):
    _need_vllm(matrix_release)
    assert importlib.metadata.version("torch") == matrix_release["torch"]


def test_vllm_imports(matrix_release):
    _need_vllm(matrix_release)
    # `import vllm` is lazy from 0.9 on; LLM/SamplingParams pull in the engine, config and model-executor layers.
    proc = _run("import json, vllm, torch\nfrom vllm import LLM, SamplingParams\n"
                "print(json.dumps([vllm.__version__, torch.__version__]))")
    assert proc.returncode == 0, proc.stderr[-4000:]
    vllm_version, torch_version = json.loads(proc.stdout.strip().splitlines()[-1])
    assert vllm_version == matrix_release["version"]
    assert torch_version.split("+")[0] == matrix_release["torch"]


def test_triton_runtime_build_imports(matrix_release):
    """triton <= 3.2 (torch <= 2.6) imports setuptools undeclared when it builds its first kernel (fused_moe...)."""
    _need_vllm(matrix_release)
    proc = _run("import triton.runtime.build")
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.vllm("<0.6.5")
def test_outlines_guided_decoding_imports(matrix_release):
    """These releases need the outlines==0.0.41 override (0.0.43-0.0.46 require pyairports, now a placeholder)."""
    proc = _run(
        "import outlines, importlib.metadata as m\n"
        "import vllm.model_executor.guided_decoding as g\n"
        "from vllm.model_executor.guided_decoding import outlines_decoding, outlines_logits_processors\n"
        "print(m.version('outlines'))"
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip().splitlines()[-1] in [o.split("==")[1] for o in matrix_release["overrides"]
                                                   if o.startswith("outlines==")]
