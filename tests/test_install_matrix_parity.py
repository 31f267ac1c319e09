"""One source of truth: what the tox matrix installs for a release is exactly what `compat plan`/`install` install.

For every release in compat/data/vllm_releases.toml (not just the matrix envs), the matrix' `uv pip install`
(tools/matrix.py install_cmd) and the plan's resolving step are compared argument by argument: cutoff, overrides,
requirements (vllm, the torch pin, also_install). pip's step carries the same cutoff and requirements.
"""

from __future__ import annotations

from dataclasses import astuple

import pytest

from compat import versions
from compat._toml import load_data
from compat.detect import detect
from compat.install import planner
from helpers import FIXTURES, load_tools_matrix

HOPPER = FIXTURES / "h100-sxm.toml"      # driver 580: the default torch wheel of every release fits, no extra index
RELEASES = [r["version"] for r in load_data("vllm_releases")["release"]]


@pytest.fixture(scope="module")
def matrix():
    return load_tools_matrix("compat_tools_matrix_parity")


def _python_for(rel) -> str:
    return next(py for py in ("3.11", "3.12", "3.10", "3.9") if versions.in_spec(py, rel["python"]))


def _plan(version: str):
    rel = next(r for r in load_data("vllm_releases")["release"] if r["version"] == version)
    return rel, planner.make_plan(detect(str(HOPPER)), f"vllm=={version}", python=_python_for(rel), environ={})


def _resolving_step(plan, installer: str) -> tuple:
    (step,) = [s for s in plan.steps(installer, "PY", pip_has_cutoff=True) if s.verify]
    return step.argv


@pytest.mark.parametrize("version", RELEASES)
def test_plan_installs_what_the_matrix_installs(version, matrix, monkeypatch):
    monkeypatch.setenv("COMPAT_UV", "uv")
    rel, plan = _plan(version)
    assert plan.torch_default_variant, "fixture must need no variant index, so both commands are comparable"
    overrides_file = planner.OVERRIDES_FILE if rel["overrides"] else None
    assert list(_resolving_step(plan, "uv")) == matrix.install_cmd(rel, "PY", overrides_file)
    assert astuple(plan.release_set) == astuple(matrix.release_set(rel))
    # pip: same cutoff filter and the same requirements (its override emulation writes the rest to a file)
    pip = _resolving_step(plan, "pip")
    assert f"--uploaded-prior-to={plan.cutoff}" in pip
    assert list(pip[-len(plan.requirements()):]) == plan.requirements() == matrix.release_set(rel).requirements()


@pytest.mark.parametrize("version", RELEASES)
def test_triton_before_3_3_gets_setuptools(version):
    """torch < 2.7 pins triton <= 3.2, whose triton/runtime/build.py imports setuptools without declaring it (the
    first fused-MoE kernel build fails without it); every such plan must install it (tested for real by
    tests/test_install_e2e.py, which runs the build path after installing 0.7.x and 0.8.x)."""
    rel, plan = _plan(version)
    if versions.parse(rel["torch"]) < versions.parse("2.7"):
        assert "setuptools" in plan.requirements()
        assert any("setuptools" in c for c in plan.commands("uv")) and any("setuptools" in c for c in plan.commands("pip"))
