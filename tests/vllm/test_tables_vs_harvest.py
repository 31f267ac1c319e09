"""Runs in every vLLM matrix env: re-harvest the installed release with tools/harvest.py (into a temporary
directory, in a subprocess: the pytest process never imports vLLM), then

1. the fresh harvest equals the committed compat/data/harvested/vllm-X.Y.Z.toml (the files stay reproducible
   and current; a drift means the harvester or the env changed: re-harvest and commit);
2. the facts compat's hand tables state for this release (torch pin, backend names, chosen backends and their
   kernel packages, arch floors) agree with the fresh harvest (checks in tests/harvest_tables.py).
"""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

import harvest_tables as T
from compat._toml import load_toml
from compat.harvested import HARVEST_DIR, parse

ROOT = Path(__file__).resolve().parents[2]
HARVEST_TIMEOUT_S = 900  # imports every backend and quantization module of the release on 2 shared cores
# Not compared: the interpreter's patch release, and versions of unpinned dependencies an env may legitimately
# carry differently (measured: the same vllm==0.8.2 install brought transformers 4.51.0 in one env, 4.51.1 in
# another); the pinned facts (torch, kernels, archs, backends, models, quantization) must match exactly.
VOLATILE = {("release", "python"), ("release", "transformers"), ("release", "triton")}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory, matrix_release: Dict[str, Any]) -> Dict[str, Any]:
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"matrix env promises vLLM {matrix_release['version']} but none is installed")
    out = tmp_path_factory.mktemp("harvest")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "harvest.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=HARVEST_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return load_toml(out / f"vllm-{matrix_release['version']}.toml")


def _flat(doc: Any, prefix: tuple = ()) -> Dict[tuple, Any]:
    if isinstance(doc, dict):
        out: Dict[tuple, Any] = {}
        for k, v in doc.items():
            out.update(_flat(v, prefix + (k,)))
        return out
    return {prefix: doc}


def diff(committed: Dict[str, Any], fresh: Dict[str, Any]) -> List[str]:
    a, b = _flat(committed), _flat(fresh)
    lines = []
    for key in sorted(set(a) | set(b), key=str):
        if key[:2] in VOLATILE:
            continue
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            lines.append(f"{'.'.join(key)}: committed {a.get(key, '<absent>')!r}, fresh {b.get(key, '<absent>')!r}")
    return lines


def test_harvest_matches_committed_file(fresh: Dict[str, Any], matrix_release: Dict[str, Any]) -> None:
    path = HARVEST_DIR / f"vllm-{matrix_release['version']}.toml"
    assert path.exists(), f"{path} missing: run `python tools/harvest.py` in this env (or tox -e harvest) and commit it"
    lines = diff(load_toml(path), fresh)
    assert not lines, "harvest drifted from the committed file:\n" + "\n".join(lines[:40])


@pytest.mark.parametrize("check", T.CHECKS, ids=lambda c: c.__name__)
def test_tables_agree_with_release(fresh: Dict[str, Any], check: Any) -> None:
    problems = check(parse(fresh))
    assert not problems, "\n".join(problems)


def test_fresh_harvest_has_every_fact(fresh: Dict[str, Any], matrix_release: Dict[str, Any]) -> None:
    """A matrix release imports (test_release_imports), so its harvest must hold every table, not just metadata."""
    h = parse(fresh)
    assert not h.release.import_error
    assert h.architectures and "LlamaForCausalLM" in h.architectures
    assert {"awq", "gptq"} <= set(h.quantization) and h.quantization["awq"].min_capability
    assert h.attention and any(b.importable for b in h.attention.values())
    assert h.arch.vllm_C and h.arch.torch_cuda
    assert set(h.kernels) == {"flashinfer", "xformers", "flash_attn"}
