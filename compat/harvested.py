"""Typed reader for the facts harvested from real vLLM releases (compat/data/harvested/vllm-X.Y.Z.toml).

The files are written by tools/harvest.py inside each release's env (format: docs/harvest.md). A fact the
harvest could not read is missing here (None / empty), and callers must treat it as unknown, never as supported.
Parsed lazily, once per version per process; never touched by `import compat` or `compat.setup()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ._toml import DATA_DIR, load_toml

HARVEST_DIR = DATA_DIR / "harvested"
DECLARED = ("required", "extra", "bundled", "absent")


@dataclass(frozen=True)
class Release:
    vllm: str
    python: str = ""
    torch: str = ""
    torch_cuda: str = ""
    torch_requirement: str = ""
    transformers_requirement: str = ""
    import_error: str = ""          # `import vllm` failed in the harvest env: models/quantization/attention unknown


@dataclass(frozen=True)
class Kernel:
    name: str                       # flashinfer | xformers | flash_attn
    declared: str                   # required | extra | bundled | absent
    requirement: str = ""
    extra: str = ""
    installed: str = ""             # version the release's default install brought (harvest env), "" if none
    note: str = ""

    @property
    def in_default_install(self) -> bool:
        """Whether a plain `pip install vllm==X` brings this kernel package (or the wheel bundles it)."""
        return self.declared in ("required", "bundled")


@dataclass(frozen=True)
class Quantization:
    name: str
    min_capability: Optional[int] = None     # major*10+minor; None = unknown
    act_dtypes: Tuple[str, ...] = ()         # empty = unknown


@dataclass(frozen=True)
class AttentionBackend:
    name: str
    importable: bool
    error: str = ""
    class_path: str = ""
    head_sizes: Tuple[int, ...] = ()         # empty = unknown
    dtypes: Tuple[str, ...] = ()             # empty = unknown
    min_capability: Optional[int] = None     # None = unknown
    mla: Optional[bool] = None
    sliding_window: Optional[bool] = None


@dataclass(frozen=True)
class Arch:
    vllm_C: Tuple[str, ...] = ()             # SASS archs in vllm/_C*.so ("sm_80" ...)
    vllm_all: Tuple[str, ...] = ()           # union over every .so in the vllm wheel
    torch_cuda: Tuple[str, ...] = ()         # SASS archs in torch's libtorch_cuda*.so
    torch_cuda_ptx: Tuple[str, ...] = ()     # PTX ("compute_90") in libtorch_cuda*.so
    files: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)  # wheel-relative .so -> its SASS + PTX archs


@dataclass(frozen=True)
class Harvest:
    release: Release
    kernels: Mapping[str, Kernel] = field(default_factory=dict)
    architectures: Optional[Tuple[str, ...]] = None     # None = unknown (import failed)
    quantization: Mapping[str, Quantization] = field(default_factory=dict)
    attention: Mapping[str, AttentionBackend] = field(default_factory=dict)
    arch: Arch = field(default_factory=Arch)

    @property
    def version(self) -> str:
        return self.release.vllm


def _vkey(version: str) -> Any:
    from packaging.version import Version

    return Version(version)


def releases(directory: Optional[Path] = None) -> List[str]:
    """Versions with a harvested file, PEP 440 order."""
    d = directory or HARVEST_DIR
    names = [p.name[len("vllm-"):-len(".toml")] for p in d.glob("vllm-*.toml")]
    return sorted(names, key=_vkey)


def _tup(value: Any) -> Tuple[Any, ...]:
    return tuple(value) if isinstance(value, list) else ()


def _opt_int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_bool(value: Any) -> Optional[bool]:
    return value if isinstance(value, bool) else None


def parse(data: Mapping[str, Any]) -> Harvest:
    """A Harvest from a parsed file (tolerates every optional table being absent)."""
    rel = data.get("release", {})
    release = Release(vllm=str(rel.get("vllm", "")), python=str(rel.get("python", "")), torch=str(rel.get("torch", "")),
                      torch_cuda=str(rel.get("torch_cuda", "")),
                      torch_requirement=str(rel.get("torch_requirement", "")),
                      transformers_requirement=str(rel.get("transformers_requirement", "")),
                      import_error=str(rel.get("import_error", "")))
    kernels = {name: Kernel(name=name, declared=str(k.get("declared", "absent")),
                            requirement=str(k.get("requirement", "")), extra=str(k.get("extra", "")),
                            installed=str(k.get("installed", "")), note=str(k.get("note", "")))
               for name, k in data.get("kernels", {}).items() if isinstance(k, dict)}
    models = data.get("models")
    archs = _tup(models.get("architectures")) if isinstance(models, dict) else None
    quant = {name: Quantization(name=name, min_capability=_opt_int(q.get("min_capability")),
                                act_dtypes=_tup(q.get("act_dtypes")))
             for name, q in data.get("quantization", {}).items() if isinstance(q, dict)}
    attn = {name: AttentionBackend(name=name, importable=a.get("importable") is True, error=str(a.get("error", "")),
                                   class_path=str(a.get("class", "")), head_sizes=_tup(a.get("head_sizes")),
                                   dtypes=_tup(a.get("dtypes")), min_capability=_opt_int(a.get("min_capability")),
                                   mla=_opt_bool(a.get("mla")), sliding_window=_opt_bool(a.get("sliding_window")))
            for name, a in data.get("attention", {}).items() if isinstance(a, dict)}
    ar = data.get("arch", {})
    arch = Arch(vllm_C=_tup(ar.get("vllm_C")), vllm_all=_tup(ar.get("vllm_all")), torch_cuda=_tup(ar.get("torch_cuda")),
                torch_cuda_ptx=_tup(ar.get("torch_cuda_ptx")),
                files={str(k): _tup(v) for k, v in (ar.get("files") or {}).items()})
    return Harvest(release=release, kernels=kernels, architectures=archs, quantization=quant, attention=attn,
                   arch=arch)


_cache: Dict[Tuple[str, str], Optional[Harvest]] = {}


def load(version: str, directory: Optional[Path] = None) -> Optional[Harvest]:
    """The harvest of vLLM `version` (exact string, e.g. '0.10.1.1'), or None when that release has no file."""
    d = directory or HARVEST_DIR
    key = (str(d), version)
    if key not in _cache:
        path = d / f"vllm-{version}.toml"
        _cache[key] = parse(load_toml(path, what="harvested vLLM facts")) if path.exists() else None
    return _cache[key]


def skipped(directory: Optional[Path] = None) -> Dict[str, str]:
    """Release -> why tools/harvest_walk.py could not harvest it (compat/data/harvested/skipped.toml)."""
    path = (directory or HARVEST_DIR) / "skipped.toml"
    if not path.exists():
        return {}
    return {str(e["version"]): str(e.get("reason", "")) for e in load_toml(path).get("skip", [])}
