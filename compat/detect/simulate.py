"""Hardware described in a TOML file (format: tests/fixtures/hardware/README.md) instead of detected.

One typed schema: every field has one type and range, checked here at the edge, so a wrong value is an error naming
the file, the field, the value and a fix, never a different machine ("8.10" is not sm_90; `mig = "false"` is not
MIG on; `count = 1.5` is not one GPU).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import List, Optional, Tuple, Union

from .._toml import load_toml
from ..errors import CompatError
from ..schema import Table, compute_capability
from .model import GPU, Hardware, Software, packages_tuple
from .software import torch_cuda

FIX = "see the format in tests/fixtures/hardware/README.md"
TOP = ("driver", "gpus", "packages", "python")
DRIVER = ("version", "cuda")
GPU_KEYS = ("name", "compute_capability", "memory_mib", "count", "mig", "uuid")
_DRIVER = re.compile(r"^[0-9]{1,4}(\.[0-9]{1,4}){1,2}$")   # 535.104.05, 470.82
_CUDA = re.compile(r"^[0-9]{1,2}\.[0-9]{1,2}$")            # 12.2
MAX_GPUS = 4096


def load_hardware_file(path: Union[str, Path]) -> Tuple[Hardware, Optional[Software]]:
    """Parse a hardware description; the Software part is None when the file has no [packages] table."""
    if not str(path).strip():
        raise CompatError("the hardware file name is empty; give the path of a hardware TOML file")
    root = Table(load_toml(path, what="hardware file"), str(path), FIX)
    root.only(TOP)
    driver = root.table("driver")
    driver.only(DRIVER)
    version, cuda = driver._get("version", False), driver._get("cuda", False)
    for key, value, pattern, example in (("version", version, _DRIVER, "535.104.05"), ("cuda", cuda, _CUDA, "12.2")):
        if value is not None and not (isinstance(value, str) and pattern.match(value)):
            raise driver.error(key, value, f"a quoted dotted version like \"{example}\"")
    gpus: List[GPU] = []
    for t in root.tables("gpus"):
        t.only(GPU_KEYS)
        name = t.text("name", required=True, nonempty=True)
        raw_cc = t._get("compute_capability", True)
        cc = compute_capability(raw_cc)
        if cc is None:
            raise t.error("compute_capability", raw_cc, "a quoted major.minor like \"8.0\" or \"12.0\" (minor: one digit)")
        count = t.whole("count", 1, minimum=1)
        memory = t.whole("memory_mib", 0)
        mig = t.flag("mig")
        uuid = t.text("uuid", "")
        if len(gpus) + count > MAX_GPUS:
            raise t.error("count", count, f"a GPU count a machine can have (at most {MAX_GPUS} in all)")
        for _ in range(count):
            gpus.append(GPU(index=len(gpus), name=name, compute_capability=cc, memory_mib=memory, uuid=uuid, mig=mig))
    if gpus and version is None:
        raise CompatError(f"{path}: GPUs are listed but [driver] version is missing; {FIX}")
    if gpus and cuda is None:
        raise CompatError(f"{path}: GPUs are listed but [driver] cuda is missing; {FIX}")
    hw = Hardware(driver=version, cuda=cuda, gpus=tuple(gpus), source="file")
    if not root.has("packages"):
        return hw, None
    packages = root.table("packages")
    from ..versions import parse

    found = {}
    for name in packages.data:
        value = packages.text(name, nonempty=True)
        try:
            parse(value)
        except CompatError:
            raise packages.error(name, value, "a valid version (e.g. \"2.5.1+cu124\")") from None
        found[name] = value
    python = root.text("python", ".".join(map(str, sys.version_info[:3])), nonempty=True)
    try:
        parse(python)
    except CompatError:
        raise root.error("python", python, "a Python version like \"3.11.7\"") from None
    pk = packages_tuple(found)
    tv = dict(pk).get("torch")
    return hw, Software(python=python, packages=pk, torch_cuda=torch_cuda(tv, None), source="file")
