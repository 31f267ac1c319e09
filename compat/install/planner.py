"""Plan a torch + vLLM + flash-attn set for a machine, from the knowledge tables only (offline, milliseconds).

The choice, in order:
  vLLM     the requested release, or the newest one in vllm_releases.toml that fits; a release fits when the
           target Python is in its range, the GPU profile does not refuse it (V100: nothing from 0.20) and some
           CUDA variant of its torch pin passes the three rules below;
  torch    exactly the release's pin (vLLM's kernels are built against it);
  variant  (a) carries every visible GPU's arch (same-major rule: knowledge.runs_arch), (b) the driver runs it
           (minor-version compatibility: knowledge.min_driver_for_cuda), (c) has the CUDA major of the vLLM wheel,
           which is built with the default variant of its torch pin (installer.toml [vllm_wheel]);
           the default variant is preferred (it comes from the package index, no extra index needed);
  flash-attn  only on sm80+, the newest release with a prebuilt wheel for this torch minor, CUDA major, Python and
           C++ ABI (flash_attn.toml); else none.
Resolution parity: uv gets `--exclude-newer <cutoff>` + `--override`, pip gets `--uploaded-prior-to <cutoff>` (pip
>= 26.0) and an emulated override (install vLLM without deps, then its requirements with the override swapped in).
"""

from __future__ import annotations

import os
import platform
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from packaging.specifiers import SpecifierSet

from .. import knowledge, versions
from .._toml import load_data
from ..detect.model import Environment, Hardware
from ..detect.software import torch_cuda
from ..errors import CompatError
from ..findings import Finding
from .release_set import ReleaseSet, release_set

INSTALLERS = ("uv", "pip")
OVERRIDES_FILE = "compat-overrides.txt"
REQUIREMENTS_FILE = "compat-requirements.txt"


class PlanRefused(CompatError):
    """No set fits this machine; the message says why and what to change. Not bad usage: `plan` exits 1 with an
    error finding (in JSON too, docs/json-contract.md), `install` exits 1."""

    def __init__(self, message: str, fix: str, rejected: Sequence[Tuple[str, str]] = (), kind: str = "plan-refused"):
        super().__init__(f"{message}; fix: {fix}")
        self.reason, self.fix, self.rejected, self.kind = message, fix, tuple(rejected), kind

    @property
    def finding(self) -> Finding:
        return Finding(self.kind, "error", self.reason, self.fix)


@dataclass(frozen=True)
class Step:
    """One installer step: run `argv`, or write `content` to `path` (shown as a printf line)."""
    argv: Tuple[str, ...] = ()
    path: str = ""
    content: str = ""
    label: str = ""
    verify: bool = False            # check this step with the installer's dry-run before running it

    def shell(self) -> str:
        if self.path:
            lines = " ".join(shlex.quote(x) for x in self.content.splitlines())
            return f"printf '%s\\n' {lines} > {shlex.quote(self.path)}"
        return shlex.join(self.argv)


