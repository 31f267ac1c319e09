"""Detection without NVML: /proc/driver/nvidia/version, libcuda's cuDriverGetVersion, nvidia-smi CSV."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Optional, Tuple

from .model import GPU
from .nvml import cuda_from_int

PROC_VERSION = Path("/proc/driver/nvidia/version")
_DRIVER_RE = re.compile(r"Kernel Module(?: for [\w-]+)?\s+(\d+\.\d+(?:\.\d+)?)")
SMI_FIELDS = "index,name,compute_cap,memory.total,uuid,mig.mode.current"


def proc_driver_version(path: Path = PROC_VERSION) -> Optional[str]:
    """The loaded kernel module's version: present whenever the NVIDIA driver is loaded (Linux)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    m = _DRIVER_RE.search(text)
    return m.group(1) if m else None


def libcuda_driver_cuda() -> Optional[str]:
    """cuDriverGetVersion needs no cuInit, so it reads the driver's CUDA without creating a context."""
    import ctypes

    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    v = ctypes.c_int(0)
    if lib.cuDriverGetVersion(ctypes.byref(v)) != 0 or v.value <= 0:
        return None
    return cuda_from_int(v.value)


def smi_available() -> bool:
    # shutil.which without importing shutil: this runs in every process
    return any(os.access(os.path.join(d, "nvidia-smi"), os.X_OK)
               for d in os.environ.get("PATH", "").split(os.pathsep) if d)


def run_smi(timeout: float) -> str:
    """Raw CSV from nvidia-smi; raises subprocess/OS errors for the caller to turn into a finding."""
    import subprocess

    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={SMI_FIELDS}", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, timeout=timeout, check=True)
    return out.stdout


def parse_smi_csv(text: str) -> Tuple[List[GPU], List[str]]:
    """Parse `nvidia-smi --query-gpu=...` CSV; returns GPUs and the lines it could not read."""
    gpus: List[GPU] = []
    bad: List[str] = []
    for line in text.strip().splitlines():
        cols = [c.strip() for c in line.split(",")]
        if len(cols) < 5:
            bad.append(line)
            continue
        try:
            major, minor = cols[2].split(".")
            gpus.append(GPU(index=int(cols[0]), name=cols[1], compute_capability=(int(major), int(minor)),
                            memory_mib=int(float(cols[3])), uuid=cols[4],
                            mig=len(cols) > 5 and cols[5].lower() == "enabled"))
        except ValueError:
            bad.append(line)
    return gpus, bad
