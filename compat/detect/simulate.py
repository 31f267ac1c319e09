"""Hardware described in a TOML file (format: ../shared/hardware/README.md) instead of detected."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Tuple, Union

from .._toml import load_toml
from ..errors import CompatError
from .model import GPU, Hardware, Software, packages_tuple
from .software import torch_cuda


def _cc(value, where: str) -> Tuple[int, int]:
    try:
        major, minor = str(value).split(".")
        return int(major), int(minor)
    except ValueError:
        raise CompatError(f"{where}: compute_capability must look like \"8.0\", got {value!r}") from None


def load_hardware_file(path: Union[str, Path]) -> Tuple[Hardware, Optional[Software]]:
    """Parse a hardware description; the Software part is None when the file has no [packages] table."""
    data = load_toml(path, what="hardware file")
    where = str(path)
    driver = data.get("driver", {})
    if not isinstance(driver, dict):
        raise CompatError(f"{where}: [driver] must be a table with version and cuda")
    gpus = []
    for n, entry in enumerate(data.get("gpus", [])):
        try:
            name = str(entry["name"])
            cc = _cc(entry["compute_capability"], f"{where} gpus[{n}]")
            count = int(entry.get("count", 1))
            if count < 0:
                raise ValueError(f"count must be >= 0, got {count}")
            memory = int(entry.get("memory_mib", 0))
        except KeyError as exc:
            raise CompatError(f"{where}: gpus[{n}] lacks {exc.args[0]}; see the format in the README") from None
        except (TypeError, ValueError) as exc:
            raise CompatError(f"{where}: gpus[{n}] has a bad value ({exc})") from None
        for _ in range(count):
            gpus.append(GPU(index=len(gpus), name=name, compute_capability=cc, memory_mib=memory,
                            uuid=str(entry.get("uuid", "")), mig=bool(entry.get("mig", False))))
    if gpus and not driver.get("version"):
        raise CompatError(f"{where}: GPUs are listed but [driver] version is missing")
    for key, pattern in (("version", "535.104.05"), ("cuda", "12.2")):
        value = driver.get(key)
        if value is not None and not (isinstance(value, str) and value.replace(".", "").isdigit() and "." in value):
            raise CompatError(f"{where}: [driver] {key} must be a quoted dotted version like \"{pattern}\", got {value!r}")
    hw = Hardware(driver=driver.get("version"), cuda=driver.get("cuda"), gpus=tuple(gpus), source="file")
    packages = data.get("packages")
    if packages is None:
        return hw, None
    if not isinstance(packages, dict):
        raise CompatError(f"{where}: [packages] must map distribution names to versions")
    from ..versions import parse

    for name, version in packages.items():
        try:
            parse(str(version))
        except CompatError:
            raise CompatError(f"{where}: [packages] {name} = {version!r} is not a valid version "
                              f"(e.g. \"2.5.1+cu124\")") from None
    pk = packages_tuple(packages)
    tv = dict(pk).get("torch")
    return hw, Software(python=str(data.get("python", ".".join(map(str, sys.version_info[:3])))), packages=pk,
                        torch_cuda=torch_cuda(tv, None), source="file")