@dataclass(frozen=True)
class Plan:
    vllm: str
    vllm_date: str
    torch: str
    torch_variant: str
    torch_default_variant: bool
    cuda: str                       # CUDA of the torch variant, "12.8"
    flash_attn: Optional[str]
    cutoff: str                     # UTC timestamp both installers filter uploads by
    overrides: Tuple[str, ...]
    python: str
    profile: str
    explanations: Tuple[Tuple[str, str], ...]   # (what, why)
    findings: Tuple[Finding, ...] = ()
    rejected: Tuple[Tuple[str, str], ...] = ()   # (vllm version, why not), newest first
    gpus: Tuple[str, ...] = field(default=())
    also_install: Tuple[str, ...] = ()  # undeclared run-time dependencies (vllm_releases.toml `also_install`)
    kernels: Tuple[str, ...] = ()       # kernel packages the picked attention backend needs (kernels.toml), pinned

    # -- what to install --------------------------------------------------------------------------------
    @property
    def torch_requirement(self) -> str:
        """torch==2.5.1 for the default wheel; torch==2.8.0+cu126 when the variant index must provide it."""
        return f"torch=={self.torch}" if self.torch_default_variant else f"torch=={self.torch}+{self.torch_variant}"

    @property
    def release_set(self) -> ReleaseSet:
        """The set as the tox matrix installs it (release_set.py: one rule for both)."""
        return ReleaseSet(self.vllm, self.torch, self.cutoff, self.overrides, self.also_install)

    def requirements(self) -> List[str]:
        return self.release_set.requirements(self.torch_requirement) + list(self.kernels)

    def steps(self, installer: str, python: str = "python", pip_has_cutoff: bool = False) -> List[Step]:
        """The installer steps; `python` is the target interpreter (a path in `compat install`)."""
        if installer == "uv":
            return self._uv_steps(python)
        if installer == "pip":
            return self._pip_steps(python, pip_has_cutoff)
        raise CompatError(f"installer {installer!r} is not one of {', '.join(INSTALLERS)}")

    def commands(self, installer: str, python: str = "python", pip_has_cutoff: bool = False) -> List[str]:
        return [s.shell() for s in self.steps(installer, python, pip_has_cutoff)]

    def _base(self, installer: str, python: str) -> List[str]:
        """The install command both installers' steps share: the cutoff, and the index of a non-default variant."""
        if installer == "uv":
            base = ["uv", "pip", "install", "--python", python, "--exclude-newer", self.cutoff]
            return base + ([] if self.torch_default_variant else ["--torch-backend", self.torch_variant])
        base = [python, "-m", "pip", "install", f"--uploaded-prior-to={self.cutoff}"]
        return base + ([] if self.torch_default_variant else ["--extra-index-url", torch_index_url(self.torch_variant)])

    def _flash_attn_steps(self, installer: str, python: str) -> List[Step]:
        """Its build requirements (flash_attn.toml [build]), then flash-attn itself, pinned, without the cutoff."""
        if not self.flash_attn:
            return []
        base = self._base(installer, python)
        return [Step(argv=tuple(base + list(flash_attn_build_requires())), label="install flash-attn's build requirements"),
                Step(argv=tuple(_without_cutoff(base) + ["--no-build-isolation", f"flash-attn=={self.flash_attn}"]),
                     label=f"install flash-attn {self.flash_attn} (prebuilt wheel for this torch)")]

    def _uv_steps(self, python: str) -> List[Step]:
        out: List[Step] = []
        if self.overrides:
            out.append(Step(path=OVERRIDES_FILE, content="\n".join(self.overrides) + "\n",
                            label="write the overrides file"))
        argv = self.release_set.uv_install("uv", python, OVERRIDES_FILE if self.overrides else None,
                                           None if self.torch_default_variant else self.torch_variant)
        out.append(Step(argv=tuple(argv) + self.kernels, verify=True,
                        label=f"install vLLM {self.vllm} + torch {self.torch} ({self.torch_variant})"
                              + "".join(f" + {a}" for a in self.also_install + self.kernels)))
        return out + self._flash_attn_steps("uv", python)

    def _pip_steps(self, python: str, pip_has_cutoff: bool) -> List[Step]:
        out: List[Step] = []
        if not pip_has_cutoff:
            out.append(Step(argv=(python, "-m", "pip", "install", "--upgrade", f"pip>={_pip_cutoff_version()}"),
                            label="upgrade pip to a release with --uploaded-prior-to"))
        base = self._base("pip", python)
        if self.overrides:
            out.append(Step(argv=tuple(base + ["--no-deps", f"vllm=={self.vllm}"]),
                            label=f"install vLLM {self.vllm} alone (pip cannot override its pins)"))
            gen = [python, "-m", "compat.install.requirements", "--python", python, "--output", REQUIREMENTS_FILE]
            out.append(Step(argv=tuple(gen + ["vllm"] + [f"--override={o}" for o in self.overrides]),
                            label="write vLLM's requirements with the overrides swapped in"))
            out.append(Step(argv=tuple(base + ["-r", REQUIREMENTS_FILE] + self.requirements()), verify=True,
                            label=f"install vLLM's requirements + torch {self.torch} ({self.torch_variant})"
                                  + "".join(f" + {a}" for a in self.also_install + self.kernels)))
        else:
            out.append(Step(argv=tuple(base + self.requirements()), verify=True,
                            label=f"install vLLM {self.vllm} + torch {self.torch} ({self.torch_variant})"
                                  + "".join(f" + {a}" for a in self.also_install + self.kernels)))
        return out + self._flash_attn_steps("pip", python)

    def constraints(self) -> str:
        """A pip constraints file pinning the plan (use with the cutoff for the full resolution)."""
        names = " ".join(("vllm",) + self.also_install)
        lines = [f"# compat plan: vLLM {self.vllm} + torch {self.torch} ({self.torch_variant}) for {', '.join(self.gpus)}",
                 f"# resolve as of {self.cutoff}: pip install --uploaded-prior-to={self.cutoff} -c THIS_FILE {names}"
                 + ("" if self.torch_default_variant else " (plus the torch variant index: --format pip)"),
                 f"#                  uv pip install --exclude-newer {self.cutoff} -c THIS_FILE {names}",
                 f"vllm=={self.vllm}", self.torch_requirement, *self.kernels]
        if self.also_install:
            lines.append(f"# also install (undeclared run-time dependencies, first use needs them): {names[5:]}")
        if self.flash_attn:
            lines.append(f"flash-attn=={self.flash_attn}")
        for o in self.overrides:
            lines.append(f"# override (contradicts vLLM's own pin, so not a constraint; --format pip/uv apply it): {o}")
        return "\n".join(lines) + "\n"

    def as_dict(self, installer: str = "uv") -> Dict[str, Any]:
        return {
            "schema": 1, "ok": True,
            "vllm": self.vllm, "vllm_date": self.vllm_date, "torch": self.torch, "torch_variant": self.torch_variant,
            "torch_requirement": self.torch_requirement, "torch_default_variant": self.torch_default_variant,
            "cuda": self.cuda, "flash_attn": self.flash_attn, "python": self.python, "profile": self.profile,
            "gpus": list(self.gpus), "cutoff": self.cutoff, "overrides": list(self.overrides),
            "also_install": list(self.also_install), "kernels": list(self.kernels),
            "requirements": self.requirements(),
            "installer": installer, "commands": self.commands(installer),
            "commands_by_installer": {i: self.commands(i) for i in INSTALLERS},
            "explanations": [{"choice": w, "why": y} for w, y in self.explanations],
            "rejected": [{"vllm": v, "why": y} for v, y in self.rejected],
            "findings": [f.as_dict() for f in self.findings],
        }


