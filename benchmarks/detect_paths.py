"""Detection through each path on a real machine: NVML vs /proc + libcuda + nvidia-smi, and the per-boot cache.

Prints JSON: what each path read, whether they agree, and how long each took. Run on a GPU machine (issue 9).
"""

from __future__ import annotations

import json
import os
import tempfile
import time


def timed(fn):
    t = time.perf_counter()
    value = fn()
    return value, round((time.perf_counter() - t) * 1000, 2)


def main() -> None:
    from compat.detect import detect_hardware, fallback, nvml

    out = {}
    hw, out["nvml_ms"] = timed(nvml.probe)
    out["nvml"] = hw.as_dict()
    drv, out["proc_ms"] = timed(fallback.proc_driver_version)
    cuda, out["libcuda_ms"] = timed(fallback.libcuda_driver_cuda)
    (gpus, bad), out["smi_ms"] = timed(lambda: fallback.parse_smi_csv(fallback.run_smi(10)))
    out["fallback"] = {"driver": drv, "cuda": cuda, "gpus": [g.as_dict() for g in gpus], "unparsed": bad}
    key = lambda gs: [(g["name"], g["compute_capability"], g["memory_mib"], g["uuid"], g["mig"]) for g in gs]  # noqa
    out["agree"] = {"driver": hw.driver == drv, "cuda": hw.cuda == cuda,
                    "gpus": key(out["nvml"]["gpus"]) == key(out["fallback"]["gpus"])}
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, XDG_CACHE_HOME=d)
        env.pop("COMPAT_NO_CACHE", None)
        _, out["detect_hardware_cold_ms"] = timed(lambda: detect_hardware(env))
        _, out["detect_hardware_cached_ms"] = timed(lambda: detect_hardware(env))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
