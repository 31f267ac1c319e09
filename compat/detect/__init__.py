"""Detect the machine: GPUs, driver, CUDA, installed packages. Never imports torch or vLLM.

Hardware comes from NVML, else /proc + libcuda + nvidia-smi, else "none"; each probe has a timeout and a
failure becomes a finding, never an exception. Hardware detection through NVML is cached per boot and
driver in the user's cache directory (COMPAT_NO_CACHE=1 turns that off), because NVML start-up can cost
tens of milliseconds on a multi-GPU node and setup() runs in every process.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from ..errors import CompatError
from ..findings import Finding
from ..switches import PROBE_TIMEOUT_S as DEFAULT_PROBE_TIMEOUT_S
from ..switches import Switches
from . import fallback, nvml
from ._timeout import ProbeTimeout, call_with_timeout
from .model import GPU, Environment, Hardware, Software
from .software import detect_software
from .visible import visible_gpus

__all__ = ["GPU", "Hardware", "Software", "Environment", "detect", "detect_hardware", "clear_cache"]

PROBE_TIMEOUT_S = DEFAULT_PROBE_TIMEOUT_S  # default deadline of each probe; COMPAT_PROBE_TIMEOUT=seconds overrides it


def _probe_timeout(env: Mapping[str, str]) -> float:
    value = Switches.parse(env).get("probe_timeout")  # CompatError (exit 2) on a non-finite or non-positive value
    return PROBE_TIMEOUT_S if value is None else float(value)

CACHE_VERSION = 1

_lock = threading.Lock()
_cache: Dict[Tuple[Optional[str], ...], Environment] = {}


def clear_cache() -> None:
    from .software import _scan_cache

    with _lock:
        _cache.clear()
        _scan_cache.clear()


def detect(hardware_file: Optional[str] = None, environ: Optional[Mapping[str, str]] = None) -> Environment:
    """The machine as this process sees it; computed once per process per (file, visibility)."""
    env = os.environ if environ is None else environ
    key = (hardware_file, env.get("CUDA_VISIBLE_DEVICES"), env.get("NVIDIA_VISIBLE_DEVICES"))
    with _lock:
        hit = _cache.get(key)
        if hit is None:
            hit = _cache[key] = _detect(hardware_file, env)
        return hit


def _detect(hardware_file: Optional[str], env: Mapping[str, str]) -> Environment:
    software: Optional[Software] = None
    if hardware_file:
        from .simulate import load_hardware_file

        hw, software = load_hardware_file(hardware_file)
    else:
        hw = detect_hardware(env)
    shown = visible_gpus(hw.gpus, env)
    findings = list(hw.findings)
    if hw.gpus and not shown:
        findings.append(Finding("no-visible-gpu", "warning",
                                f"{len(hw.gpus)} GPU(s) present but none visible to this process "
                                f"(CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES')!r})",
                                "unset CUDA_VISIBLE_DEVICES or list valid indices/UUIDs"))
    hw = Hardware(hw.driver, hw.cuda, shown, hw.source, ())
    return Environment(hardware=hw, software=software or detect_software(), findings=tuple(findings),
                       hardware_file=hardware_file)


def detect_hardware(env: Mapping[str, str] = os.environ) -> Hardware:
    """All GPUs of the machine (before CUDA_VISIBLE_DEVICES), with findings for every probe that failed."""
    proc_driver = fallback.proc_driver_version()
    if proc_driver is None and not fallback.smi_available() and not _nvml_forced(env):
        return Hardware(source="none")  # no driver loaded: a CPU machine; skip loading NVML at all
    cache_file = _cache_path(proc_driver, env)
    cached = _read_cache(cache_file)
    if cached is not None:
        return cached
    findings: List[Finding] = []
    try:
        hw = call_with_timeout(nvml.probe, _probe_timeout(env))
        _write_cache(cache_file, hw)
        return hw
    except nvml.NvmlUnavailable as exc:
        reason = str(exc)
        sev = "error" if "mismatch" in reason else "warning"
        fix = ("reboot, or reload the nvidia kernel modules, so driver and library match"
               if "mismatch" in reason else "pip install nvidia-ml-py, or check the NVIDIA driver installation")
        findings.append(Finding("nvml-unavailable", sev, f"NVML unavailable: {reason}; used fallbacks", fix))
    except ProbeTimeout as exc:
        findings.append(Finding("nvml-timeout", "error", f"NVML did not answer: {exc}",
                                "a GPU may be wedged: check `nvidia-smi` and dmesg for Xid errors"))
    except Exception as exc:  # a broken NVML binding must never crash the job
        findings.append(Finding("nvml-failed", "warning", f"NVML probe failed: {exc!r}; used fallbacks",
                                "report this to compat with the output of nvidia-smi"))
    return _fallback(proc_driver, findings, _probe_timeout(env))


def _nvml_forced(env: Mapping[str, str]) -> bool:
    return Switches.parse(env).force_nvml


def _fallback(proc_driver: Optional[str], findings: List[Finding], timeout: float) -> Hardware:
    gpus: Tuple[GPU, ...] = ()
    source = "proc" if proc_driver else "none"
    if fallback.smi_available():
        try:
            parsed, bad = fallback.parse_smi_csv(fallback.run_smi(timeout))
            gpus, source = tuple(parsed), "nvidia-smi"
            if bad:
                findings.append(Finding("smi-unparsed", "warning", f"nvidia-smi lines not understood: {bad}",
                                        "a driver too old for --query-gpu=compute_cap: upgrade the driver"))
        except Exception as exc:
            findings.append(Finding("smi-failed", "warning", f"nvidia-smi failed: {exc}",
                                    "check the NVIDIA driver installation (`nvidia-smi` by hand)"))
    cuda = None
    try:
        cuda = call_with_timeout(fallback.libcuda_driver_cuda, timeout)
    except ProbeTimeout:
        findings.append(Finding("libcuda-timeout", "warning", "libcuda did not answer cuDriverGetVersion", ""))
    if proc_driver and not gpus:
        findings.append(Finding("gpus-unknown", "warning",
                                f"NVIDIA driver {proc_driver} is loaded but no GPU could be listed",
                                "install nvidia-ml-py, or make nvidia-smi available on PATH"))
    return Hardware(driver=proc_driver, cuda=cuda, gpus=gpus, source=source, findings=tuple(findings))


def _cache_path(proc_driver: Optional[str], env: Mapping[str, str]) -> Optional[Path]:
    if proc_driver is None or Switches.parse(env).no_cache:
        return None
    from ._cachepath import boot_keyed_path

    return boot_keyed_path(f"hardware-v{CACHE_VERSION}", proc_driver, env)


def _read_cache(path: Optional[Path]) -> Optional[Hardware]:
    """The cached NVML answer, or None when there is none or it is not exactly what _write_cache writes (wrong type,
    missing field, truncated, not a regular file, too big): then the probe runs and its answer replaces the file.
    A bad cache is compat's own problem, never fatal and never reported as the user's input."""
    if path is None:
        return None
    import json

    from .._toml import read_regular

    try:
        d = json.loads(read_regular(path, "detection cache", 1 << 20).decode("utf-8"))
        if not isinstance(d, dict) or not isinstance(d.get("gpus"), list):
            return None
        gpus = []
        for g in d["gpus"]:
            cc = g["compute_capability"]
            if not (isinstance(cc, list) and len(cc) == 2 and all(type(x) is int and 0 <= x < 100 for x in cc)
                    and type(g["index"]) is int and isinstance(g["name"], str) and type(g["memory_mib"]) is int
                    and isinstance(g["uuid"], str) and type(g["mig"]) is bool):
                return None
            gpus.append(GPU(g["index"], g["name"], (cc[0], cc[1]), g["memory_mib"], g["uuid"], g["mig"]))
        driver, cuda = d["driver"], d["cuda"]
        if not isinstance(driver, str) or not (cuda is None or isinstance(cuda, str)):
            return None
        return Hardware(driver=driver, cuda=cuda, gpus=tuple(gpus), source="nvml")
    except (CompatError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def _write_cache(path: Optional[Path], hw: Hardware) -> None:
    if path is None or hw.findings or any(g.mig for g in hw.gpus):
        return  # MIG instances come and go without a reboot: never cache a MIG layout
    import json

    data = {"driver": hw.driver, "cuda": hw.cuda,
            "gpus": [dict(g.as_dict(), compute_capability=list(g.compute_capability)) for g in hw.gpus]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home must not break detection
