"""GPU and driver detection through NVML (the nvidia-ml-py distribution, module `pynvml`).

NVML talks to the kernel driver only: it never creates a CUDA context, so it is safe before fork and in
every Ray worker.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from ..findings import Finding
from .model import GPU, Hardware


class NvmlUnavailable(Exception):
    """NVML cannot be used here; the message says why (used for the fallback finding)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def cuda_from_int(version: int) -> str:
    """NVML/CUDA encode 12.2 as 12020."""
    return f"{version // 1000}.{(version % 1000) // 10}"


def probe() -> Hardware:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        raise NvmlUnavailable("nvidia-ml-py is not installed") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(_init_reason(pynvml, exc)) from None
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        try:
            cuda: Optional[str] = cuda_from_int(pynvml.nvmlSystemGetCudaDriverVersion_v2())
        except (pynvml.NVMLError, AttributeError):
            cuda = None
        gpus, findings = _devices(pynvml)
        return Hardware(driver=driver, cuda=cuda, gpus=tuple(gpus), source="nvml", findings=tuple(findings))
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _init_reason(pynvml: Any, exc: BaseException) -> str:
    mismatch = getattr(pynvml, "NVML_ERROR_LIB_RM_VERSION_MISMATCH", 18)
    if getattr(exc, "value", None) == mismatch:
        return ("NVML driver/library version mismatch (the driver was upgraded but the old kernel module "
                "is still loaded)")
    return f"NVML failed to initialise: {exc}"


def _devices(pynvml: Any) -> Tuple[List[GPU], List[Finding]]:
    gpus: List[GPU] = []
    findings: List[Finding] = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        try:
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            gpu = _device(pynvml, h, i)
        except pynvml.NVMLError as exc:
            findings.append(Finding(
                "gpu-unreadable", "error", f"GPU {i} did not answer NVML: {exc}",
                "check `nvidia-smi -q -i %d`; a GPU that has fallen off the bus needs a reset or reboot" % i))
            continue
        mig_children = _mig_devices(pynvml, h, gpu) if gpu.mig else []
        gpus.extend(mig_children or [gpu])
    return gpus, findings


def _device(pynvml: Any, h: Any, index: int) -> GPU:
    major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
    try:
        current, _pending = pynvml.nvmlDeviceGetMigMode(h)
        mig = current == getattr(pynvml, "NVML_DEVICE_MIG_ENABLE", 1)
    except pynvml.NVMLError:
        mig = False
    return GPU(
        index=index,
        name=_text(pynvml.nvmlDeviceGetName(h)),
        compute_capability=(int(major), int(minor)),
        memory_mib=int(pynvml.nvmlDeviceGetMemoryInfo(h).total // (1024 * 1024)),
        uuid=_text(pynvml.nvmlDeviceGetUUID(h)),
        mig=mig,
    )


def _mig_devices(pynvml: Any, parent_handle: Any, parent: GPU) -> List[GPU]:
    """With MIG on, CUDA sees the MIG instances, not the parent: list those."""
    out: List[GPU] = []
    try:
        n = pynvml.nvmlDeviceGetMaxMigDeviceCount(parent_handle)
    except pynvml.NVMLError:
        return out
    for j in range(n):
        try:
            mh = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent_handle, j)
        except pynvml.NVMLError:
            continue  # empty slot
        try:
            out.append(GPU(index=parent.index, name=_text(pynvml.nvmlDeviceGetName(mh)),
                           compute_capability=parent.compute_capability,
                           memory_mib=int(pynvml.nvmlDeviceGetMemoryInfo(mh).total // (1024 * 1024)),
                           uuid=_text(pynvml.nvmlDeviceGetUUID(mh)), mig=True))
        except pynvml.NVMLError:
            continue
    return out
