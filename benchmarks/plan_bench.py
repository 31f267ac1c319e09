"""`python -m compat plan` wall time (goal <= 1 s, offline, tables only) next to `uv pip install --dry-run` of the same set.

    python benchmarks/plan_bench.py [--fixture tests/fixtures/hardware/h100-sxm.toml] [--request vllm==0.7.2] [--runs 5]

The uv dry run resolves against the package index (network, or the uv cache when warm) into an empty throwaway venv.
Writes benchmarks/results/plan-<date>-<host>.json.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _wall(cmd, env=None, cwd=None):
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    return time.perf_counter() - t, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixture", default=str(ROOT / "tests/fixtures/hardware/h100-sxm.toml"))
    ap.add_argument("--request", default="vllm==0.7.2")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    plan_cmd = [sys.executable, "-m", "compat", "plan", args.request, "--hardware", args.fixture, "--format", "json"]
    plan_s, plan = [], None
    for _ in range(args.runs):
        s, out = _wall(plan_cmd, env=env, cwd=ROOT)
        if out.returncode != 0:
            sys.stderr.write(out.stderr)
            return 1
        plan_s.append(s)
        plan = json.loads(out.stdout)
    bare_s = [_wall([sys.executable, "-c", "pass"])[0] for _ in range(args.runs)]
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "request": args.request, "fixture": os.path.relpath(args.fixture, ROOT),
        "plan": {"vllm": plan["vllm"], "torch": plan["torch"], "torch_variant": plan["torch_variant"],
                 "flash_attn": plan["flash_attn"], "cutoff": plan["cutoff"]},
        "compat_plan_s": {"median": round(statistics.median(plan_s), 3), "min": round(min(plan_s), 3),
                          "runs": [round(x, 3) for x in plan_s]},
        "python_startup_s": round(statistics.median(bare_s), 3),
        "compat_plan_over_startup_s": round(min(plan_s) - min(bare_s), 3),
        "load_average": os.getloadavg()[0],
        "goal_s": 1.0,
    }
    uv = shutil.which("uv")
    if uv:
        uv_cmd = plan["commands_by_installer"]["uv"]
        main_cmd = [c for c in uv_cmd if "vllm==" in c][0].split()
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([uv, "venv", "-q", "--python", platform.python_version(), f"{tmp}/v"], check=True)
            argv = [uv] + main_cmd[1:3] + ["--dry-run"] + main_cmd[3:]
            argv[argv.index("--python") + 1] = f"{tmp}/v/bin/python"
            for c in uv_cmd:  # the overrides file, if any
                if c.startswith("printf"):
                    subprocess.run(c, shell=True, cwd=tmp, check=True)
            runs = []
            for _ in range(max(2, args.runs // 2)):
                s, out = _wall(argv, cwd=tmp)
                runs.append(s)
            result["uv_dry_run_s"] = {"median": round(statistics.median(runs), 3), "runs": [round(x, 3) for x in runs],
                                      "ok": out.returncode == 0, "command": " ".join(["uv"] + argv[1:]),
                                      "note": "warm uv cache; the first (cold) run is included in runs"}
        result["speedup_vs_uv_dry_run"] = round(result["uv_dry_run_s"]["median"] / result["compat_plan_s"]["median"], 1)
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"plan-{dt.date.today().isoformat()}-{platform.node() or 'host'}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
