#!/usr/bin/env python3
"""Harvest every release in compat/data/vllm_releases.toml, one throwaway env at a time (`tox -e harvest`).

    python tools/harvest_walk.py                    # every release without a file yet, oldest first
    python tools/harvest_walk.py 0.9.1 0.21.0       # just these (re-harvests)
    python tools/harvest_walk.py --all              # re-harvest every release

Per release: check free disk (stop below --min-free-gb), create a venv, install the release exactly as the matrix
does (tools/matrix.py: cutoff, overrides, also_install), run tools/harvest.py in it, delete the env. Installs are
pipelined one release ahead of the harvest (network while the CPU imports), so at most two envs exist at once.

Disk stays bounded: releases whose torch a matrix env also uses install from the default uv cache (those wheels
are there for the matrix anyway); the others use a private cache (--cache) that is wiped whenever the torch
version changes. After each harvest the release's own vllm wheel is dropped from whichever cache it went to
unless a matrix env uses that release. A release that cannot be installed is listed in
compat/data/harvested/skipped.toml with the reason. Log lines go to stdout (nohup it; see docs/harvest.md).
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import harvest as H  # noqa: E402
import matrix as M  # noqa: E402

OUT = H.OUT_DIR
SKIPPED = OUT / "skipped.toml"
WORK = ROOT / ".tox" / "harvest-envs"


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


def free_gb(path: Path) -> float:
    return shutil.disk_usage(path).free / 2**30


def default_cache() -> Path:
    if os.environ.get("UV_CACHE_DIR"):
        return Path(os.environ["UV_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "uv"


def python_for(rel: Dict[str, Any]) -> str:
    """The interpreter for a release's env: python3.11 when the release allows it (all do today), else the
    newest python3.X on PATH inside its range."""
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(rel["python"])
    for minor in (11, 12, 10, 13, 9, 14):
        exe = shutil.which(f"python3.{minor}")
        if exe and f"3.{minor}.0" in spec:
            return exe
    raise RuntimeError(f"no python3.X on PATH satisfies {rel['python']}")


def du_gb(path: Path) -> float:
    """Disk used under path (hard links counted once), GB; 0 when du fails."""
    proc = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True)
    try:
        return int(proc.stdout.split()[0]) / 2**20
    except (IndexError, ValueError):
        return 0.0


def drop_wheel(cache: Path, version: str) -> int:
    """Remove vllm==version's unpacked wheel and its index entries from a uv cache; returns bytes freed.

    uv keeps wheels-v*/pypi/vllm/<version>-<tags> as a symlink to archive-v*/<id> (the unpacked wheel) next to
    <version>-<tags>.http/.msgpack/.lock; only an archive that holds vllm-<version>.dist-info is removed.
    """
    freed = 0
    for entry in cache.glob(f"wheels-v*/pypi/vllm/{version}-*"):
        if entry.is_symlink():
            target = entry.resolve()
            if (target / f"vllm-{version}.dist-info").is_dir():
                freed += sum(f.stat().st_size for f in target.rglob("*") if f.is_file() and not f.is_symlink())
                shutil.rmtree(target, ignore_errors=True)
            entry.unlink(missing_ok=True)
        elif entry.is_file():
            entry.unlink(missing_ok=True)
    return freed


def record_skip(version: str, reason: str) -> None:
    """Add/replace a release in skipped.toml (kept sorted)."""
    entries: Dict[str, Dict[str, str]] = {}
    if SKIPPED.exists():
        data = M._toml_load(SKIPPED)
        for e in data.get("skip", []):
            entries[e["version"]] = e
    entries[version] = {"version": version, "reason": reason, "at": time.strftime("%Y-%m-%d")}
    lines = ["# Releases tools/harvest_walk.py could not harvest, with the reason (docs/harvest.md).", "schema = 1", ""]
    for v in sorted(entries, key=M._vkey):
        e = entries[v]
        lines += ["[[skip]]", f"version = {json.dumps(e['version'])}", f"reason = {json.dumps(e['reason'])}",
                  f"at = {json.dumps(e['at'])}", ""]
    SKIPPED.write_text("\n".join(lines))


def clear_skip(version: str) -> None:
    if not SKIPPED.exists():
        return
    data = M._toml_load(SKIPPED)
    keep = [e for e in data.get("skip", []) if e["version"] != version]
    if len(keep) != len(data.get("skip", [])):
        SKIPPED.unlink()
        for e in keep:
            record_skip(e["version"], e["reason"])


def tail(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return H._clean(" | ".join(lines[-n:]), 600)


def _signal_end(jobs: queue.Queue[Optional[Dict[str, Any]]]) -> None:
    """Put the end marker unless the queue already holds one (a blocking put here deadlocked two workers)."""
    try:
        jobs.put_nowait(None)
    except queue.Full:
        pass


class Walk:
    def __init__(self, rels: List[Dict[str, Any]], private_cache: Path, min_free: float, uv: str,
                 wait_min: float = 0.0, cache_max: float = 0.0) -> None:
        self.rels = rels
        self.private = private_cache
        self.min_free = min_free
        self.uv = uv
        table = M.load_table()
        self.matrix_versions = set(M.matrix_envs(table).values())
        self.matrix_torch = {M.release(v, table)["torch"] for v in self.matrix_versions}
        self.private_torch: Optional[str] = None
        self.wait_min = wait_min
        self.cache_max = cache_max
        self.pending = 0  # jobs installed but not yet cleaned up (their envs still on disk)
        self.idle = threading.Condition()
        self.stop = threading.Event()
        self.stats: List[Dict[str, Any]] = []
        self.lock = threading.Lock()
        self.rc = 0

    def switches_private(self, rel: Dict[str, Any]) -> bool:
        """Whether installing rel wipes the private cache (a new torch group)."""
        return rel["torch"] not in self.matrix_torch and self.private_torch not in (None, rel["torch"])

    def drain(self) -> None:
        """Wait until every installed env is harvested and deleted: at a torch-group switch the old group's env
        would otherwise hold its torch (hard links outlive the wiped cache) while the new torch downloads."""
        with self.idle:
            while self.pending and not self.stop.is_set():
                self.idle.wait(timeout=5)

    def wait_for_disk(self) -> float:
        """Free GB once it is at least --min-free-gb, re-checked every minute for up to --wait-min minutes
        (other sessions free their disk too); returns the last reading."""
        deadline = time.monotonic() + 60 * self.wait_min
        free = free_gb(ROOT)
        while free < self.min_free and time.monotonic() < deadline and not self.stop.is_set():
            log(f"free disk {free:.1f} GB < {self.min_free} GB: waiting (until {self.wait_min:.0f} min are up)")
            time.sleep(60)
            free = free_gb(ROOT)
        return free

    def cache_for(self, rel: Dict[str, Any]) -> Path:
        if rel["torch"] in self.matrix_torch:
            return default_cache()
        if self.private_torch != rel["torch"]:
            if self.private.exists():
                log(f"private cache: torch {self.private_torch} -> {rel['torch']}, wiping {self.private}")
                shutil.rmtree(self.private, ignore_errors=True)
            self.private_torch = rel["torch"]
        return self.private

    def install(self, rel: Dict[str, Any]) -> Dict[str, Any]:
        version = rel["version"]
        job: Dict[str, Any] = {"rel": rel, "version": version, "torch": rel["torch"]}
        if self.switches_private(rel):
            self.drain()
            if self.private.exists():  # wipe before reading free disk: the new group starts from a clean cache
                self.cache_for(rel)
        if (rel["torch"] not in self.matrix_torch and self.private.exists() and self.cache_max
                and du_gb(self.private) > self.cache_max):
            # each release of a group adds its own flashinfer / cutlass wheels: past the cap, start the cache over
            self.drain()
            log(f"private cache {du_gb(self.private):.1f} GB > {self.cache_max} GB: wiping it before {version}")
            shutil.rmtree(self.private, ignore_errors=True)
            job["cache_rewiped"] = True
        if free_gb(ROOT) < self.min_free:
            self.drain()  # the previous release's env goes first (the install below then runs alone)
        if free_gb(ROOT) < self.min_free and rel["torch"] not in self.matrix_torch and self.private.exists():
            # the floor beats the group cache: re-downloading this torch costs ~2 min, stopping costs the release
            log(f"free disk {free_gb(ROOT):.1f} GB < {self.min_free} GB: wiping the private cache "
                f"({du_gb(self.private):.1f} GB, torch {self.private_torch}) before {version}")
            shutil.rmtree(self.private, ignore_errors=True)
            job["cache_rewiped"] = True
        free = self.wait_for_disk()
        job["free_before_gb"] = round(free, 1)
        if free < self.min_free:
            job["fatal"] = f"free disk {free:.1f} GB < {self.min_free} GB; stopping before {version}"
            return job
        cache = self.cache_for(rel)
        job["cache"] = cache
        # only a wheel this walk brought into the cache is dropped after the harvest (never another env's)
        job["wheel_was_cached"] = any(cache.glob(f"wheels-v*/pypi/vllm/{version}-*"))
        env = WORK / f"vllm-{version}"
        shutil.rmtree(env, ignore_errors=True)
        WORK.mkdir(parents=True, exist_ok=True)
        environ = dict(os.environ, UV_CACHE_DIR=str(cache), COMPAT_UV=self.uv)
        t0 = time.monotonic()
        try:
            subprocess.run([self.uv, "venv", "-q", "--python", python_for(rel), str(env)], check=True,
                           env=environ, capture_output=True, text=True)
            proc = subprocess.run([str(env / "bin" / "python"), str(ROOT / "tools" / "matrix.py"), "install",
                                   version], env=environ, capture_output=True, text=True, timeout=1800)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, RuntimeError) as exc:
            job["error"] = f"env/install: {H._clean(str(exc))} {tail(getattr(exc, 'stderr', '') or '')}"
            return job
        job["install_s"] = round(time.monotonic() - t0, 1)
        job["free_installed_gb"] = round(free_gb(ROOT), 1)
        job["cache_gb"] = round(du_gb(cache), 1)
        if proc.returncode != 0:
            job["error"] = "install failed: " + tail(proc.stderr + "\n" + proc.stdout, 4)
        job["env"] = env
        return job

    def installer(self, jobs: queue.Queue[Optional[Dict[str, Any]]]) -> None:
        for rel in self.rels:
            if self.stop.is_set():
                break
            job = self.install(rel)
            with self.idle:
                self.pending += 1
            jobs.put(job)
            if "fatal" in job:
                break
        jobs.put(None)

    def harvest(self, job: Dict[str, Any]) -> None:
        version, env = job["version"], job["env"]
        t0 = time.monotonic()
        environ = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", CUDA_VISIBLE_DEVICES="")
        try:
            proc = subprocess.run([str(env / "bin" / "python"), str(ROOT / "tools" / "harvest.py"), "--out", str(OUT)],
                                  env=environ, capture_output=True, text=True, timeout=1200)
            ok = proc.returncode == 0
            why = tail(proc.stderr + "\n" + proc.stdout, 4)
        except subprocess.TimeoutExpired:
            ok, why = False, "harvest timed out after 1200 s"
        job["harvest_s"] = round(time.monotonic() - t0, 1)
        if ok:
            with self.lock:
                clear_skip(version)
            log(f"{version}: harvested in {job['harvest_s']} s (install {job.get('install_s')} s)")
        else:
            with self.lock:
                record_skip(version, "harvest failed: " + why)
            log(f"{version}: HARVEST FAILED: {why}")

    def cleanup(self, job: Dict[str, Any]) -> None:
        env = job.get("env")
        if env:
            shutil.rmtree(env, ignore_errors=True)
        cache = job.get("cache")
        if cache and job["version"] not in self.matrix_versions and not job.get("wheel_was_cached"):
            freed = drop_wheel(Path(cache), job["version"])
            job["dropped_wheel_mb"] = round(freed / 2**20)
        job["free_after_gb"] = round(free_gb(ROOT), 1)

    def worker(self, jobs: queue.Queue[Optional[Dict[str, Any]]]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                _signal_end(jobs)  # let the other workers see the end too
                return
            version = job["version"]
            if "fatal" in job:
                log("STOP: " + job["fatal"])
                self.rc = 3
                self.stop.set()
                _signal_end(jobs)
                return
            if "error" in job:
                with self.lock:
                    record_skip(version, job["error"])
                log(f"{version}: SKIPPED: {job['error']}")
            else:
                self.harvest(job)
            self.cleanup(job)
            log(f"{version}: free {job['free_before_gb']} -> {job['free_after_gb']} GB, "
                f"dropped wheel {job.get('dropped_wheel_mb', 0)} MB, cache {job.get('cache')}")
            with self.lock:
                self.stats.append({k: str(v) if isinstance(v, Path) else v for k, v in job.items() if k != "rel"})
            with self.idle:
                self.pending -= 1
                self.idle.notify_all()

    def run(self, workers: int = 1) -> int:
        jobs: queue.Queue[Optional[Dict[str, Any]]] = queue.Queue(maxsize=1)
        th = threading.Thread(target=self.installer, args=(jobs,), daemon=True)
        th.start()
        pool = [threading.Thread(target=self.worker, args=(jobs,)) for _ in range(workers)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        self.stop.set()
        th.join(timeout=5)
        if self.private.exists():
            log(f"walk done: wiping private cache {self.private}")
            shutil.rmtree(self.private, ignore_errors=True)
        return self.rc


def _range_starts() -> List[str]:
    """First version of each vllm_attention.toml range (one release per stretch the hand tables describe)."""
    import re as _re

    path = ROOT / "compat" / "data" / "vllm_attention.toml"
    if not path.exists():
        return []
    return [m.group(1) for m in _re.finditer(r'^versions = ">=([^,"]+)', path.read_text(), _re.M)]


def walk_order(rels: List[Dict[str, Any]], table: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Matrix releases first (every matrix env's test compares against their files), then releases on a matrix
    torch (default cache, no torch download), then the rest grouped by torch, oldest first, so the private cache
    downloads each torch once; within a group, the first release of each vllm_attention.toml range comes first
    (every stretch of the hand tables gets checked early)."""
    matrix_versions = set(M.matrix_envs(table).values())
    matrix_torch = {M.release(v, table)["torch"] for v in matrix_versions}
    starts = set(_range_starts())

    def key(r: Dict[str, Any]) -> Any:
        if r["version"] in matrix_versions:
            return (0, M._vkey("0"), 0, M._vkey(r["version"]))
        group = 0 if r["version"] in starts else 1
        if r["torch"] in matrix_torch:
            return (1, M._vkey("0"), group, M._vkey(r["version"]))
        return (2, M._vkey(r["torch"]), group, M._vkey(r["version"]))

    return sorted(rels, key=key)


