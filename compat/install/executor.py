"""Carry out a plan with pip or uv, and never leave a broken environment behind.

Order: probe the target interpreter (refuse system / externally-managed ones without explicit consent) ->
snapshot (`freeze`) -> for the step that resolves the set, the installer's own dry-run must agree with the plan
(vLLM and torch exactly as planned; nothing else may change torch) -> run the steps with progress lines ->
check the environment against the plan (doctor's checks on the target's installed metadata) -> on any failure,
restore the snapshot and say so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from .. import versions
from ..errors import CompatError
from ..findings import Finding
from .planner import Plan, Step

if TYPE_CHECKING:
    from ..choose import Resolved
    from ..detect.model import Environment

Progress = Callable[[str], None]
_PROBE = r"""
import json, os, platform, sys, sysconfig
try:
    import pip
    pv = pip.__version__
except Exception:
    pv = None
print(json.dumps({
    "version": platform.python_version(), "prefix": sys.prefix, "base_prefix": sys.base_prefix,
    "venv": sys.prefix != sys.base_prefix, "conda": os.path.isdir(os.path.join(sys.prefix, "conda-meta")),
    "externally_managed": os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")),
    "pip": pv, "path": sys.path}))
"""
_UV_LINE = re.compile(r"^ ([+-]) ([A-Za-z0-9_.\-]+)==(\S+)")
_LOCAL_CU = re.compile(r"==[^\s;+]+\+(cu\d+)\b")   # torch==2.8.0+cu126 -> cu126


class InstallFailed(Exception):
    """The install did not reach the plan; the snapshot was restored (or restoring failed: see message)."""


@dataclass(frozen=True)
class Target:
    python: str
    version: str
    prefix: str
    venv: bool
    conda: bool
    externally_managed: bool
    pip: Optional[str]
    path: Tuple[str, ...]

    @property
    def managed_env(self) -> bool:
        """A virtual or conda environment: the user's own, safe to change."""
        return self.venv or self.conda


