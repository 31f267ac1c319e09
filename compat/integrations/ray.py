"""Ray: carry compat into every Ray worker, and `python -m compat doctor --ray` over a whole cluster.

    ray.init(runtime_env=compat.ray_runtime_env())   # env vars + a worker setup hook running compat.setup()
    python -m compat doctor --ray [--json]           # one report per node, heterogeneity flagged

Ray is optional (`pip install compat[ray]`); it is imported only inside the functions that need it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections import Counter
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar

from ..errors import CompatError
from ..findings import Finding
from ..switches import RAY_TIMEOUT_S, Switches

if TYPE_CHECKING:
    import argparse

    from ..report.model import Report

K = TypeVar("K")

HOOK = "compat.integrations.ray.worker_setup"
EXPORTED_VAR = "COMPAT_RAY_EXPORTED"     # names compat (not the user) put into the runtime env
TIMEOUT_S = RAY_TIMEOUT_S  # default; COMPAT_RAY_TIMEOUT (compat/switches.py) is read when a gather runs
# a different release of these across nodes breaks a job (pickled objects, kernels, collective ops): error
MUST_MATCH = ("python", "compat", "torch", "vllm", "ray", "verl")


def _import_ray() -> ModuleType:
    try:
        import ray  # noqa: PLC0415 - optional dependency, imported on use
    except ImportError:
        ray = None
    if not hasattr(ray, "init"):  # absent, or only a directory called ray/ on sys.path (a namespace package)
        raise CompatError("Ray is not installed: pip install compat[ray]")
    module: ModuleType = ray  # Ray ships no type information (mypy sees Any): name what it is
    return module


def ray_runtime_env(profile: Optional[str] = None, hardware: Optional[str] = None,
                    environ: Mapping[str, str] = os.environ) -> Dict[str, Any]:
    """A Ray runtime_env: the profile's env vars, the COMPAT_* switches, and a setup hook for every worker.

    Values come from this (driver) machine. A variable you set to another value is passed as yours. The names
    compat chose are listed in COMPAT_RAY_EXPORTED so that each worker's hook re-resolves them for its own node
    (a V100 node and an A100 node of one cluster need different settings). Does not import Ray.
    """
    from .._setup import build_report
    from .shell import plan_exports

    rep = build_report(hardware, profile, environ=environ)
    env_vars: Dict[str, str] = {}
    ours: List[str] = []
    for e in plan_exports(rep, environ):
        if e.status == "export":
            env_vars[e.name] = e.value
            ours.append(e.name)
        elif e.status == "kept" and e.user_value is not None:
            env_vars[e.name] = e.user_value
    for name, value in environ.items():
        if name.startswith("COMPAT_") and name != EXPORTED_VAR:
            env_vars[name] = value
    if profile:
        env_vars["COMPAT_PROFILE"] = profile
    if hardware:
        env_vars["COMPAT_HARDWARE"] = hardware
    env_vars.pop("COMPAT_AUTOLOAD", None)   # the hook already runs setup(); workers need not pay for it twice
    if ours:
        env_vars[EXPORTED_VAR] = ",".join(ours)
    return {"env_vars": env_vars, "worker_process_setup_hook": HOOK}


def worker_setup() -> Any:
    """Ray's worker_process_setup_hook: set compat up in this worker, for this node. Never raises."""
    from . import safe_setup

    def _setup() -> Report:
        # variables compat put in the runtime env came from the driver's node: drop them (when still untouched) so
        # setup() chooses this node's values; anything the user set stays theirs.
        driver_values: Dict[str, str] = {}
        for name in filter(None, os.environ.get(EXPORTED_VAR, "").split(",")):
            if name in os.environ:
                driver_values[name] = os.environ.pop(name)
        try:
            import compat
            return compat.setup()
        except BaseException:
            for name, value in driver_values.items():
                os.environ.setdefault(name, value)   # setup() failed: the driver's choice beats none
            raise

    return safe_setup("the Ray worker setup hook", _setup)


# ---------------------------------------------------------------------------------------------------- doctor --ray

