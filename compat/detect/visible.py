"""CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES: which of the machine's GPUs this process will use."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple

from .model import GPU


def _select(gpus: Sequence[GPU], spec: str) -> Tuple[GPU, ...]:
    """Apply one visibility list the way the CUDA runtime does.

    Entries are indices or UUID prefixes (GPU-..., MIG-...); the list stops at the first entry that names
    no device, as CUDA's does.
    """
    spec = spec.strip()
    if spec.lower() in ("all", ""):
        return tuple(gpus) if spec.lower() == "all" else ()
    if spec.lower() in ("none", "void", "nodevfiles"):
        return ()
    chosen = []
    for token in (t.strip() for t in spec.split(",")):
        match: Optional[GPU] = None
        if token.lstrip("-").isdigit():
            i = int(token)
            match = gpus[i] if 0 <= i < len(gpus) else None
        elif token:
            hits = [g for g in gpus if g.uuid and g.uuid.startswith(token)]
            match = hits[0] if len(hits) == 1 else None  # an ambiguous prefix names no device, as in CUDA
        if match is None:
            break
        if match not in chosen:
            chosen.append(match)
    return tuple(chosen)


def visible_gpus(gpus: Sequence[GPU], environ: Mapping[str, str]) -> Tuple[GPU, ...]:
    """GPUs this process can use. NVIDIA_VISIBLE_DEVICES is the container runtime's filter (applied by the
    runtime before NVML sees the machine); CUDA_VISIBLE_DEVICES is the CUDA runtime's, applied on top."""
    result = tuple(gpus)
    nv = environ.get("NVIDIA_VISIBLE_DEVICES")
    if nv is not None and nv.strip():  # empty: treated as unset (CUDA itself never reads this variable)
        listed = [t for t in nv.split(",") if t.strip()]
        if nv.strip().lower() in ("none", "void", "nodevfiles"):
            return ()
        # Inside a container the runtime has already filtered what NVML sees; outside one (more devices
        # visible than listed) apply the list ourselves.
        if nv.strip().lower() != "all" and len(result) > len(listed):
            result = _select(result, nv)
    if environ.get("CUDA_DEVICE_ORDER", "FASTEST_FIRST") != "PCI_BUS_ID":
        # CUDA numbers devices fastest first unless told PCI_BUS_ID (NVML's order); on a mixed node the
        # newest architecture comes first. sorted() is stable, so equal GPUs keep their PCI order.
        result = tuple(sorted(result, key=lambda g: -g.sm))
    cvd = environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        result = _select(result, cvd)
    # CUDA renumbers visible devices from 0
    return tuple(GPU(i, g.name, g.compute_capability, g.memory_mib, g.uuid, g.mig) for i, g in enumerate(result))