def probe(python: str) -> Target:
    exe = shutil.which(python) or python
    try:
        out = subprocess.run([exe, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CompatError(f"cannot run the target interpreter {python!r}: {exc}") from None
    if out.returncode != 0:
        raise CompatError(f"the target interpreter {python!r} failed: {out.stderr.strip()[-200:]}")
    d = json.loads(out.stdout)
    return Target(python=exe, version=d["version"], prefix=d["prefix"], venv=d["venv"], conda=d["conda"],
                  externally_managed=d["externally_managed"], pip=d["pip"], path=tuple(d["path"]))


def check_consent(t: Target, allow_system: bool) -> None:
    if allow_system:
        return
    if t.externally_managed and not t.venv:
        raise CompatError(f"{t.python} is an externally-managed interpreter (PEP 668: {t.prefix}); compat will not "
                          "install into it. Create a venv (`uv venv` / `python -m venv .venv`) and pass --python "
                          ".venv/bin/python, or pass --allow-system if you really mean it")
    if not t.managed_env:
        raise CompatError(f"{t.python} is not a virtual or conda environment ({t.prefix}); installing torch and "
                          "vLLM there changes every program that uses it. Use a venv (--python .venv/bin/python), or "
                          "pass --allow-system to install into it anyway")


def choose_installer(requested: Optional[str], t: Target) -> str:
    if requested == "pip" or (requested is None and not shutil.which("uv")):
        if t.pip is None:
            raise CompatError(f"{t.python} has no pip; use --installer uv, or run `{t.python} -m ensurepip`")
        return "pip"
    if requested in (None, "uv"):
        if not shutil.which("uv"):
            raise CompatError("uv is not on PATH; install it (`python -m pip install uv`) or use --installer pip")
        return "uv"
    raise CompatError(f"--installer must be pip or uv, not {requested!r}")


def pip_has_cutoff(t: Target) -> bool:
    from .planner import _pip_cutoff_version
    return t.pip is not None and versions.release(t.pip) >= versions.parse(_pip_cutoff_version())


# -- snapshot / restore -------------------------------------------------------------------------------------
def freeze(installer: str, t: Target) -> List[str]:
    cmd = (["uv", "pip", "freeze", "--python", t.python] if installer == "uv"
           else [t.python, "-m", "pip", "freeze", "--all"])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise CompatError(f"cannot snapshot the environment ({' '.join(cmd)}): {out.stderr.strip()[-300:]}")
    return sorted(line.strip() for line in out.stdout.splitlines() if line.strip() and not line.startswith("#"))


def _name(line: str) -> str:
    return re.split(r"[ =<>@;\[]", line.replace("-e ", ""), maxsplit=1)[0].lower().replace("_", "-")


def restore_index_args(installer: str, snapshot: Sequence[str]) -> List[str]:
    """Index flags the snapshot's pins need: a `torch==2.8.0+cu126` build exists only on PyTorch's cu126 index.

    Derived from the snapshot's own +cuXXX local tags (not from the plan: the snapshot is what was there before),
    with the same data the plan uses: uv's --torch-backend, pip's --extra-index-url from installer.toml.
    """
    from .planner import torch_index_url, variant_cuda

    found: Dict[str, None] = {}
    for line in snapshot:  # torch first: uv takes one backend, and torch's build decides torchvision/torchaudio's
        m = _LOCAL_CU.search(line)
        if m:
            try:
                variant_cuda(m.group(1))
            except CompatError:
                continue
            if _name(line) == "torch":
                found = {m.group(1): None, **found}
            else:
                found.setdefault(m.group(1), None)
    if not found:
        return []
    if installer == "uv":
        return ["--torch-backend", next(iter(found))]
    return [a for v in found for a in ("--extra-index-url", torch_index_url(v))]


def pip_restore_sets(snapshot: Sequence[str], now: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(names to uninstall, snapshot lines to reinstall) to turn `now` back into `snapshot`.

    Both come from one freeze: uninstalling names the snapshot lacks leaves every line of a name it has as it was.
    """
    keep = {_name(x) for x in snapshot}
    remove = sorted({_name(x) for x in now if _name(x) not in keep})
    present = set(now)
    return remove, [x for x in snapshot if x not in present]


def restore(installer: str, t: Target, snapshot: Sequence[str], workdir: Path, progress: Progress) -> None:
    """Put the environment back to `snapshot` exactly (uv: pip sync; pip: uninstall extras, reinstall pins)."""
    snap = workdir / "snapshot.txt"
    snap.write_text("\n".join(snapshot) + "\n")
    index = restore_index_args(installer, snapshot)
    if installer == "uv":
        _run(["uv", "pip", "sync", "--python", t.python, "--allow-empty-requirements"] + index + [str(snap)], progress,
             "restore the snapshot (uv pip sync)")
        return
    remove, missing = pip_restore_sets(snapshot, freeze("pip", t))
    if remove:
        _run([t.python, "-m", "pip", "uninstall", "-y"] + remove, progress, f"remove {len(remove)} package(s)")
    if missing:
        (workdir / "restore.txt").write_text("\n".join(missing) + "\n")
        _run([t.python, "-m", "pip", "install", "--no-deps"] + index + ["-r", str(workdir / "restore.txt")], progress,
             f"reinstall {len(missing)} package(s) of the snapshot")


# -- dry run ------------------------------------------------------------------------------------------------
def temporary_pip(t: Target, workdir: Path, progress: Progress) -> List[str]:
    """A pip with --uploaded-prior-to for a target whose own pip predates it (a stock `python -m venv` ships pip
    23.x): the newer pip's wheel downloaded into `workdir` and run from the wheel with the target interpreter (pip
    runs from its wheel), so the dry run leaves the target, its pip included, unchanged."""
    from .planner import _pip_cutoff_version

    dest = workdir / "pip-wheel"
    _run([t.python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", str(dest),
          f"pip>={_pip_cutoff_version()}"], progress, f"fetch pip >= {_pip_cutoff_version()} for the dry run")
    wheels = sorted(dest.glob("pip-*.whl"))
    if not wheels:
        raise InstallFailed(f"no pip >= {_pip_cutoff_version()} wheel was downloaded for the dry run")
    return [t.python, str(wheels[-1] / "pip")]


def dry_run(installer: str, step: Step, workdir: Path, pip: Optional[Sequence[str]] = None,
            progress: Optional[Progress] = None) -> Dict[str, Tuple[Optional[str], Optional[str]]]:
    """name -> (version removed, version installed) that the installer's own resolution would change; `pip` runs
    pip's steps instead of `python -m pip` (temporary_pip). For pip, files from local sources (file:// indexes,
    --find-links) carry no upload time, so the cutoff cannot filter them: reported through `progress`."""
    argv = list(step.argv)
    if pip and argv[1:3] == ["-m", "pip"]:
        argv = list(pip) + argv[3:]
    changes: Dict[str, Tuple[Optional[str], Optional[str]]] = {}
    if installer == "uv":
        out = subprocess.run(argv[:3] + ["--dry-run"] + argv[3:], capture_output=True, text=True, cwd=workdir,
                             timeout=1800)
        if out.returncode != 0:
            raise InstallFailed(f"uv could not resolve the plan: {_tail(out.stderr)}")
        for line in out.stderr.splitlines() + out.stdout.splitlines():
            m = _UV_LINE.match(line)
            if m:
                name = m.group(2).lower().replace("_", "-")
                old, new = changes.get(name, (None, None))
                changes[name] = (m.group(3), new) if m.group(1) == "-" else (old, m.group(3))
        return changes
    report = workdir / "pip-report.json"
    i = argv.index("install") + 1
    out = subprocess.run(argv[:i] + ["--dry-run", "--quiet", "--report", str(report)] + argv[i:], capture_output=True,
                         text=True, cwd=workdir, timeout=1800)
    if out.returncode != 0:
        raise InstallFailed(f"pip could not resolve the plan: {_tail(out.stderr)}")
    local: List[str] = []
    for item in json.loads(report.read_text()).get("install", []):
        md = item.get("metadata", {})
        changes[md.get("name", "").lower().replace("_", "-")] = (None, md.get("version"))
        if str(item.get("download_info", {}).get("url", "")).startswith("file:"):
            local.append(f"{md.get('name')} {md.get('version')}")
    if local and progress:
        progress(f"  warning: {len(local)} package(s) come from local sources without upload times, which the "
                 f"cutoff cannot filter (pip's configuration: index-url / extra-index-url / find-links): "
                 f"{', '.join(local[:8])}{' ...' if len(local) > 8 else ''}")
    return changes


def verify(plan: Plan, changes: Dict[str, Tuple[Optional[str], Optional[str]]], installed: Dict[str, str]) -> List[str]:
    """Problems where the installer's resolution differs from the plan (empty list = it matches)."""
    problems = []

    def final(name: str) -> Optional[str]:
        return changes[name][1] if name in changes and changes[name][1] else installed.get(name)

    tv = final("torch")
    if tv is None or versions.release(tv) != versions.release(plan.torch):
        problems.append(f"torch would be {tv or 'absent'}, the plan says {plan.torch}")
    elif not plan.torch_default_variant and versions.parse(tv).local and versions.parse(tv).local != plan.torch_variant:
        problems.append(f"torch would be {tv}, the plan says the {plan.torch_variant} build")
    vv = final("vllm")  # absent is a mismatch too: the plan asked for vLLM
    if vv is None or versions.release(vv) != versions.release(plan.vllm):
        problems.append(f"vllm would be {vv or 'absent'}, the plan says {plan.vllm}")
    return problems


# -- running ------------------------------------------------------------------------------------------------
def _tail(text: str, n: int = 600) -> str:
    text = text.strip()
    return ("..." + text[-n:]) if len(text) > n else text


def _run(argv: Sequence[str], progress: Progress, label: str, cwd: Optional[Path] = None) -> None:
    start = time.monotonic()
    progress(f"  .. {label}: {' '.join(argv)}")
    proc = subprocess.Popen(list(argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = start
    lines: List[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if time.monotonic() - last >= 10:  # a heartbeat on long steps, with the installer's latest line
            last = time.monotonic()
            progress(f"     {label}: {last - start:.0f} s ... {line.strip()[:100]}")
    rc = proc.wait()
    if rc != 0:
        raise InstallFailed(f"{label} failed (exit {rc}): {_tail(''.join(lines))}")
    progress(f"  ok {label} ({time.monotonic() - start:.1f} s)")


def installed_versions(t: Target) -> Dict[str, str]:
    from ..detect.software import scan
    return {name: v for name, (v, _) in scan(_fresh_path(t)).items()}


def _fresh_path(t: Target) -> List[str]:
    return list(probe(t.python).path)


def _target(t: Target, hardware_file: Optional[str]) -> Tuple[Environment, Resolved]:
    """The target environment (this machine, its installed metadata) resolved by the same machine -> profile
    pipeline doctor and setup() use (compat/pipeline.py)."""
    from .. import pipeline
    from ..detect.model import Environment
    from ..detect.software import detect_software
    from ..switches import Switches

    knobs = Switches.parse(os.environ, hardware=hardware_file)
    hw = pipeline.machine(knobs).hardware
    env = Environment(hardware=hw, software=detect_software(_fresh_path(t)), hardware_file=hardware_file)
    return env, pipeline.resolve(env, pipeline.request(knobs))


def post_check(plan: Plan, t: Target, hardware_file: Optional[str]) -> List[Finding]:
    """Doctor's checks on the target environment's installed metadata (nothing is imported)."""
    from ..checks import run_checks
    from .check import plan_mismatch

    env, r = _target(t, hardware_file)
    return run_checks(env, r, os.environ) + plan_mismatch(env, r, os.environ)


def first_use_check(plan: Plan, t: Target, hardware_file: Optional[str]) -> List[str]:
    """What first use would trip over in the target env (first_use.py): empty when vllm, triton's build path, the
    attention backend compat picks there, flash-attn (when planned) and, on a real GPU, torch's CUDA libraries load."""
    from . import first_use

    env, r = _target(t, hardware_file)
    backend = r.attention_backend
    gpu = hardware_file is None and bool(env.hardware.gpus)  # a --hardware machine is described, not here
    wanted = first_use.checks(backend.name if backend else None, bool(plan.flash_attn), gpu)
    return [f.describe() for f in first_use.run(t.python, wanted)]


@dataclass(frozen=True)
class Outcome:
    acted: bool
    installer: str
    findings: Tuple[Finding, ...] = ()
    snapshot_file: Optional[str] = None


def execute(plan: Plan, t: Target, installer: str, yes: bool, hardware_file: Optional[str] = None,
            progress: Progress = lambda s: print(s, file=sys.stderr, flush=True)) -> Outcome:
    steps = plan.steps(installer, t.python, pip_has_cutoff(t) if installer == "pip" else True)
    with tempfile.TemporaryDirectory(prefix="compat-install-") as tmp:
        work = Path(tmp)
        if not yes:
            return _dry(plan, t, installer, steps, work, progress)
        progress(f"compat install: snapshot of {t.prefix} ({installer} freeze)")
        snapshot = freeze(installer, t)
        snap_file = _save_snapshot(snapshot)
        progress(f"  saved {len(snapshot)} package(s) to {snap_file}")
        try:
            for n, step in enumerate(steps, 1):
                progress(f"[{n}/{len(steps)}] {step.label}")
                if step.path:
                    (work / step.path).write_text(step.content)
                    continue
                if step.verify:
                    progress(f"  .. checking the plan against {installer}'s own dry-run resolution")
                    problems = verify(plan, dry_run(installer, step, work, progress=progress), installed_versions(t))
                    if problems:
                        raise InstallFailed("the installer's resolution does not match the plan: " + "; ".join(problems))
                    progress("  ok the resolution matches the plan")
                argv = list(step.argv)
                if argv[1:3] == ["-m", "compat.install.requirements"]:
                    argv[0] = sys.executable  # compat runs from its own interpreter; --python names the target
                _run(argv, progress, step.label, cwd=work)
            progress("compat install: checking the environment against the plan (doctor's checks)")
            findings = post_check(plan, t, hardware_file)
            bad = [f for f in findings if f.id == "plan-mismatch"]
            if bad:
                raise InstallFailed(f"after installing, the environment does not match the plan: {bad[0].message}")
            progress("compat install: first use (imports vllm, triton's build path, the attention backend"
                     + (", flash-attn" if plan.flash_attn else "") + " in the target env)")
            start = time.monotonic()
            missing = first_use_check(plan, t, hardware_file)
            if missing:
                raise InstallFailed("the installed set fails on first use: " + "; ".join(missing))
            progress(f"  ok first use ({time.monotonic() - start:.1f} s)")
        except (InstallFailed, CompatError, OSError, subprocess.SubprocessError) as exc:
            progress(f"compat install: FAILED: {exc}")
            progress("compat install: restoring the snapshot")
            try:
                restore(installer, t, snapshot, work, progress)
            except Exception as rexc:  # the message must say the env may be inconsistent
                raise InstallFailed(f"{exc}; restoring the snapshot ALSO failed ({rexc}); the environment may be "
                                    f"inconsistent: restore it from {snap_file}") from None
            raise InstallFailed(f"{exc}; the environment was restored to the snapshot ({snap_file})") from None
        return Outcome(True, installer, tuple(findings), str(snap_file))


def _dry(plan: Plan, t: Target, installer: str, steps: List[Step], work: Path, progress: Progress) -> Outcome:
    """Without --yes: resolve with the installer's dry run and show what would change; change nothing."""
    for step in steps:
        if step.path:
            (work / step.path).write_text(step.content)
            continue
        if step.verify:
            progress(f"compat install (dry run): resolving with {installer}")
            pip = None
            if installer == "pip" and not pip_has_cutoff(t):
                progress(f"  the target's pip {t.pip} has no --uploaded-prior-to; --yes upgrades it first (the "
                         "snapshot covers it); this dry run uses a newer pip from a temporary wheel")
                pip = temporary_pip(t, work, progress)
            changes = dry_run(installer, step, work, pip, progress)
            problems = verify(plan, changes, installed_versions(t))
            for name in ("vllm", "torch", "transformers"):
                if name in changes:
                    old, new = changes[name]
                    progress(f"  {name}: {old or '-'} -> {new or '-'}")
            progress(f"  {len(changes)} package(s) would change")
            if problems:
                raise InstallFailed("the installer's resolution does not match the plan: " + "; ".join(problems))
            progress("  the resolution matches the plan; rerun with --yes to install")
            return Outcome(False, installer)
        if "--no-deps" in step.argv or step.argv[:3] == (t.python, "-m", "compat.install.requirements"):
            progress("compat install (dry run): vLLM's overrides need pip to install vLLM first; the resolution "
                     "is checked with pip's dry run during --yes, before anything else changes")
            return Outcome(False, installer)
    return Outcome(False, installer)


def _save_snapshot(lines: Sequence[str]) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "compat" / "snapshots"
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"freeze-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.txt"
    path.write_text("\n".join(lines) + "\n")
    return path
