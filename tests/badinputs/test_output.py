"""Output errors never traceback (issue 14): a full stdout (/dev/full), a closed stdout, a reader that left, an
ASCII-only output encoding. Real subprocesses, because these are properties of the process's streams."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HW = str(ROOT / "tests" / "fixtures" / "hardware" / "h100-sxm.toml")
COMMANDS = [["doctor", "--hardware", HW], ["env", "--hardware", HW]]  # one text report, one script; kept few: slow


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPAT_", "PYTHONIOENCODING"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _run(argv, stdout, env=None, close_stdout=False):
    cmd = [sys.executable, "-m", "compat", *argv]
    if close_stdout:  # the shell's `>&-`
        cmd = ["sh", "-c", 'exec "$0" "$@" >&-', *cmd]
    return subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env or _env(), timeout=120, text=True)


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: "-".join(x for x in a if not x.startswith("/")))
def test_full_stdout_is_one_line_and_exit_2(argv):
    with open("/dev/full", "w") as full:
        r = _run(argv, full)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "cannot write the output" in r.stderr


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: "-".join(x for x in a if not x.startswith("/")))
def test_closed_stdout_keeps_the_answer(argv):
    ref = _run(argv, subprocess.DEVNULL)
    r = _run(argv, None, close_stdout=True)
    assert r.returncode == ref.returncode and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: "-".join(x for x in a if not x.startswith("/")))
def test_ascii_output_encoding(argv):
    ref = _run(argv, subprocess.PIPE)
    r = _run(argv, subprocess.PIPE, env=_env(PYTHONIOENCODING="ascii", LC_ALL="C"))
    assert r.returncode == ref.returncode and "Traceback" not in r.stderr, r.stderr
    r.stdout.encode("ascii")


def test_reader_that_left_is_not_a_traceback():
    p = subprocess.Popen([sys.executable, "-m", "compat", "doctor", "--hardware", HW], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=_env())
    assert p.stdout is not None
    p.stdout.read(5)
    p.stdout.close()
    err = p.stderr.read().decode() if p.stderr else ""
    assert p.wait(timeout=120) in (0, 1, 141) and "Traceback" not in err, err
