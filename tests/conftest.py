from __future__ import annotations

import sys
from pathlib import Path

import pytest

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _isolated_compat(monkeypatch, tmp_path):
    """Each test starts with compat's caches empty and without the user's compat env vars."""
    for var in ("COMPAT_PROFILE", "COMPAT_PROFILE_PATH", "COMPAT_DISABLE_PATCHES", "COMPAT_HIDDEN_STATES",
                "COMPAT_FP8", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "VLLM_ATTENTION_BACKEND",
                "NCCL_P2P_DISABLE", "NCCL_IB_DISABLE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    import compat
    import compat.detect
    compat.detect.clear_cache()
    yield
    compat.revert()
    compat.detect.clear_cache()



# ------------------------------------------------------------------------------------------------------------------
# promises (tests/promises.py): a skip of a feature this env promises is a failure; a summary line per run


def _skip_reason(report) -> str:
    lr = report.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        return str(lr[2])
    return str(lr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        import promises

        why = promises.verdict(_skip_reason(report))
        if why:
            report.outcome = "failed"
            report.longrepr = why


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module-level skip (pytest.skip(allow_module_level=True), importorskip at import) is judged the same way."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped:
        import promises

        why = promises.verdict(_skip_reason(report))
        if why:
            report.outcome = "failed"
            report.longrepr = why


def _failure_cause(report) -> str:
    """The assertion or exception message of a failed report (its 'E' lines), else the end of its text."""
    text = str(report.longrepr)
    lines = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("E ")]
    return " | ".join(lines[:6]) if lines else text[-400:]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line per run: which env, what it promises, how many tests ran and skipped (and for lack of what)."""
    import os
    from collections import Counter

    import promises

    stats = terminalreporter.stats
    counts = {k: len([r for r in stats.get(k, []) if getattr(r, "when", "call") in ("call", "setup", "collect")])
              for k in ("passed", "failed", "error", "skipped")}
    by_feature: Counter = Counter()
    for r in stats.get("skipped", []):
        by_feature[promises.feature_of(_skip_reason(r)) or "other-release"] += 1
    env = os.environ.get("COMPAT_MATRIX_ENV", "no-tox-env")
    promised = ",".join(sorted(promises.promised())) if promises.declared() else "undeclared"
    skipped = " ".join(f"{k}={v}" for k, v in sorted(by_feature.items())) or "none"
    line = (f"compat-env {env}: promises [{promised}] ran {counts['passed'] + counts['failed']} "
            f"(passed {counts['passed']}, failed {counts['failed']}, errors {counts['error']}), "
            f"skipped {counts['skipped']} ({skipped})")
    terminalreporter.write_line(line)
    for r in stats.get("failed", []) + stats.get("error", []):
        # CI keeps only the tail of a long log: the cause of each failure, one line, next to the summary line
        cause = " ".join(_failure_cause(r).split())[:400]
        terminalreporter.write_line(f"compat-env {env}: FAILED {r.nodeid}: {cause}")
    path = os.environ.get("COMPAT_RUN_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
