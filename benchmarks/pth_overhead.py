#!/usr/bin/env python3
"""What compat-autoload.pth costs every Python start when COMPAT_AUTOLOAD is unset (goal < 1 ms), and when on.

Two measurements, because process start-up noise on a busy 2-core box (tens of ms, +-ms jitter) hides a
microsecond cost:
  1. interpreter start: `python -c pass` in one fresh venv, alternating runs with the .pth removed / installed in its
     site-packages (same interpreter, same files otherwise), many runs, median and the difference of medians;
  2. the .pth line itself, executed in-process exactly as site.py does (exec of the line), timed with timeit.
Also, for reference, start with COMPAT_AUTOLOAD=1 (compat imported and setup() run at start).

    python benchmarks/pth_overhead.py [--runs 200]   -> benchmarks/results/pth_overhead-<date>.json
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PTH = ROOT / "compat-autoload.pth"


def make_venv(where: Path) -> Path:
    uv = shutil.which("uv")
    if uv:
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(where)], check=True)
    else:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    return where / "bin" / "python"


def site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    return Path(out)


def start_ms(python: Path, env) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(python), "-c", "pass"], env=env, check=True)
    return (time.perf_counter() - t0) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPAT_", "PYTHON"))}
    line = PTH.read_text().splitlines()[0]
    with tempfile.TemporaryDirectory() as tmp:
        python = make_venv(Path(tmp) / "venv")
        sp = site_packages(python)
        target = sp / PTH.name
        without, with_pth = [], []
        for _ in range(5):                                   # warm the page cache
            start_ms(python, env)
        for i in range(args.runs):                           # alternate, so drift hits both sides alike
            for installed in ((False, True) if i % 2 else (True, False)):
                if installed:
                    shutil.copy(PTH, target)
                elif target.exists():
                    target.unlink()
                (with_pth if installed else without).append(start_ms(python, env))
        # reference: autoload on, compat importable from the checkout (PYTHONPATH is on sys.path before .pth lines)
        shutil.copy(PTH, target)
        import sysconfig
        deps = sysconfig.get_paths()["purelib"]             # packaging, nvidia-ml-py of the running interpreter
        on_env = dict(env, COMPAT_AUTOLOAD="1", PYTHONPATH=os.pathsep.join([str(ROOT), deps]), COMPAT_HARDWARE=str(
            ROOT / "tests" / "fixtures" / "hardware" / "v100-sxm2.toml"))
        deps_ok = subprocess.run([str(python), "-c", "import packaging"], env=on_env, capture_output=True).returncode
        autoload_on = None
        if deps_ok == 0:
            autoload_on = statistics.median(start_ms(python, on_env) for _ in range(max(20, args.runs // 10)))

    # the line alone, as site.py runs it (exec), with the variable unset
    saved = os.environ.pop("COMPAT_AUTOLOAD", None)
    code = compile(line, str(PTH), "exec")
    n = 200_000
    per_exec_us = min(timeit.repeat(lambda: exec(code, {}), number=n, repeat=5)) / n * 1e6
    per_compile_exec_us = min(timeit.repeat(lambda: exec(line, {}), number=n // 10, repeat=5)) / (n // 10) * 1e6
    if saved is not None:
        os.environ["COMPAT_AUTOLOAD"] = saved

    med_without, med_with = statistics.median(without), statistics.median(with_pth)
    result = {
        "benchmark": "pth_overhead",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_1m": os.getloadavg()[0]},
        "runs_each": args.runs,
        "start_ms_without_pth_median": round(med_without, 3),
        "start_ms_with_pth_off_median": round(med_with, 3),
        "start_delta_ms_median": round(med_with - med_without, 3),
        "start_ms_without_pth_p10_p90": [round(x, 3) for x in statistics.quantiles(without, n=10)[::8]],
        "start_ms_with_pth_p10_p90": [round(x, 3) for x in statistics.quantiles(with_pth, n=10)[::8]],
        "pth_line_exec_us_off": round(per_compile_exec_us, 3),          # what site.py does: exec(line) incl. compile
        "pth_line_exec_precompiled_us_off": round(per_exec_us, 3),
        "start_ms_autoload_on_median": round(autoload_on, 3) if autoload_on else None,
        "goal_ms": 1.0,
        "meets_goal": per_compile_exec_us / 1e3 < 1.0,
        "note": "start-up medians include process-spawn noise of this machine; the in-process exec time is the cost "
                "the .pth adds when COMPAT_AUTOLOAD is unset",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"pth_overhead-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0 if result["meets_goal"] else 1


if __name__ == "__main__":
    sys.exit(main())
