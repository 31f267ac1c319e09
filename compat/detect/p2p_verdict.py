"""The multi-GPU verdict of `doctor --deep`, cached per boot + driver + GPU set, for setup() to read.

`doctor --deep` on a machine with two or more GPUs copies data between every pair of GPUs and runs an NCCL
all_reduce across all of them (compat/report/_deep_probe.py), each within a deadline. Whether peer-to-peer
traffic is sound is a fact of the machine (board, driver, IOMMU/ACS settings), not of a driver version, so the
verdict is stored beside the hardware-detection cache and keyed the same way (boot id, driver version) plus
the UUIDs of the GPUs it was measured on. A profile rule marked `p2p_check = true` (profiles/ada.toml) then
follows the verdict instead of its `driver_below` heuristic. Reading it is one small JSON file: no torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

from ..errors import CompatError

VERDICT_VERSION = 1


def verdict_path(driver: Optional[str], gpu_uuids: Sequence[str],
                 env: Mapping[str, str] = os.environ) -> Optional[Path]:
    """Where the verdict for this boot, driver and GPU set lives; None where it cannot be keyed."""
    if not driver or not gpu_uuids or not all(gpu_uuids):
        return None
    from ..switches import Switches

    try:
        if Switches.parse(env).no_cache:
            return None
    except Exception:  # noqa: BLE001 - a malformed COMPAT_NO_CACHE is reported where detection reads it
        return None
    from ._cachepath import boot_keyed_path

    # GPU UUIDs are "GPU-<8>-<4>-..."; the first 8 hex digits of each name the set without a hash import
    gpus = "_".join(sorted(u.replace("GPU-", "")[:8] for u in gpu_uuids))
    return boot_keyed_path(f"p2p-v{VERDICT_VERSION}", f"{driver}-{gpus}", env)


def read_verdict(driver: Optional[str], gpu_uuids: Sequence[str],
                 env: Mapping[str, str] = os.environ) -> Optional[Dict[str, object]]:
    """The cached verdict ({"p2p_ok": bool, ...}) for exactly this GPU set, or None (never checked, unreadable)."""
    path = verdict_path(driver, gpu_uuids, env)
    if path is None:
        return None
    try:
        from .._toml import read_regular

        data = json.loads(read_regular(path, "P2P verdict cache", 1 << 20).decode("utf-8"))
    except (OSError, ValueError, RecursionError, CompatError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("p2p_ok"), bool):
        return None
    if sorted(data.get("gpu_uuids") or ()) != sorted(gpu_uuids):
        return None  # a prefix collision or a hand-edited file: trust only an exact match
    return data


def p2p_ok(driver: Optional[str], gpu_uuids: Sequence[str], env: Mapping[str, str] = os.environ) -> Optional[bool]:
    """True/False when `doctor --deep` proved/disproved P2P on this machine since boot; None when unknown."""
    data = read_verdict(driver, gpu_uuids, env)
    return None if data is None else bool(data["p2p_ok"])


def write_verdict(driver: Optional[str], gpu_uuids: Sequence[str], verdict: Dict[str, object],
                  env: Mapping[str, str] = os.environ) -> Optional[Path]:
    """Store the verdict atomically; a read-only home only loses the cache. Returns the path written."""
    path = verdict_path(driver, gpu_uuids, env)
    if path is None:
        return None
    data = dict(verdict, gpu_uuids=sorted(gpu_uuids), driver=driver, version=VERDICT_VERSION)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        return None
    return path
