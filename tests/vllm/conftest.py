"""Runs inside the vLLM matrix envs (tox -e vllm072 ...). Provides:

- the marker ``@pytest.mark.vllm("==0.7.2")``: a packaging specifier on the *installed* vLLM version; the test is
  skipped with a reason ("needs vLLM ==0.7.2, this env has 0.8.5" / "vLLM not installed") when it does not match.
- the fixture ``matrix_release``: the vllm_releases.toml entry this env promises (env var COMPAT_MATRIX_VLLM=<version>
  or COMPAT_MATRIX_ENV=<tox env name>, else the compat-matrix.json marker tools/matrix.py left in the env).

Reading the version never imports vLLM (importlib.metadata), so collection stays cheap.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import pytest
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def installed_vllm() -> Optional[str]:
    try:
        return importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return None


def load_matrix():
    """tools/matrix.py as a module (stdlib only; the table reader tox and nox use)."""
    spec = importlib.util.spec_from_file_location("compat_tools_matrix", ROOT / "tools" / "matrix.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def skip_reason(spec: str, have: Optional[str]) -> Optional[str]:
    """Why a test marked vllm(spec) cannot run with vLLM `have` installed; None when it can."""
    try:
        wanted = SpecifierSet(spec)
    except InvalidSpecifier as exc:
        raise pytest.UsageError(f"pytest.mark.vllm({spec!r}): not a version specifier: {exc}") from exc
    if have is None:
        return f"needs vllm: vLLM {spec} wanted, vLLM not installed"
    if not wanted.contains(Version(have), prereleases=True):
        return f"needs vLLM {spec}, this env has {have}"
    return None


def pytest_collection_modifyitems(config, items):
    have = installed_vllm()
    for item in items:
        for mark in item.iter_markers(name="vllm"):
            if len(mark.args) != 1:
                raise pytest.UsageError(f"{item.nodeid}: use @pytest.mark.vllm('==0.7.2') (one specifier string)")
            reason = skip_reason(mark.args[0], have)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
                break


@pytest.fixture(scope="session")
def matrix_release() -> Dict[str, Any]:
    matrix = load_matrix()
    if os.environ.get("COMPAT_MATRIX_VLLM"):
        return matrix.resolve(os.environ["COMPAT_MATRIX_VLLM"])  # an explicit promise must exist in the table
    env = os.environ.get("COMPAT_MATRIX_ENV")
    if env in matrix.matrix_envs():
        return matrix.resolve(env)
    try:
        record = json.loads((Path(sys.prefix) / matrix.MARKER).read_text())
    except (OSError, ValueError):
        pytest.skip("needs vllm: not a matrix env, set COMPAT_MATRIX_VLLM=<version> or run through tox -e vllmNNN")
    return matrix.resolve(record["wanted"]["version"])
