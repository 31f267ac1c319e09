"""A stand-in for the `pynvml` module that answers from a hardware fixture (fakes only at the hardware edge).

It implements exactly the NVML calls compat.detect.nvml makes, and can fail the ways real NVML fails.
"""

from __future__ import annotations

import time
import types
from pathlib import Path

from compat.detect.simulate import load_hardware_file

NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_NOT_SUPPORTED = 3


class NVMLError(Exception):
    def __init__(self, value):
        super().__init__(f"NVML error {value}")
        self.value = value


def make(fixture: Path, fail_init=None, lost=(), hang_s=0.0, mig_children=None):
    hw, _ = load_hardware_file(fixture)
    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError
    m.NVML_ERROR_LIB_RM_VERSION_MISMATCH = NVML_ERROR_LIB_RM_VERSION_MISMATCH
    m.NVML_DEVICE_MIG_ENABLE = 1
    m.calls = []

    def init():
        m.calls.append("init")
        if hang_s:
            time.sleep(hang_s)
        if fail_init is not None:
            raise NVMLError(fail_init)

    m.nvmlInit = init
    m.nvmlShutdown = lambda: m.calls.append("shutdown")
    m.nvmlSystemGetDriverVersion = lambda: hw.driver.encode()  # old bindings return bytes
    major, minor = (int(x) for x in (hw.cuda or "0.0").split("."))
    m.nvmlSystemGetCudaDriverVersion_v2 = lambda: major * 1000 + minor * 10
    m.nvmlDeviceGetCount = lambda: len(hw.gpus)

    def handle(i):
        if i in lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        return ("gpu", i)

    m.nvmlDeviceGetHandleByIndex = handle
    gpu = lambda h: hw.gpus[h[1]]  # noqa: E731
    m.nvmlDeviceGetName = lambda h: gpu(h).name if h[0] == "gpu" else mig_children[h[1]][h[2]][0]
    m.nvmlDeviceGetCudaComputeCapability = lambda h: gpu(h).compute_capability
    mem = types.SimpleNamespace
    m.nvmlDeviceGetMemoryInfo = lambda h: mem(total=(gpu(h).memory_mib if h[0] == "gpu"
                                                     else mig_children[h[1]][h[2]][1]) * 1024 * 1024)
    m.nvmlDeviceGetUUID = lambda h: f"GPU-{h[1]:04d}-fake" if h[0] == "gpu" else f"MIG-{h[1]}-{h[2]}"

    def mig_mode(h):
        if not gpu(h).mig:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return (1, 1)

    m.nvmlDeviceGetMigMode = mig_mode
    m.nvmlDeviceGetMaxMigDeviceCount = lambda h: 7

    def mig_handle(h, j):
        if not mig_children or j >= len(mig_children.get(h[1], [])):
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return ("mig", h[1], j)

    m.nvmlDeviceGetMigDeviceHandleByIndex = mig_handle
    return m
