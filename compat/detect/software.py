"""Installed software, read from distribution metadata on disk: nothing heavy is imported.

`importlib.metadata.version()` rescans sys.path on every call; scanning each sys.path directory once and
reading versions from the `*.dist-info` directory names is a few times faster, which matters because
setup() runs in every process of a job.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

from .model import Software, _normalize, packages_tuple

# Distributions whose versions decide profiles, patches and plans. Several names map to one package
# (flashinfer ships as flashinfer-python; NCCL as nvidia-nccl-cu11/12/13).
WATCHED = (
    "torch", "vllm", "flash-attn", "xformers", "flashinfer-python", "flashinfer", "triton", "transformers",
    "nvidia-nccl-cu11", "nvidia-nccl-cu12", "nvidia-nccl-cu13", "verl", "ray", "nvidia-ml-py", "pynvml",
)
_DIST_RE = re.compile(r"^(?P<name>.+?)-(?P<version>[^-]+?)(?:-py\d[\d.]*)?\.(?:dist-info|egg-info)$")
_TORCH_CUDA_RE = re.compile(r"^cuda\s*(?::\s*[\w\[\]., ]+)?=\s*['\"]([\d.]+)['\"]", re.M)


def scan(paths: Iterable[str]) -> Dict[str, Tuple[str, Path]]:
    """name -> (version, metadata dir), first occurrence on sys.path wins like the import system."""
    found: Dict[str, Tuple[str, Path]] = {}
    for entry in paths:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for n in names:
            m = _DIST_RE.match(n)
            if m:
                key = _normalize(m.group("name"))
                found.setdefault(key, (m.group("version"), Path(entry, n)))
    return found


_scan_cache: Dict[Tuple[str, ...], Dict[str, Tuple[str, Path]]] = {}


def installed_version(name: str, paths: Optional[Iterable[str]] = None) -> Optional[str]:
    """Version of an installed distribution, the way the rest of compat sees it.

    The fast scan covers `name-version.dist-info` / `.egg-info` on sys.path; legacy develop installs
    (`name.egg-info` without a version) fall back to importlib.metadata. One lookup for the whole
    project, so detection, the patch engine and the FP8 loader never disagree.
    """
    key = tuple(sys.path if paths is None else paths)
    found = _scan_cache.get(key)
    if found is None:
        found = _scan_cache[key] = scan(key)
    hit = found.get(_normalize(name))
    if hit is not None:
        return hit[0]
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_cuda(version: Optional[str], dist_dir: Optional[Path]) -> Optional[str]:
    """CUDA of the torch build: from its local version (+cu124) or, for default wheels, torch/version.py."""
    if version is None:
        return None
    local = version.partition("+")[2]
    if local.startswith("cu") and local[2:].isdigit():
        digits = local[2:]
        return f"{digits[:-1]}.{digits[-1]}"
    if local in ("cpu", "rocm") or local.startswith("rocm"):
        return None
    if dist_dir is not None:
        try:
            text = (dist_dir.parent / "torch" / "version.py").read_text()
        except OSError:
            return None
        m = _TORCH_CUDA_RE.search(text)
        if m:
            return m.group(1)
    return None


def detect_software(paths: Optional[Iterable[str]] = None) -> Software:
    found = scan(sys.path if paths is None else paths)
    versions = {k: found[k][0] for k in WATCHED if k in found}
    if "flashinfer" in versions and "flashinfer-python" not in versions:
        versions["flashinfer-python"] = versions.pop("flashinfer")
    torch = found.get("torch")
    return Software(
        python=".".join(map(str, sys.version_info[:3])),
        packages=packages_tuple(versions),
        torch_cuda=torch_cuda(torch[0], torch[1]) if torch else None,
    )