def refused_as_dict(exc: PlanRefused, hw: Hardware, python: str, installer: str = "uv") -> Dict[str, Any]:
    """`plan --format json` when nothing fits: Plan.as_dict's keys, the choices null, commands empty, and the
    refusal as an error finding with its fix (docs/json-contract.md)."""
    return {
        "schema": 1, "ok": False,
        "vllm": None, "vllm_date": None, "torch": None, "torch_variant": None, "torch_requirement": None,
        "torch_default_variant": None, "cuda": None, "flash_attn": None, "python": python, "profile": None,
        "gpus": sorted({f"{g.name} (sm_{g.sm})" for g in hw.gpus}), "cutoff": None, "overrides": [],
        "also_install": [], "kernels": [], "requirements": [], "installer": installer, "commands": [],
        "commands_by_installer": {i: [] for i in INSTALLERS}, "explanations": [],
        "rejected": [{"vllm": v, "why": y} for v, y in exc.rejected],
        "findings": [exc.finding.as_dict()],
    }


# ---------------------------------------------------------------------------------------------------------
def _without_cutoff(argv: List[str]) -> List[str]:
    """flash-attn is pinned exactly and may be newer than vLLM's cutoff (its wheels for old torch came later)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--exclude-newer":
            skip = True
        elif not a.startswith("--uploaded-prior-to"):
            out.append(a)
    return out


def _installer_table() -> Dict[str, Any]:
    return load_data("installer")


def _pip_cutoff_version() -> str:
    return str(_installer_table()["pip"]["uploaded_prior_to"])


def torch_index_url(variant: str) -> str:
    return str(_installer_table()["torch_index"]["url"]).format(variant=variant)


def variant_cuda(variant: str) -> str:
    """cu128 -> "12.8", cu118 -> "11.8": the local tag of torch==X+cu128, decoded like detect does."""
    cuda = torch_cuda(f"0+{variant}", None) if variant.startswith("cu") else None
    if cuda is None:
        raise CompatError(f"{variant!r} is not a CUDA variant like cu128")
    return cuda


def flash_attn_build_requires() -> Tuple[str, ...]:
    return tuple(load_data("flash_attn")["build"]["requires"])


@dataclass(frozen=True)
class Request:
    """What the user asked for: vLLM with a specifier ('' = any release)."""
    specifier: SpecifierSet

    def __str__(self) -> str:
        return f"vllm{self.specifier}"


_REQ = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?P<extras>\[[^\]]*\])?\s*(?P<spec>[^;@]*)$")


def parse_request(text: Optional[str]) -> Request:
    """'vllm', 'vllm==0.7.2', 'vllm>=0.8,<0.10' or a bare version '0.7.2'.

    Parsed by hand with packaging's SpecifierSet: packaging.requirements pulls in packaging.tags, which costs
    more start-up time than the whole plan.
    """
    text = (text or "vllm").strip()
    if text and text[0].isdigit():
        text = f"vllm=={text}"
    m = _REQ.match(text)
    if not m:
        raise CompatError(f"{text!r} is not a requirement; use e.g. vllm, vllm==0.7.2 or 'vllm>=0.8,<0.10'")
    if m.group("name").lower() != "vllm":
        raise CompatError(f"compat plans vLLM sets; got {m.group('name')!r} (use vllm, vllm==X or a specifier)")
    if m.group("extras"):
        raise CompatError(f"{text!r}: extras are not supported; name a vLLM version")
    spec = versions.spec(m.group("spec").replace(" ", ""))
    for s in spec:
        versions.parse(s.version.rstrip(".*"), what="vLLM version")
    return Request(spec)


def requested_releases(text: Optional[str]) -> Tuple[Request, List[Dict[str, Any]]]:
    """The request parsed and the table's releases it matches, newest first; CompatError when it is bad or matches
    none. Needs no machine, so `compat install` checks it before probing the target interpreter."""
    req = parse_request(text)
    releases = _releases()
    wanted = [r for r in releases if req.specifier.contains(versions.release(r["version"]), prereleases=True)]
    if not wanted:
        known = f"{releases[-1]['version']}..{releases[0]['version']}" if releases else "none"
        raise CompatError(f"no vLLM release in compat's table matches {str(req)!r} (it knows {known}); upgrade compat "
                          "or name a listed release")
    return req, wanted


def _releases() -> List[Dict[str, Any]]:
    rows = load_data("vllm_releases").get("release", [])
    return sorted(rows, key=lambda r: versions.parse(r["version"]), reverse=True)


def _release_set(rel: Dict[str, Any]) -> ReleaseSet:
    return release_set(rel, _installer_table()["cutoff"]["time_of_day"])


def _cc(cc: str) -> Tuple[int, int]:
    major, minor = cc.split(".")[:2]
    return int(major), int(minor)


@dataclass(frozen=True)
class _Fit:
    variant: str
    cuda: str
    default: bool
    why: str
    findings: Tuple[Finding, ...] = ()


def _torch_variants(torch_version: str) -> Tuple[Optional[str], Dict[str, List[str]], str]:
    """(default variant, variant -> archs, why unusable) of a torch release in torch_builds.toml."""
    row = knowledge.torch_row(torch_version)
    if row is None:
        return None, {}, f"compat does not know the CUDA builds of torch {torch_version}"
    default = row.get("default_variant")
    variants: Dict[str, List[str]] = row.get("variants", {})
    if not default or default not in variants:
        return None, {}, f"torch_builds.toml has no default variant for torch {torch_version}"
    return default, variants, ""


def variant_refusal(torch_version: str, variant: str, hw: Hardware,
                    vllm: str = "") -> Tuple[Optional[str], Optional[str]]:
    """Why `variant` of the vLLM release's torch pin cannot serve vLLM on `hw` (None: it can), and the driver that
    would fix it. The three rules: (c) the CUDA major of the vLLM wheel (built with the pin's default variant),
    (a) every GPU's arch (same-major rule), (b) the driver's minimum for the variant's CUDA major.
    The planner picks with it; doctor's plan-mismatch check (check.py) judges an installed variant with it."""
    default, variants, problem = _torch_variants(torch_version)
    if default is None:
        return problem, None
    if variant not in variants:
        return f"{variant}: torch_builds.toml lists no {variant} build of torch {torch_version}", None
    wheel_major = int(variant_cuda(default).split(".")[0])
    cuda = variant_cuda(variant)
    major = int(cuda.split(".")[0])
    if major != wheel_major:
        return (f"{variant}: vLLM {vllm + ' ' if vllm else ''}is built for CUDA {wheel_major} ({default}), so its "
                f"kernels would not load with a CUDA {major} torch"), None
    missing = sorted({g.cc for g in hw.gpus if not knowledge.runs_arch(variants[variant], _cc(g.cc))})
    if missing:
        return (f"{variant}: torch {torch_version} {variant} has no kernels for "
                f"sm_{', sm_'.join(m.replace('.', '') for m in missing)}"), None
    need = knowledge.min_driver_for_cuda(cuda)
    if need is None:
        return f"{variant}: cuda.toml has no minimum driver for CUDA {major}", None
    if versions.driver_tuple(hw.driver or "0") < versions.driver_tuple(need):
        return f"{variant}: driver {hw.driver} is older than {need}, the minimum for CUDA {major}.x", need
    return None, None


def _variant_for(rel: Dict[str, Any], hw: Hardware) -> Tuple[Optional[_Fit], str, Optional[str]]:
    """The CUDA variant of the release's torch pin for this machine: (fit, why-not, driver that would fix it)."""
    tv = rel["torch"]
    default, variants, problem = _torch_variants(tv)
    if default is None:
        return None, problem, None
    order = [default] + sorted((v for v in variants if v != default), key=lambda v: versions.parse(variant_cuda(v)),
                               reverse=True)
    why_not: List[str] = []
    driver_fix: Optional[str] = None
    for v in order:
        refusal, need = variant_refusal(tv, v, hw, rel["version"])
        if refusal:
            why_not.append(refusal)
            if need and (driver_fix is None or versions.driver_tuple(need) < versions.driver_tuple(driver_fix)):
                driver_fix = need
            continue
        cuda = variant_cuda(v)
        major = cuda.split(".")[0]
        sms = ", ".join(sorted({f"sm_{g.sm}" for g in hw.gpus}))
        why = (f"{v} ({'the default wheel on the package index' if v == default else 'from the PyTorch ' + v + ' index'})"
               f": carries {sms} (archs {', '.join(variants[v])}); driver {hw.driver} >= "
               f"{knowledge.min_driver_for_cuda(cuda)}, the minimum for CUDA {major}.x (minor-version compatibility)")
        findings: Tuple[Finding, ...] = ()
        if v != default:
            why += f"; the default {default} was refused ({'; '.join(why_not)})"
            findings = (Finding("plan-torch-variant", "info",
                                f"torch {tv} {v} instead of the default {default}: {'; '.join(why_not)}",
                                f"vLLM's kernels are built with {default}; {v} has the same CUDA major, so they load"),)
        return _Fit(v, cuda, v == default, why, findings), "", None
    return None, "; ".join(why_not), driver_fix


def _flash_attn_sm_refusal(table: Dict[str, Any], min_sm: int) -> Optional[str]:
    if min_sm < int(table["min_sm"]):
        return f"flash-attn 2 needs sm{table['min_sm']}+, this GPU is sm{min_sm}"
    return None


def _flash_attn_row_fits(table: Dict[str, Any], row: Dict[str, Any], torch_version: str, cuda: str,
                         python: Optional[str]) -> bool:
    """The release has a prebuilt wheel for this torch minor, CUDA major, C++ ABI (and Python, when given)."""
    t = versions.release(torch_version)
    minor = f"{t.major}.{t.minor}"
    abi = versions.parse(minor) >= versions.parse(table["abi"]["cxx11_from_torch"])
    py_ok = python is None or ".".join(python.split(".")[:2]) in row["python"]
    return minor in row["torch"] and int(cuda.split(".")[0]) in row["cuda"] and abi in row["cxx11_abi"] and py_ok


def flash_attn_refusal(version: str, torch_version: str, cuda: str, min_sm: int) -> Optional[str]:
    """Why an installed flash-attn does not fit the plan's torch (None: it fits); doctor's plan-mismatch check.
    Python is not judged: an installed build already matches its interpreter. A release flash_attn.toml does not
    list is not judged either (checks.py's flash-attn check reads its local version tag)."""
    table = load_data("flash_attn")
    sm = _flash_attn_sm_refusal(table, min_sm)
    if sm:
        return sm
    for row in table.get("release", []):
        if versions.release(row["version"]) == versions.release(version):
            if not _flash_attn_row_fits(table, row, torch_version, cuda, None):
                return f"flash-attn {row['version']} has no build for torch {torch_version} + CUDA {cuda}"
            return None
    return None


def _flash_attn(torch_version: str, cuda: str, python: str, min_sm: int) -> Tuple[Optional[str], str]:
    table = load_data("flash_attn")
    sm = _flash_attn_sm_refusal(table, min_sm)
    if sm:
        return None, f"none: {sm}"
    t = versions.release(torch_version)
    minor = f"{t.major}.{t.minor}"
    py = ".".join(python.split(".")[:2])
    major = int(cuda.split(".")[0])
    abi = versions.parse(minor) >= versions.parse(table["abi"]["cxx11_from_torch"])
    for row in sorted(table.get("release", []), key=lambda r: versions.parse(r["version"]), reverse=True):
        if _flash_attn_row_fits(table, row, torch_version, cuda, py):
            return row["version"], (f"{row['version']}: newest release with a prebuilt wheel for torch {minor}, CUDA "
                                    f"{major}, Python {py}, C++11 ABI {str(abi).upper()} (flash_attn.toml)")
    return None, (f"none: no flash-attn release in flash_attn.toml has a prebuilt wheel for torch {minor} + CUDA {major} "
                  f"+ Python {py} (building from source takes about an hour; vLLM brings its own attention kernels)")


def _hardware_refusal(env: Environment) -> None:
    hw = env.hardware
    if not hw.gpus:
        raise PlanRefused("no NVIDIA GPU found: compat plans CUDA builds of vLLM, which need one",
                          "run on a machine with an NVIDIA GPU (sm70+), or pass --hardware FILE to plan for another "
                          "machine; vLLM on CPU is built from source (vLLM's CPU installation guide)",
                          kind="plan-no-gpu")
    old = sorted({(g.sm, g.name) for g in hw.gpus if g.sm < 70})
    if old:
        raise PlanRefused(f"{old[0][1]} (sm{old[0][0]}) is older than sm70, the oldest GPU vLLM supports",
                          "use a GPU of sm70 (V100) or newer", kind="plan-gpu-too-old")
    if not hw.driver:
        raise PlanRefused("the NVIDIA driver version is unknown", "check `nvidia-smi`, or describe it with --hardware FILE",
                          kind="plan-driver-unknown")
    if hw.cuda:
        for g in hw.gpus:
            row = knowledge.arch_row(g.cc)
            if row and row.get("first_cuda") and versions.parse(hw.cuda) < versions.parse(row["first_cuda"]):
                raise PlanRefused(f"{g.name} (sm_{g.sm}) needs CUDA {row['first_cuda']}, but driver {hw.driver} "
                                  f"supports only CUDA {hw.cuda}: the driver cannot run this GPU",
                                  f"upgrade the NVIDIA driver to one that supports CUDA >= {row['first_cuda']} "
                                  "(`nvidia-smi` shows the CUDA version it supports)", kind="plan-driver-too-old")


def _harvested_kernel(vllm: str, kernel: str) -> Optional[Dict[str, str]]:
    """The harvested [kernels] row of this release (compat/harvested.py, when that reader and a file exist)."""
    import importlib

    try:
        harvested = importlib.import_module("compat.harvested")
        h = harvested.load(vllm)
    except (ImportError, CompatError):
        return None
    k = h.kernels.get(kernel) if h is not None else None
    if k is None:
        return None
    return {"declared": k.declared, "requirement": k.requirement, "extra": k.extra}


def kernel_requirements(vllm: str, backend: Optional[str]) -> Tuple[Tuple[str, ...], str, Optional[Finding]]:
    """The kernel package the picked attention backend needs in this release, pinned as the release declares it
    (kernels.toml; a harvested [kernels] row wins): (requirements to add, why, finding)."""
    if not backend:
        return (), "", None
    table = load_data("kernels")
    key = backend[: -len("_VLLM_V1")] if backend.endswith("_VLLM_V1") else backend
    b = table.get("backend", {}).get(key)
    if b is None:
        return (), "", None
    kernel, dist = b["kernel"], b["dist"]
    row = _harvested_kernel(vllm, kernel)
    where = f"harvested from vLLM {vllm} (compat/data/harvested)"
    if row is None:
        for r in table.get("release", []):
            if versions.in_spec(vllm, r["versions"]) and kernel in r:
                row, where = dict(r[kernel]), f"kernels.toml: {r['source']}"
                break
    if row is None:
        return (), f"{dist} for {backend}: compat does not know how vLLM {vllm} declares it", Finding(
            "plan-kernel-unknown", "warning", f"compat picks {backend} for vLLM {vllm} here but does not know how "
            f"this release declares {dist}", f"install {dist} as vLLM {vllm}'s documentation says")
    declared = row["declared"]
    if declared in ("required", "bundled"):
        return (), f"{dist} for {backend}: vLLM {vllm} installs it itself ({declared}; {where})", None
    if declared == "extra" and row.get("requirement"):
        return ((row["requirement"],), f"{row['requirement']} for {backend}: pinned as vLLM {vllm}'s extra "
                f"[{row.get('extra', '')}] declares it ({where})", None)
    return (), f"none: vLLM {vllm} declares no {dist} ({where})", Finding(
        "plan-kernel-absent", "info", f"vLLM {vllm} prefers {backend} on this GPU but declares no {dist}, so there "
        f"is no release-pinned version to plan; vLLM falls back to another backend when it is not installed",
        f"install {dist} by hand for {backend} (vLLM {vllm}'s documentation names the build)")


def make_plan(env: Environment, request: Optional[str] = None, python: Optional[str] = None,
              environ: Optional[Mapping[str, str]] = None) -> Plan:
    """The plan for `env`'s hardware; raises PlanRefused (a CompatError) when nothing fits."""
    from ..choose import choose_backend
    from ..profiles import select_profile  # local: keeps `import compat.install.planner` light

    req, wanted = requested_releases(request)
    py = python or platform.python_version()
    versions.parse(py, what="Python version")
    _hardware_refusal(env)
    hw = env.hardware
    profile, pfind = select_profile([g.sm for g in hw.gpus], os.environ if environ is None else environ)
    rejected: List[Tuple[str, str]] = []
    driver_fixes: List[str] = []
    min_sm = hw.min_sm or 0
    for rel in wanted:
        v = rel["version"]
        if not versions.in_spec(py, rel["python"]):
            rejected.append((v, f"needs Python {rel['python']}, target is {py}"))
            continue
        if profile.refuse_vllm and versions.in_spec(v, profile.refuse_vllm):
            rejected.append((v, f"profile {profile.name!r} refuses vLLM {profile.refuse_vllm} ({profile.description})"))
            continue
        fit, why_not, fix = _variant_for(rel, hw)
        if fit is None:
            rejected.append((v, f"no CUDA variant of torch {rel['torch']} fits: {why_not}"))
            if fix:
                driver_fixes.append(fix)
            continue
        fa, fa_why = _flash_attn(rel["torch"], fit.cuda, py, min_sm)
        backend, _ = choose_backend(profile, v, hw.min_sm)
        kernels, kernels_why, kernel_finding = kernel_requirements(v, backend.name if backend else None)
        chosen_why = ("requested" if len(wanted) == 1 else
                      f"newest release{'' if str(req.specifier) == '' else ' matching ' + str(req.specifier)} "
                      "in vllm_releases.toml that fits this machine")
        if rejected:
            chosen_why += f" ({len(rejected)} newer skipped: {rejected[0][0]}: {rejected[0][1]})"
        rs = _release_set(rel)
        over = rs.overrides
        resolution = (f"uploads up to {rs.cutoff} (release date {rel['date']} + cutoff rule), so dependencies "
                      "come from vLLM's era" + (f"; overrides {', '.join(over)}" if over else "")
                      + (f"; also installs {', '.join(rs.also_install)} (undeclared, needed on first use)"
                         if rs.also_install else "")
                      + (f": {rel.get('reason', '')}" if over or rs.also_install else ""))
        expl = (("vllm", f"{v} ({rel['date']}): {chosen_why}"),
                ("torch", f"{rel['torch']}: the exact torch vLLM {v} pins ({rel.get('source', 'vllm_releases.toml')})"),
                ("torch_variant", fit.why),
                ("flash_attn", fa_why),
                ("resolution", resolution)) + ((("kernels", kernels_why),) if kernels_why else ())
        return Plan(vllm=v, vllm_date=rel["date"], torch=rel["torch"], torch_variant=fit.variant,
                    torch_default_variant=fit.default, cuda=fit.cuda, flash_attn=fa, cutoff=rs.cutoff,
                    overrides=over, python=py, profile=profile.name, explanations=expl,
                    findings=tuple(pfind) + fit.findings + ((kernel_finding,) if kernel_finding else ()),
                    rejected=tuple(rejected), kernels=kernels,
                    gpus=tuple(sorted({f"{g.name} (sm_{g.sm})" for g in hw.gpus})), also_install=rs.also_install)
    _refuse(req, hw, rejected, driver_fixes)
    raise AssertionError("unreachable")


def _refuse(req: Request, hw: Hardware, rejected: List[Tuple[str, str]], driver_fixes: List[str]) -> None:
    what = f"vLLM {req.specifier}" if str(req.specifier) else "any vLLM release"
    gpu = ", ".join(sorted({f"{g.name} sm_{g.sm}" for g in hw.gpus}))
    first = f"{rejected[0][0]}: {rejected[0][1]}" if rejected else "no release considered"
    if driver_fixes:
        need = min(driver_fixes, key=versions.driver_tuple)
        fix = f"upgrade the driver to >= {need} (driver {hw.driver} is too old for the CUDA builds vLLM ships)"
    elif any("Python" in why for _, why in rejected):
        fix = "use a Python the release supports (--python VERSION / a venv with that Python), or another release"
    else:
        fix = "choose another vLLM release (`python -m compat plan vllm`) or another GPU"
    raise PlanRefused(f"no set of {what} fits {gpu} on driver {hw.driver} ({len(rejected)} release(s) tried; "
                      f"newest: {first})", fix, rejected,
                      kind="plan-driver-too-old" if driver_fixes else "plan-nothing-fits")