def node_report(hardware: Optional[str] = None, profile: Optional[str] = None) -> Dict[str, Any]:
    """What one node sees (runs as a Ray task pinned to that node): its doctor report plus who it is."""
    import platform

    import compat

    from .._setup import build_report

    # Ray sets CUDA_VISIBLE_DEVICES="" for a task that asks for no GPU; the node's doctor reports all of its GPUs
    environ = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    rep = build_report(hardware, profile, environ=environ)
    try:
        import ray
        node_id = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray (unit tests)
        node_id = None
    return {"node_id": node_id, "hostname": socket.gethostname(), "python": platform.python_version(),
            "compat": compat.__version__, "hardware_file": rep.environment.hardware_file,
            "report": rep.as_dict()}


def _label(node: Mapping[str, Any]) -> str:
    ident = (node.get("node_id") or "")[:8]
    return f"{node.get('ip') or node.get('hostname')}" + (f" ({ident})" if ident else "")


def _gpu_signature(node: Mapping[str, Any]) -> str:
    gpus = node["report"]["hardware"]["gpus"]
    if not gpus:
        return "no GPU"
    counts = Counter(f"{g['name']} sm_{g['compute_capability'].replace('.', '')}" for g in gpus)
    return ", ".join(f"{n} x {name}" for name, n in sorted(counts.items()))


def _versions(node: Mapping[str, Any]) -> Dict[str, Optional[str]]:
    pk = dict(node["report"]["software"]["packages"])
    pk["python"] = node.get("python") or node["report"]["software"].get("python")
    pk["compat"] = node.get("compat")
    return pk


def _version_of(name: str) -> Callable[[Mapping[str, Any]], Optional[str]]:
    return lambda n: _versions(n).get(name)


def _spread(nodes: Sequence[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], K]) -> Dict[K, List[str]]:
    groups: Dict[K, List[str]] = {}
    for n in nodes:
        groups.setdefault(key(n), []).append(_label(n))
    return groups


def _describe(groups: Mapping[Any, List[str]]) -> str:
    return "; ".join(f"{value or 'none'} on {', '.join(labels)}" for value, labels in groups.items())


def heterogeneity(nodes: Sequence[Mapping[str, Any]]) -> List[Finding]:
    """Findings for what differs between the nodes of one cluster (driver, GPUs, profile, package versions)."""
    out: List[Finding] = []
    if len(nodes) < 2:
        return out
    drivers = _spread(nodes, lambda n: n["report"]["hardware"]["driver"])
    if len(drivers) > 1:
        out.append(Finding("ray-heterogeneous-driver", "warning", f"NVIDIA drivers differ: {_describe(drivers)}",
                           "install one driver branch on every node (the newest CUDA a job can use is the one "
                           "the oldest driver supports)"))
    gpus = _spread(nodes, _gpu_signature)
    if len(gpus) > 1:
        out.append(Finding("ray-heterogeneous-gpu", "warning", f"GPUs differ: {_describe(gpus)}",
                           "schedule the job on one GPU type, or let compat choose per node (the worker hook "
                           "does) and pin the settings that must agree, e.g. COMPAT_PROFILE=<oldest GPU's profile>"))
    dtypes = _spread(nodes, lambda n: n["report"]["profile"]["dtype"])
    if len(dtypes) > 1:
        out.append(Finding("ray-heterogeneous-dtype", "warning", f"profiles choose different dtypes: "
                           f"{_describe(dtypes)}",
                           "trainer and rollout must agree on one dtype: set COMPAT_PROFILE (or dtype=) to the "
                           "oldest GPU's profile on every node"))
    all_names = sorted({k for n in nodes for k in _versions(n)})
    for name in all_names:
        groups = _spread(nodes, _version_of(name))
        if len(groups) > 1:
            sev = "error" if name in MUST_MATCH else "warning"
            out.append(Finding(f"ray-heterogeneous-{name}", sev, f"{name} differs between nodes: "
                               f"{_describe(groups)}",
                               f"install the same {name} on every node (one image or lock file for the cluster)"))
    return out


def cluster_findings(nodes: Sequence[Mapping[str, Any]], missing: Sequence[str] = ()) -> List[Finding]:
    """Each node's own error/warning findings (prefixed with the node), the unreachable nodes, heterogeneity."""
    out: List[Finding] = []
    wait = Switches.parse().ray_timeout if missing else RAY_TIMEOUT_S
    for label in missing:
        out.append(Finding("ray-node-unreachable", "error", f"node {label} did not answer within {wait:.0f} s",
                           "check the node (`ray status`), or raise COMPAT_RAY_TIMEOUT"))
    seen = set()
    for n in nodes:
        for f in n["report"]["findings"]:
            if f["severity"] == "info":
                continue
            key = (f["id"], f["message"])
            labels = [_label(m) for m in nodes if any((g["id"], g["message"]) == key
                                                      for g in m["report"]["findings"])]
            if key in seen:
                continue
            seen.add(key)
            where = "all nodes" if len(labels) == len(nodes) else ", ".join(labels)
            out.append(Finding(f["id"], f["severity"], f"[{where}] {f['message']}", f.get("fix", "")))
    return out + heterogeneity(nodes)


