"""Same sessions as tox.ini, from the same table (compat/data/vllm_releases.toml via tools/matrix.py).

    nox -s py                         fast unit loop, no vLLM
    nox -s vllm072                    whole suite inside the real vLLM 0.7.2 (tests for other releases skip)
    nox -s vllm072 -- tests/vllm/test_x.py
    nox -l                            list; sessions live in .nox/<name>, installs share the uv cache with tox
"""
from __future__ import annotations

import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tools"))
import matrix  # noqa: E402  (tools/matrix.py: stdlib-only table reader + installer)

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["py", "install-e2e", *matrix.matrix_envs(), *matrix.verl_envs(), "ray"]
PYTHON = "3.11"
# what each session promises (tests/promises.py; the same lists as tox.ini's COMPAT_PROMISES)
BASE_PROMISES = "uv,bash,fish,git,base-python"


@nox.session(python=PYTHON)
def py(session: nox.Session) -> None:
    """Lint (ruff), types (mypy --strict on compat/) and the unit tests without vLLM, as `tox -e py`."""
    session.install("-e", ".[test,lint]")
    session.run("ruff", "check", "compat", "tools", "tests")
    session.run("mypy")
    session.run("pytest", *(session.posargs or ["tests", "--ignore=tests/vllm"]),
                env={"COMPAT_MATRIX_ENV": "py", "COMPAT_PROMISES": BASE_PROMISES})


# tests whose answer depends on the release (the same list as tox.ini's vLLM envs); the unit suite runs in py
MATRIX_TESTS = ['tests/hf', 'tests/test_fp8_quantize.py', 'tests/test_fp8_triton.py', 'tests/test_fp8_switch.py', 'tests/test_integrations_plugin.py', 'tests/test_integrations_autoload.py', 'tests/test_patch_engine.py', 'tests/test_vllm_matrix_table.py', 'tests/vllm']


def _vllm_session(name: str, version: str):
    def run(session: nox.Session) -> None:
        session.install("-e", ".[test]")
        python = str(Path(session.virtualenv.location) / "bin" / "python")
        session.run("python", str(ROOT / "tools" / "matrix.py"), "install", name, "--python", python)
        session.run("pytest", *(session.posargs or MATRIX_TESTS),
                    env={"COMPAT_MATRIX_ENV": name, "COMPAT_MATRIX_VLLM": version,
                         "COMPAT_PROMISES": BASE_PROMISES + ",vllm,torch,autoload-pth"})

    run.__doc__ = f"Whole suite inside the real vLLM {version} (cutoff and overrides from vllm_releases.toml)."
    return run


for _name, _version in matrix.matrix_envs().items():
    nox.session(python=PYTHON, name=_name)(_vllm_session(_name, _version))


def _verl_session(name: str, version: str):
    def run(session: nox.Session) -> None:
        session.install("-e", ".[test]")
        python = str(Path(session.virtualenv.location) / "bin" / "python")
        session.run("python", str(ROOT / "tools" / "matrix.py"), "install", name, "--python", python)
        session.run("pytest", *(session.posargs or ["tests/verl", "tests/test_integrations_verl.py"]),
                    env={"COMPAT_MATRIX_ENV": name,
                         "COMPAT_PROMISES": "uv,bash,git,base-python,verl,torch,ray,autoload-pth"})

    run.__doc__ = f"verl {version}'s own code with compat (cutoff and torch from compat/data/verl.toml)."
    return run


for _name, _version in matrix.verl_envs().items():
    nox.session(python=PYTHON, name=_name)(_verl_session(_name, _version))


@nox.session(python=PYTHON, name="install-e2e")
def install_e2e(session: nox.Session) -> None:
    """Real `compat install` into throwaway venvs, doctor there, snapshot restore on failure."""
    session.install("-e", ".[test]")
    env = {"COMPAT_E2E": "1", "COMPAT_MATRIX_ENV": "install-e2e", "COMPAT_PROMISES": BASE_PROMISES + ",e2e"}
    session.run("pytest", "-m", "slow", *(session.posargs or ["tests/test_install_e2e.py"]), env=env)


@nox.session(python=PYTHON)
def ray(session: nox.Session) -> None:
    """Ray integration on a local multi-node cluster (CPU)."""
    session.install("-e", ".[test,ray]")
    session.run("pytest", *(session.posargs or ["tests/ray", "tests/test_integrations_ray_unit.py"]),
                env={"COMPAT_MATRIX_ENV": "ray", "COMPAT_PROMISES": BASE_PROMISES + ",ray"})
