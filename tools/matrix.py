#!/usr/bin/env python3
"""The vLLM and verl test matrices, read from compat/data/vllm_releases.toml and compat/data/verl.toml.

Used by tox.ini (commands_pre), noxfile.py (imported) and tests/vllm (imported by path). Stdlib only, Python 3.9+
(tomllib, or tomli below 3.11), so it runs before compat or anything else is installed.

    python tools/matrix.py list                 # env name -> release, cutoff, torch, overrides (vLLM, then verl)
    python tools/matrix.py install verl041      # verl envs: verl==X + the torch its entry names, same cutoff rules
    python tools/matrix.py show vllm072         # one release as JSON (env name or version)
    python tools/matrix.py install vllm072      # install that release into *this* interpreter's env
    python tools/matrix.py report vllm072       # installed vLLM/torch/transformers + env size, one markdown row

`install` runs `uv pip install --python <this python> --exclude-newer <cutoff> --override <file> vllm==X torch==T
[also_install]`, built by compat/install/release_set.py (the same rule `compat plan`/`install` use), and writes
<env>/compat-matrix.json; when that marker matches the table and the installed vllm/torch versions agree, it does
nothing (warm tox runs cost well under a second). `--force` reinstalls.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "compat" / "data" / "vllm_releases.toml"
INSTALLER_TABLE = ROOT / "compat" / "data" / "installer.toml"
VERL_TABLE = ROOT / "compat" / "data" / "verl.toml"
MARKER = "compat-matrix.json"
LATEST = "vllm-latest"
VERL_LATEST = "verl-latest"
REQUIRED = ("version", "date", "exclude_newer", "torch", "python", "overrides", "source")
VERL_REQUIRED = REQUIRED + ("reason",)


def _toml_load(path: Path) -> Dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    with open(path, "rb") as f:
        return tomllib.load(f)


_PLAIN_VERSION = re.compile(r"^\d+(\.\d+)*(\.post\d+)?$")


def _vkey(version: str) -> Any:
    """Sort key for a version string, PEP 440 order.

    With `packaging` importable (any env that has pip or tox): packaging's Version, so rc/dev/local versions sort
    right. Without it (this script is stdlib-only): the plain X.Y.Z[.postN] forms vLLM publishes, validated; anything
    else raises ValueError saying so instead of a bare int() failure.
    """
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:
        pass
    else:
        try:
            return Version(version)
        except InvalidVersion:
            raise ValueError(f"{version!r} is not a version (PEP 440, e.g. 0.7.2 or 0.10.1.1)") from None
    if not _PLAIN_VERSION.match(version):
        raise ValueError(f"{version!r} is not a version tools/matrix.py can order without `packaging`: plain "
                         f"X.Y.Z or X.Y.Z.postN only; install packaging to order rc/dev/local versions")
    head, _, post = version.partition(".post")
    release = [int(p) for p in head.split(".")]
    while len(release) > 1 and release[-1] == 0:  # 0.7 == 0.7.0, as in PEP 440
        release.pop()
    return (tuple(release), int(post) if post else -1)


def load_table(path: Optional[Path] = None) -> Dict[str, Any]:
    """The parsed table; raises ValueError naming the first malformed entry."""
    data = _toml_load(Path(path) if path else TABLE)
    if data.get("schema") != 1:
        raise ValueError(f"{path or TABLE}: schema must be 1, got {data.get('schema')!r}")
    for rel in data.get("release", []):
        missing = [k for k in REQUIRED if k not in rel]
        if missing:
            raise ValueError(f"release {rel.get('version', '?')}: missing {', '.join(missing)}")
        if (rel["overrides"] or rel.get("also_install")) and not rel.get("reason"):
            raise ValueError(f"release {rel['version']}: overrides / also_install need a `reason`")
    return data


def releases(table: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """All releases, oldest first."""
    table = table or load_table()
    return sorted(table["release"], key=lambda r: _vkey(r["version"]))


def release(version: str, table: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    for rel in releases(table):
        if rel["version"] == version:
            return rel
    raise KeyError(f"vLLM {version} is not in {TABLE.relative_to(ROOT)}")


def env_name(version: str) -> str:
    """'0.7.2' -> 'vllm072', '0.10.1.1' -> 'vllm0101' (first three numbers)."""
    return "vllm" + "".join(version.split(".")[:3])


def matrix_envs(table: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
    """Env name -> vLLM version, in table order, then vllm-latest (newest release in the table)."""
    table = table or load_table()
    out: Dict[str, str] = {}
    for version in table.get("matrix", []):
        release(version, table)  # must exist
        name = env_name(version)
        if name in out:
            raise ValueError(f"matrix: {version} and {out[name]} both map to env {name}")
        out[name] = version
    out[LATEST] = releases(table)[-1]["version"]
    return out


def load_verl_table(path: Optional[Path] = None) -> Dict[str, Any]:
    """The parsed verl table; raises ValueError naming the first malformed entry (each needs source and reason)."""
    data = _toml_load(Path(path) if path else VERL_TABLE)
    if data.get("schema") != 1:
        raise ValueError(f"{path or VERL_TABLE}: schema must be 1, got {data.get('schema')!r}")
    for rel in data.get("release", []):
        missing = [k for k in VERL_REQUIRED if k not in rel]
        if missing:
            raise ValueError(f"verl release {rel.get('version', '?')}: missing {', '.join(missing)}")
    return data


def verl_env_name(version: str) -> str:
    """'0.4.1' -> 'verl041'."""
    return "verl" + "".join(version.split(".")[:3])


def verl_envs(table: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
    """Env name -> verl version, in table order, then verl-latest (newest release in the table)."""
    table = table or load_verl_table()
    rels = sorted(table["release"], key=lambda r: _vkey(r["version"]))
    known = {r["version"] for r in rels}
    out: Dict[str, str] = {}
    for version in table.get("matrix", []):
        if version not in known:
            raise KeyError(f"verl {version} is in matrix but has no [[release]] in {VERL_TABLE.relative_to(ROOT)}")
        out[verl_env_name(version)] = version
    out[VERL_LATEST] = rels[-1]["version"]
    return out


def resolve_verl(name: str, table: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A verl release by env name ('verl041', 'verl-latest') or 'verl==0.4.1'; marked package = verl."""
    table = table or load_verl_table()
    version = verl_envs(table).get(name, name.split("==", 1)[1] if name.startswith("verl==") else name)
    for rel in table["release"]:
        if rel["version"] == version:
            return {**rel, "package": "verl"}
    raise KeyError(f"verl {name} is not in {VERL_TABLE.relative_to(ROOT)}")