def gather(hardware: Optional[str] = None, profile: Optional[str] = None,
           timeout_s: Optional[float] = None) -> Tuple[List[Dict[str, Any]], List[str]]:
    """(node dicts, labels of nodes that did not answer): one task per alive node, pinned there."""
    if timeout_s is None:
        timeout_s = Switches.parse().ray_timeout
    ray = _import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0, max_retries=0)(node_report)
    alive = [n for n in ray.nodes() if n.get("Alive")]
    refs: Dict[Any, Dict[str, Any]] = {}  # ray.ObjectRef (untyped) -> ray.nodes() entry
    for n in alive:
        strategy = NodeAffinitySchedulingStrategy(node_id=n["NodeID"], soft=False)
        refs[task.options(scheduling_strategy=strategy).remote(hardware, profile)] = n
    ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    nodes: List[Dict[str, Any]] = []
    missing: List[str] = []
    for ref in ready:
        info = refs[ref]
        try:
            d = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - a node whose task failed is reported, not fatal
            missing.append(f"{info.get('NodeManagerAddress')} ({info['NodeID'][:8]}): {type(exc).__name__}")
            continue
        d["node_id"] = info["NodeID"]
        d["ip"] = info.get("NodeManagerAddress")
        nodes.append(d)
    for ref in pending:
        info = refs[ref]
        missing.append(f"{info.get('NodeManagerAddress')} ({info['NodeID'][:8]})")
        ray.cancel(ref, force=True)
    nodes.sort(key=lambda d: (d.get("ip") or "", d["node_id"]))
    return nodes, missing


def render_text(nodes: Sequence[Mapping[str, Any]], findings: Sequence[Finding]) -> str:
    lines = [f"compat doctor --ray: {len(nodes)} node(s)", ""]
    for n in nodes:
        r = n["report"]
        hw, prof, pk = r["hardware"], r["profile"], r["software"]["packages"]
        sim = f"  (simulated from {n['hardware_file']})" if n.get("hardware_file") else ""
        lines.append(f"node {_label(n)}  {n.get('hostname')}{sim}")
        lines.append(f"  driver {hw['driver'] or 'none'}, GPUs: {_gpu_signature(n)}")
        lines.append(f"  profile {prof['name']}, dtype {prof['dtype']}, attention {prof['attention_backend'] or '-'}")
        shown = ", ".join(f"{k} {pk[k]}" for k in ("torch", "vllm", "flash-attn", "transformers", "ray") if k in pk)
        lines.append(f"  python {n.get('python')}, compat {n.get('compat')}" + (f", {shown}" if shown else ""))
    lines += ["", "Findings"]
    mark = {"error": "ERROR", "warning": "WARN ", "info": "info "}
    for f in findings:
        lines.append(f"  {mark[f.severity]} {f.message}")
        if f.fix:
            lines.append(f"        fix: {f.fix}")
    if not findings:
        lines.append("  none: every node agrees")
    n_err = sum(f.severity == "error" for f in findings)
    lines += ["", f"{n_err} error(s)" if n_err else "OK"]
    return "\n".join(lines)


def doctor_ray(args: argparse.Namespace) -> int:
    """`python -m compat doctor --ray`: exit 0 (no error finding), 1 (errors), 2 (no Ray / no cluster)."""
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS") or "auto"
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise CompatError(f"no running Ray cluster at {address!r} ({exc}); start one with `ray start --head` "
                              f"or set RAY_ADDRESS") from None
        started = True
    try:
        nodes, missing = gather(getattr(args, "hardware", None), getattr(args, "profile", None))
    finally:
        if started:
            ray.shutdown()
    findings = cluster_findings(nodes, missing)
    if getattr(args, "json", False):
        json.dump({"schema": 1, "nodes": nodes, "unreachable": list(missing),
                   "findings": [f.as_dict() for f in findings]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render_text(nodes, findings))
    return 1 if any(f.severity == "error" for f in findings) else 0
