"""Run the bad-input bench (badinput_cases.py): every case gets exactly its outcome; none is silently wrong, none
ends in a traceback, none hangs.

In-process (cli.main) so 300+ cases take seconds; each case runs under a 20 s alarm (a hang is a failure, not a
stuck suite). `python tests/badinputs/test_bench.py` prints the counts for the report.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from badinput_cases import DIR, FIFO, HUGE, Case, all_cases  # noqa: E402

CASES = all_cases()
ALARM_S = 20


class Hang(Exception):
    pass


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str
    verdict: str  # ok | silently-wrong | traceback | hang | not-one-line | wrong-message


def _materialize(case: Case, d: Path) -> Dict[str, str]:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in case.files:
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if text == FIFO:
            os.mkfifo(p)
        elif text == DIR:
            p.mkdir()
        elif text == HUGE:
            p.write_bytes(b"# padding\n" * ((2 << 20) // 10 + 1))
        elif name.endswith(".toml") and "caf\xe9" in text:
            p.write_bytes(text.encode("latin-1"))
        else:
            p.write_text(text)
    return {k: v.replace("{d}", str(d)) for k, v in case.env}


def run_case(case: Case, d: Path) -> Tuple[int, str, str, str]:
    """(exit, stdout, stderr, error) of the case in this process; error is 'traceback: ...' or 'hang'."""
    import compat
    import compat.detect
    from compat import cli

    env = _materialize(case, d)
    argv = [a.replace("{d}", str(d)) for a in case.argv]
    saved = dict(os.environ)
    for k in list(os.environ):
        if k.startswith(("COMPAT_", "CUDA_VISIBLE", "NVIDIA_VISIBLE", "VLLM_", "NCCL_")):
            del os.environ[k]
    os.environ["XDG_CACHE_HOME"] = str(d / "cache")
    os.environ.update(env)
    out, err = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(Hang()))
    signal.alarm(ALARM_S)
    error = ""
    code = -1
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    except Hang:
        error = "hang"
    except BaseException:  # noqa: BLE001 - exactly what the bench counts
        error = "traceback: " + traceback.format_exc().strip().splitlines()[-1]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        os.environ.clear()
        os.environ.update(saved)
        compat.revert()
        compat.detect.clear_cache()
    return code, out.getvalue().replace(str(d), "{d}"), err.getvalue().replace(str(d), "{d}"), error


def judge(case: Case, d: Path) -> Outcome:
    code, out, err, error = run_case(case, d)
    if error:
        return Outcome(code, out, err, error.split(":")[0])
    if case.same_as is not None:
        b_code, b_out, _, b_error = run_case(case.same_as, d.parent / (d.name + "-baseline"))
        assert not b_error, b_error
        ok = (code, out) == (b_code, b_out) and code in (0, 1)
        return Outcome(code, out, err, "ok" if ok else "silently-wrong")
    if case.expect == 2:
        if code in (0, 1):
            return Outcome(code, out, err, "silently-wrong")
        if code != 2:
            return Outcome(code, out, err, f"exit-{code}")
        if len(err.strip().splitlines()) != 1:
            return Outcome(code, out, err, "not-one-line")
        if case.fragment and case.fragment not in err:
            return Outcome(code, out, err, "wrong-message")
        return Outcome(code, out, err, "ok")
    return Outcome(code, out, err, "ok" if code == case.expect or (case.expect == -1 and code in (0, 1))
                   else f"exit-{code}")


def test_the_bench_has_300_cases():
    assert len(CASES) >= 300, len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path):
    o = judge(case, tmp_path / "case")
    assert o.verdict == "ok", f"{case.id}: {o.verdict} (exit {o.code})\nstderr: {o.err}\nstdout: {o.out[:300]}"


if __name__ == "__main__":
    import tempfile
    from collections import Counter

    counts: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for n, c in enumerate(CASES):
            o = judge(c, Path(tmp) / f"c{n}")
            counts[o.verdict] += 1
            if o.verdict != "ok":
                print(f"{c.id}: {o.verdict} exit {o.code}: {o.err.strip()[:200]}")
    print(f"{len(CASES)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"silently wrong {counts['silently-wrong']}, tracebacks {counts['traceback']}, hangs {counts['hang']}")