def resolve(name_or_version: str, table: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A release by env name ('vllm072', 'vllm-latest', 'verl041', 'verl-latest') or by vLLM version ('0.7.2')."""
    if name_or_version.startswith("verl"):
        return resolve_verl(name_or_version)
    table = table or load_table()
    envs = matrix_envs(table)
    return release(envs.get(name_or_version, name_or_version), table)


def uv_bin() -> str:
    """uv from $COMPAT_UV, PATH, or the `uv` Python package."""
    found = os.environ.get("COMPAT_UV") or shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found]

        return find_uv_bin()
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing here
        raise SystemExit(f"uv not found (install uv, or set COMPAT_UV=/path/to/uv): {exc}") from None


def _pkg(rel: Dict[str, Any]) -> str:
    return str(rel.get("package", "vllm"))


def wanted(rel: Dict[str, Any]) -> Dict[str, Any]:
    """What the marker must record for an env to count as installed."""
    out = {k: rel[k] for k in ("version", "exclude_newer", "torch", "overrides")}
    if _pkg(rel) != "vllm":
        out["package"] = _pkg(rel)
    if rel.get("also_install"):
        out["also_install"] = rel["also_install"]
    return out


def installed_versions(python: str, names=("vllm", "verl", "torch", "transformers")) -> Dict[str, Optional[str]]:
    """Distribution versions in the env of `python` (in-process when it is this interpreter)."""
    code = (
        "import json, importlib.metadata as m\n"
        "def v(n):\n"
        "    try: return m.version(n)\n"
        "    except m.PackageNotFoundError: return None\n"
        f"print(json.dumps({{n: v(n) for n in {list(names)!r}}}))"
    )
    if Path(python).resolve() == Path(sys.executable).resolve():
        ns: Dict[str, Any] = {}
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(code, ns)  # noqa: S102 - our own constant code
        return json.loads(buf.getvalue())
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def env_prefix(python: str) -> Path:
    if Path(python).resolve() == Path(sys.executable).resolve():
        return Path(sys.prefix)
    out = subprocess.run([python, "-c", "import sys; print(sys.prefix)"], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def is_installed(rel: Dict[str, Any], python: str) -> bool:
    marker = env_prefix(python) / MARKER
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if recorded.get("wanted") != wanted(rel):
        return False
    have = installed_versions(python, (_pkg(rel), "torch"))
    return have[_pkg(rel)] == rel["version"] and have["torch"] == rel["torch"]


def _release_set_module() -> Any:
    """compat/install/release_set.py loaded by path (stdlib only): the install rule `compat plan` uses too."""
    import importlib.util

    name = "compat_matrix_release_set"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "compat" / "install" / "release_set.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # dataclasses look the module up while the class body runs
        spec.loader.exec_module(mod)
    return sys.modules[name]


def release_set(rel: Dict[str, Any]) -> Any:
    """The release's ReleaseSet (cutoff as a full UTC timestamp, overrides, requirements incl. also_install)."""
    time_of_day = _toml_load(INSTALLER_TABLE)["cutoff"]["time_of_day"]
    return _release_set_module().release_set(rel, time_of_day)


def install_cmd(rel: Dict[str, Any], python: str, override_file: Optional[str]) -> List[str]:
    cmd = release_set(rel).uv_install(uv_bin(), python, override_file)
    if _pkg(rel) == "vllm":
        return cmd
    # a verl env: the same set rule (cutoff, torch pin, overrides, also_install) with verl in vLLM's place; verl pins
    # no torch, so its verl.toml entry names the torch of its era
    return [f"{_pkg(rel)}=={rel['version']}" if c == f"vllm=={rel['version']}" else c for c in cmd]


def install(rel: Dict[str, Any], python: Optional[str] = None, force: bool = False) -> Dict[str, Any]:
    """Install the real release into the env of `python`; returns the marker record."""
    python = python or sys.executable
    prefix = env_prefix(python)
    if not force and is_installed(rel, python):
        record = json.loads((prefix / MARKER).read_text())
        print(f"matrix: {_pkg(rel)} {rel['version']} already installed in {prefix} (marker {MARKER}); skipping",
              flush=True)
        return record
    (prefix / MARKER).unlink(missing_ok=True)  # a failed install must not look installed
    with tempfile.TemporaryDirectory() as tmp:
        override_file = None
        if rel["overrides"]:
            override_file = os.path.join(tmp, "overrides.txt")
            Path(override_file).write_text("\n".join(rel["overrides"]) + "\n")
        cmd = install_cmd(rel, python, override_file)
        print("matrix: " + " ".join(cmd) + (f"   # overrides: {rel['overrides']}" if rel["overrides"] else ""), flush=True)
        start = time.monotonic()
        subprocess.run(cmd, check=True)
        seconds = round(time.monotonic() - start, 1)
    have = installed_versions(python)
    if have[_pkg(rel)] != rel["version"] or have["torch"] != rel["torch"]:
        raise SystemExit(f"matrix: expected {_pkg(rel)} {rel['version']} + torch {rel['torch']}, env has {have}")
    record = {"wanted": wanted(rel), "installed": have, "install_seconds": seconds,
              "cache": os.environ.get("UV_CACHE_DIR", "default"), "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (prefix / MARKER).write_text(json.dumps(record, indent=1) + "\n")
    print(f"matrix: installed {have} in {seconds}s", flush=True)
    return record


def _du(path: Path) -> int:
    """Apparent bytes under path (hard links into the uv cache counted once per env, as `du` does)."""
    total, seen = 0, set()
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="env name -> release")
    for name in ("show", "install", "report"):
        p = sub.add_parser(name)
        p.add_argument("env", help="env name (vllm072, vllm-latest) or version (0.7.2)")
        p.add_argument("--python", default=sys.executable, help="interpreter of the target env (default: this one)")
        if name == "install":
            p.add_argument("--force", action="store_true", help="reinstall even when the marker matches")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for name, version in matrix_envs().items():
            rel = release(version)
            print(f"{name:12} vllm=={version:9} cutoff {rel['exclude_newer']}  torch=={rel['torch']:7} "
                  f"python {rel['python']:14} overrides {rel['overrides']} also_install {rel.get('also_install', [])}")
        for name, version in verl_envs().items():
            rel = resolve_verl(name)
            print(f"{name:12} verl=={version:9} cutoff {rel['exclude_newer']}  torch=={rel['torch']:7} "
                  f"python {rel['python']:14} overrides {rel['overrides']} also_install {rel.get('also_install', [])}")
        return 0
    rel = resolve(args.env)
    if args.cmd == "show":
        print(json.dumps(rel, indent=1))
    elif args.cmd == "install":
        install(rel, args.python, args.force)
    elif args.cmd == "report":
        prefix = env_prefix(args.python)
        have = installed_versions(args.python)
        try:
            rec = json.loads((prefix / MARKER).read_text())
        except (OSError, ValueError):
            rec = {}
        print(f"| {args.env} | {have[_pkg(rel)]} | {have['torch']} | {have['transformers']} | "
              f"{rec.get('install_seconds', '?')} s | {_du(prefix) / 2**30:.1f} GiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
