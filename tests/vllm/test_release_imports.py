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


BACKEND_ENUM = """
import importlib, json
# where each release defines its attention-backend enum: 0.5.4-0.6.x attention/selector.py, 0.7-0.10.x
# platforms/interface.py (_Backend), 0.11+ attention/backends/registry.py, the newest v1/attention/backends/registry.py
for module, names in (("vllm.v1.attention.backends.registry", ("AttentionBackendEnum",)),
                      ("vllm.attention.backends.registry", ("AttentionBackendEnum", "_Backend")),
                      ("vllm.platforms.interface", ("_Backend",)), ("vllm.attention.selector", ("_Backend",))):
    try:
        mod = importlib.import_module(module)
    except ImportError:
        continue
    enum = next((getattr(mod, n) for n in names if hasattr(mod, n)), None)
    if enum is not None:
        print(json.dumps({"where": module + "." + enum.__name__, "members": [m.name for m in enum]}))
        break
"""


def test_every_backend_name_compat_exports_exists_in_this_release(matrix_release):
    """The names compat can put in VLLM_ATTENTION_BACKEND / attention_backend for this release (every non-empty
    [range.choose] value) and the table's `names` claim, checked against the release's own backend enum."""
    from compat.choose import attention_range

    version = _need_vllm(matrix_release)
    row = attention_range(version)
    assert row is not None, f"compat has no attention row for vLLM {version}"
    proc = _run(BACKEND_ENUM)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr[-4000:]
    enum = json.loads(proc.stdout.strip().splitlines()[-1])
    members = set(enum["members"])
    exported = {name for name in row["choose"].values() if name}
    assert exported <= members, f"compat exports {sorted(exported - members)}, not in {enum['where']} of {version}"
    assert set(row["names"]) == members, (
        f"vllm_attention.toml names for {row['versions']} differ from {enum['where']} of {version}: "
        f"table only {sorted(set(row['names']) - members)}, release only {sorted(members - set(row['names']))}")
