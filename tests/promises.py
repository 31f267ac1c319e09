"""What a test env promises, and which skips it therefore forbids.

tox.ini sets COMPAT_PROMISES=<feature,feature,...> per env (the features that env is built to have). A test that
cannot run names the feature it lacks through `need(feature, why)` (or `pytest.importorskip`, whose reason names
the module); tests/conftest.py turns the skip into a FAILURE when the env promises that feature, and also when the
skip names no known feature at all (an unexplained skip hides a failure). A skip is allowed only for a feature the
env does not promise. Without COMPAT_PROMISES (a bare `pytest` outside tox) nothing is promised and skips stay
skips, but the summary line says so.
"""
from __future__ import annotations

import os
import re
from typing import Dict, FrozenSet, NoReturn, Optional

import pytest

# feature -> what having it means (the names tox.ini may promise)
FEATURES: Dict[str, str] = {
    "uv": "a uv binary (tox-uv puts the one it uses on PATH; COMPAT_UV=/path/to/uv elsewhere)",
    "bash": "a bash on PATH",
    "fish": "a fish shell on PATH (.ci/run installs Debian's fish)",
    "git": "the tests run from a git checkout",
    "base-python": "the env's base interpreter (sys._base_executable) is a real non-venv CPython with packaging",
    "vllm": "the real vLLM release of the matrix env, with its torch",
    "verl": "the real verl release of a verl matrix env (tox -e verl041 ... verl-latest), with its torch and Ray",
    "torch": "torch importable",
    "autoload-pth": "compat-autoload.pth installed in the env's site-packages (compat installed as a wheel)",
    "ray": "Ray installed and a local cluster can start (tox -e ray)",
    "e2e": "real installs into throwaway venvs (tox -e install-e2e, COMPAT_E2E=1)",
    "triton>=3.4": "triton 3.4 or newer (the FP8 Triton kernels through its interpreter; owned by the device work)",
    "gpu": "a CUDA GPU of sm89 or newer visible to torch (the device machine; no CI env has one)",
    "numpy": "numpy importable",
}

# `pytest.importorskip` reasons name the module; which feature each module is
_MODULE_FEATURE = {"torch": "torch", "vllm": "vllm", "ray": "ray", "numpy": "numpy", "triton": "triton>=3.4"}
_NEEDS = re.compile(r"^needs ([A-Za-z0-9_.<>=!-]+):")
_IMPORT = re.compile(r"could not import '([A-Za-z0-9_.]+)'|^module '([A-Za-z0-9_.]+)' has __version__")
# the vLLM release marker (tests/vllm/conftest.py): a test for another release is not this env's promise
_OTHER_RELEASE = re.compile(r"^needs (vLLM|transformers) [^:]+, this env has ")


def promised() -> FrozenSet[str]:
    """The features this env promises (COMPAT_PROMISES); an unknown name is a usage error in tox.ini."""
    raw = os.environ.get("COMPAT_PROMISES", "")
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = sorted(names - set(FEATURES))
    if unknown:
        raise pytest.UsageError(f"COMPAT_PROMISES names unknown features {unknown}; known: {sorted(FEATURES)}")
    return names


def declared() -> bool:
    return "COMPAT_PROMISES" in os.environ


def need(feature: str, why: str) -> NoReturn:
    """Skip for lack of `feature` (a failure in an env that promises it)."""
    if feature not in FEATURES:
        raise ValueError(f"unknown feature {feature!r}; add it to tests/promises.py FEATURES")
    pytest.skip(f"needs {feature}: {why}")


def feature_of(reason: str) -> Optional[str]:
    """The feature a skip reason names, '' for a test of another vLLM release, None when it names none."""
    reason = reason.strip()
    if reason.startswith("Skipped: "):
        reason = reason[len("Skipped: "):]
    if _OTHER_RELEASE.match(reason):
        return ""
    m = _NEEDS.match(reason)
    if m and m.group(1) in FEATURES:
        return m.group(1)
    m = _IMPORT.search(reason)
    if m:
        module = (m.group(1) or m.group(2)).split(".")[0]
        return _MODULE_FEATURE.get(module)
    return None


def verdict(reason: str) -> Optional[str]:
    """Why this skip must count as a failure here, or None when the env allows it."""
    if not declared():
        return None
    feature = feature_of(reason)
    env = os.environ.get("COMPAT_MATRIX_ENV", "this env")
    if feature is None:
        return (f"skip names no feature ({reason!r}): a skip must say what it needs with tests/promises.need() "
                f"so {env}'s promises can judge it")
    if feature and feature in promised():
        return f"{env} promises {feature} ({FEATURES[feature]}), but the test skipped: {reason}"
    return None