def main(argv: Optional[List[str]] = None) -> int:
    global OUT, SKIPPED
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("versions", nargs="*", help="releases to harvest (default: every release without a file)")
    ap.add_argument("--all", action="store_true", help="re-harvest releases that already have a file")
    ap.add_argument("--out", type=Path, default=H.OUT_DIR, help="directory for the harvested files (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=1,
                    help="harvests running at once (each is one CPU-bound import; installs run one at a time)")
    ap.add_argument("--min-free-gb", type=float, default=12.0,
                    help="start no install while less is free (wait --wait-min, then stop)")
    ap.add_argument("--wait-min", type=float, default=10.0,
                    help="minutes to wait for free disk before stopping (default: %(default)s)")
    ap.add_argument("--cache-max-gb", type=float, default=14.0,
                    help="wipe the private cache before an install when it holds more (0: never; default %(default)s)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".tox" / "harvest-uv-cache",
                    help="private uv cache for releases whose torch no matrix env uses (wiped on torch change)")
    args = ap.parse_args(argv)
    OUT, SKIPPED = args.out, args.out / "skipped.toml"
    OUT.mkdir(parents=True, exist_ok=True)
    table = M.load_table()
    rels = M.releases(table)
    if args.versions:
        known = {r["version"]: r for r in rels}
        missing = [v for v in args.versions if v not in known]
        if missing:
            print(f"harvest_walk: not in vllm_releases.toml: {', '.join(missing)}", file=sys.stderr)
            return 2
        rels = [known[v] for v in args.versions]
    else:
        if not args.all:
            rels = [r for r in rels if not (OUT / H.out_name(r["version"])).exists()]
        rels = walk_order(rels, table)
    log(f"walk: {len(rels)} releases, free {free_gb(ROOT):.1f} GB, default cache {default_cache()}, "
        f"private cache {args.cache}")
    walk = Walk(rels, args.cache, args.min_free_gb, M.uv_bin(), args.wait_min,
                args.cache_max_gb)
    t0 = time.monotonic()
    rc = walk.run(args.workers)
    log(f"walk: finished rc={rc} in {time.monotonic() - t0:.0f} s")
    (WORK / "walk-stats.json").parent.mkdir(parents=True, exist_ok=True)
    (WORK / "walk-stats.json").write_text(json.dumps(walk.stats, indent=1, default=str) + "\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())
