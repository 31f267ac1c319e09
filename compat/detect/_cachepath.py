"""Where per-boot caches live: one rule for the detection cache and the multi-GPU verdict cache."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional


def boot_keyed_path(prefix: str, key: str, env: Mapping[str, str]) -> Optional[Path]:
    """`$XDG_CACHE_HOME/compat/<prefix>-<boot id>-<key>.json`; None where the boot id cannot be read.

    The boot id (a UUID) and the caller's key name the file, so a reboot or a driver change starts afresh; no
    hashing, which would cost an import in every process.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "compat"
    safe = "".join(c if c.isalnum() or c in ".-_" else "_" for c in f"{boot}-{key}")
    return base / f"{prefix}-{safe}.json"
