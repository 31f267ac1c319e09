"""A/B startup cost of two source trees of compat on a loaded box (issue 14): `import compat; compat.setup()`
over bare `python -c pass`, runs alternating between the trees so background load hits both alike.

    python benchmarks/startup_ab.py BEFORE AFTER [--runs N] [--label devbox-2core]

BEFORE and AFTER are source trees or git revisions of this repository (e.g. `a57dd59^ main`); a revision is
`git archive`d into a temporary directory and recorded in the result as its full commit id. Each tree is
byte-compiled first (compileall) and imported through PYTHONPATH. Reports
wall time and CPU time (children's rusage) of the whole process, and CPU time of `import compat; compat.setup()`
measured inside the process (time.process_time), which the box's load disturbs least.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

INSIDE = ("import time; t = time.process_time(); import compat; compat.setup(); "
          "print((time.process_time() - t) * 1000)")


def run(py: str, argv: list, path: str) -> tuple:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPAT_")}
    if path:
        env["PYTHONPATH"] = path
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run([py, *argv], env=env, capture_output=True, text=True, check=True).stdout
    wall = (time.perf_counter() - t) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu, out


def tree_of(arg: str, tmp: Path) -> tuple:
    """(source tree, commit id or None): a directory as given, else a git revision of this repository archived."""
    if Path(arg).is_dir():
        return arg, None
    repo = Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", arg + "^{commit}"], capture_output=True,
                            text=True, check=True).stdout.strip()
    dest = tmp / commit[:12]
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(repo), "archive", commit], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return str(dest), commit


def _uptime() -> str:
    """The box's load averages (1, 5, 15 min) as `uptime` prints them, to judge how quiet the run was."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def stats(values: list) -> dict:
    return {"median_ms": round(statistics.median(values), 2), "min_ms": round(min(values), 2), "runs": len(values)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--label", default=platform.node())
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="startup-ab-"))
    (args.before, before_commit), (args.after, after_commit) = tree_of(args.before, tmp), tree_of(args.after, tmp)
    for tree in (args.before, args.after):
        compileall.compile_dir(str(Path(tree) / "compat"), quiet=1)
    res: dict = {k: {"wall": [], "cpu": [], "inside_cpu": []} for k in ("pass", "before", "after")}
    uptime_start = _uptime()
    load = [os.getloadavg()[0]]
    for _ in range(args.runs):
        w, c, _ = run(args.python, ["-c", "pass"], "")
        res["pass"]["wall"].append(w)
        res["pass"]["cpu"].append(c)
        for k, tree in (("before", args.before), ("after", args.after)):
            w, c, out = run(args.python, ["-c", INSIDE], tree)
            res[k]["wall"].append(w)
            res[k]["cpu"].append(c)
            res[k]["inside_cpu"].append(float(out.strip()))
        load.append(os.getloadavg()[0])
    doc = {"benchmark": "startup-ab", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": args.label, "cpus": os.cpu_count(), "load_avg_1min": [round(min(load), 1), round(max(load), 1)],
           "uptime_start": uptime_start, "uptime_end": _uptime(),
           "before": args.before, "after": args.after, "before_commit": before_commit, "after_commit": after_commit,
           "results": {k: {m: stats(v) for m, v in d.items() if v} for k, d in res.items()}}
    r = doc["results"]
    doc["summary"] = {
        f"{k}_overhead_over_bare_python_ms": {
            "wall_median": round(r[k]["wall"]["median_ms"] - r["pass"]["wall"]["median_ms"], 1),
            "cpu_median": round(r[k]["cpu"]["median_ms"] - r["pass"]["cpu"]["median_ms"], 1),
            "cpu_min": round(r[k]["cpu"]["min_ms"] - r["pass"]["cpu"]["min_ms"], 1),
            "inside_cpu_median": r[k]["inside_cpu"]["median_ms"], "inside_cpu_min": r[k]["inside_cpu"]["min_ms"]}
        for k in ("before", "after")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"startup-ab-{datetime.now(timezone.utc):%Y-%m-%d}-{args.label}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(doc["summary"], indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
