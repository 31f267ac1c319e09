"""pip's stand-in for uv's --override: an installed package's requirements with some of them replaced.

    python -m compat.install.requirements --python PY --output FILE vllm --override=outlines==0.0.41

reads vllm's Requires-Dist from the environment of PY (after `pip install --no-deps vllm==X`), swaps every
requirement whose name an override names for the override, and writes a requirements file pip can install.
Markers are kept (pip evaluates them; `extra == "..."` lines drop out as they should).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..errors import CompatError

_CODE = ("import json, sys, importlib.metadata as m\n"
         "try: print(json.dumps(m.requires(sys.argv[1]) or []))\n"
         "except m.PackageNotFoundError: print('null')\n")


def installed_requires(python: str, dist: str) -> List[str]:
    out = subprocess.run([python, "-c", _CODE, dist], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise CompatError(f"cannot read {dist}'s requirements with {python}: {out.stderr.strip()[-200:]}")
    reqs = json.loads(out.stdout)
    if reqs is None:
        raise CompatError(f"{dist} is not installed in the environment of {python}; install it with --no-deps first")
    return [str(r) for r in reqs]


def apply_overrides(requires: Sequence[str], overrides: Sequence[str]) -> List[str]:
    try:
        over = {canonicalize_name(Requirement(o).name): o for o in overrides}
    except InvalidRequirement as exc:
        raise CompatError(f"bad override: {exc}") from None
    out: List[str] = []
    for line in requires:
        req = Requirement(line)
        if canonicalize_name(req.name) in over:
            continue
        out.append(line)
    return out + list(over.values())


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compat.install.requirements", description=__doc__.splitlines()[0])
    ap.add_argument("dist")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--override", action="append", default=[])
    ap.add_argument("--output", required=True)
    args = ap.parse_args(argv)
    try:
        lines = apply_overrides(installed_requires(args.python, args.dist), args.override)
    except CompatError as exc:
        sys.stderr.write(f"compat: error: {exc}\n")
        return 2
    Path(args.output).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
