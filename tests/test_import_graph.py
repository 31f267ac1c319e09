"""The layering of compat's packages (issue 14): report may import install, install never imports report; the
pipeline imports neither; each module of both imports alone in a fresh interpreter.

The graph is read from the source (every import statement, function-level ones included), so an import that only
runs on some path still counts.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, Set

import compat

PKG = Path(compat.__file__).resolve().parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = {}
    for path in PKG.rglob("*.py"):
        name = _module_name(path)
        is_pkg = path.name == "__init__.py"
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        out: Set[str] = set()
        tree = ast.parse(path.read_text(), str(path))
        typing_only = {id(n) for t in ast.walk(tree) if isinstance(t, ast.If) and "TYPE_CHECKING" in ast.unparse(t.test)
                       for n in ast.walk(t)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.startswith("compat"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base[: len(base) - node.level + 1]
                    mod = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.startswith("compat"):
                    if mod != "compat":  # the root package is a lazy namespace: `from .. import versions` is versions
                        out.add(mod)
                    out.update(f"{mod}.{a.name}" for a in node.names)  # `from . import x` may name a module
        graph[name] = out
    return graph


def _package(mod: str) -> str:
    parts = mod.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else mod


def test_install_never_imports_report_and_the_pipeline_imports_neither():
    graph = import_graph()
    modules = set(graph)
    bad = []
    for mod, deps in graph.items():
        for dep in deps & modules:
            if _package(mod) == "compat.install" and _package(dep) in ("compat.report", "compat._setup"):
                bad.append(f"{mod} -> {dep}")
            if mod in ("compat.pipeline", "compat.switches", "compat.checks") and _package(dep) in (
                    "compat.report", "compat.install", "compat._setup"):
                bad.append(f"{mod} -> {dep}")
    assert not bad, bad


def test_no_package_level_cycle_between_report_and_install():
    graph = import_graph()
    modules = set(graph)
    edges = {(_package(m), _package(d)) for m, deps in graph.items() for d in deps & modules if d != "compat"}
    assert ("compat.report", "compat.install") in edges  # doctor runs the installer's plan check
    reach: Dict[str, Set[str]] = {}
    for a, b in edges:
        reach.setdefault(a, set()).add(b)
    changed = True
    while changed:  # transitive closure over packages
        changed = False
        for a in list(reach):
            more = set().union(*(reach.get(b, set()) for b in reach[a])) - reach[a]
            if more:
                reach[a] |= more
                changed = True
    assert "compat.report" not in reach.get("compat.install", set()), "install reaches report"


def test_each_report_and_install_module_imports_alone():
    mods = sorted(m for m in import_graph() if _package(m) in ("compat.report", "compat.install")
                  or m in ("compat.pipeline", "compat.switches", "compat.checks", "compat.kwargs", "compat._setup"))
    mods = [m for m in mods if not m.endswith("_deep_probe")]  # a script run in a subprocess with torch
    code = ("import importlib, subprocess, sys\n"
            "bad = []\n"
            "for m in sys.argv[1:]:\n"
            "    r = subprocess.run([sys.executable, '-c', f'import {m}'], capture_output=True, text=True)\n"
            "    if r.returncode: bad.append(m + ': ' + r.stderr.strip().splitlines()[-1])\n"
            "print('\\n'.join(bad)); sys.exit(1 if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code, *mods], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
