"""Startup cost of compat, measured in one run (issue 3): interpreter start + `import compat; compat.setup()`
against `python -c pass` and `python -c "import torch"`, and `python -m compat doctor` against
`python -m torch.utils.collect_env`.

    python benchmarks/startup.py [--python PY] [--runs N] [--out DIR]

Each command runs N times in alternation (so background load hits all alike); the median and min are reported.
The torch rows need torch in the interpreter given by --python (skipped otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "python -c pass": ["-c", "pass"],
    "import compat; compat.setup()": ["-c", "import compat; compat.setup()"],
    "import torch": ["-c", "import torch"],
    "python -m compat doctor": ["-m", "compat", "doctor"],
    "python -m torch.utils.collect_env": ["-m", "torch.utils.collect_env"],
}


def has_torch(py: str) -> bool:
    return subprocess.run([py, "-c", "import importlib.util,sys; sys.exit(importlib.util.find_spec('torch') is None)"],
                          capture_output=True).returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--slow-runs", type=int, default=3, help="runs for import torch / collect_env")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--label", default=platform.node())
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    torch_ok = has_torch(args.python)
    times = {k: [] for k in CASES}
    slow = {"import torch", "python -m torch.utils.collect_env"}
    for i in range(args.runs):
        for name, argv in CASES.items():
            if name in slow and (not torch_ok or i >= args.slow_runs):
                continue
            t = time.perf_counter()
            r = subprocess.run([args.python, *argv], env=env, capture_output=True, cwd=ROOT)
            dt = time.perf_counter() - t
            if r.returncode not in (0, 1):  # doctor exits 1 when it reports errors: still a full run
                raise SystemExit(f"{name} failed: {r.stderr.decode()[-500:]}")
            times[name].append(dt * 1000)
    res = {k: {"median_ms": round(statistics.median(v), 2), "min_ms": round(min(v), 2), "runs": len(v)}
           for k, v in times.items() if v}
    base = res["python -c pass"]["median_ms"]
    setup = res["import compat; compat.setup()"]["median_ms"]
    summary = {"setup_overhead_ms": round(setup - base, 2), "setup_goal_ms": 50,
               "setup_overhead_min_ms": round(res["import compat; compat.setup()"]["min_ms"]
                                              - res["python -c pass"]["min_ms"], 2)}
    if "python -m torch.utils.collect_env" in res:
        summary["doctor_speedup_vs_collect_env"] = round(
            res["python -m torch.utils.collect_env"]["median_ms"] / res["python -m compat doctor"]["median_ms"], 1)
        summary["doctor_goal_speedup"] = 10
    if "import torch" in res:
        summary["import_torch_ms"] = res["import torch"]["median_ms"]
    doc = {"benchmark": "startup", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": args.label, "cpus": os.cpu_count(), "python": args.python,
           "python_version": subprocess.run([args.python, "-c", "import sys;print(sys.version.split()[0])"],
                                            capture_output=True, text=True).stdout.strip(),
           "results": res, "summary": summary}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"startup-{datetime.now(timezone.utc):%Y-%m-%d}-{args.label}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc["summary"], indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
