"""What a vLLM release itself says it supports, read from compat/data/harvested/vllm-X.Y.Z.toml.

The format is the contract in docs (harvest-schema): a missing table or key is unknown, and unknown is
never read as "supported". Files are parsed lazily, one per release asked for, and cached per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Tuple

from .. import versions
from .._toml import DATA_DIR, DATA_FILE_MAX_BYTES, load_toml

HARVEST_DIR = DATA_DIR / "harvested"


@dataclass(frozen=True)
class QuantFacts:
    min_capability: Optional[int] = None          # major*10+minor; None = the release does not say
    act_dtypes: Tuple[str, ...] = ()              # () = unknown


@dataclass(frozen=True)
class BackendFacts:
    importable: Optional[bool] = None
    head_sizes: Optional[Tuple[int, ...]] = None
    dtypes: Optional[Tuple[str, ...]] = None
    min_capability: Optional[int] = None
    mla: Optional[bool] = None
    sliding_window: Optional[bool] = None


@dataclass(frozen=True)
class ReleaseFacts:
    vllm: str
    file: str
    architectures: Optional[FrozenSet[str]]       # None: the file has no [models] table
    quantization: Mapping[str, QuantFacts]
    attention: Mapping[str, BackendFacts]


_cache: Dict[Tuple[str, str], Optional[ReleaseFacts]] = {}


def _opt_int(v: Any) -> Optional[int]:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _opt_bool(v: Any) -> Optional[bool]:
    return v if isinstance(v, bool) else None


def _strs(v: Any) -> Optional[Tuple[str, ...]]:
    return tuple(str(x) for x in v) if isinstance(v, list) else None


def parse(data: Mapping[str, Any], file: str) -> ReleaseFacts:
    rel = data.get("release", {})
    models = data.get("models", {})
    archs = models.get("architectures") if isinstance(models, dict) else None
    quant = {name: QuantFacts(_opt_int(t.get("min_capability")), _strs(t.get("act_dtypes")) or ())
             for name, t in (data.get("quantization") or {}).items() if isinstance(t, dict)}
    attn = {}
    for name, t in (data.get("attention") or {}).items():
        if not isinstance(t, dict):
            continue
        hs = t.get("head_sizes")
        attn[name] = BackendFacts(
            importable=_opt_bool(t.get("importable")),
            head_sizes=tuple(int(x) for x in hs) if isinstance(hs, list) else None,
            dtypes=_strs(t.get("dtypes")), min_capability=_opt_int(t.get("min_capability")),
            mla=_opt_bool(t.get("mla")), sliding_window=_opt_bool(t.get("sliding_window")))
    return ReleaseFacts(vllm=str(rel.get("vllm", "")), file=file,
                        architectures=frozenset(str(a) for a in archs) if isinstance(archs, list) else None,
                        quantization=quant, attention=attn)


def _file_version(p: Path) -> str:
    return p.name[len("vllm-"):-len(".toml")]


def releases(directory: Optional[Path] = None) -> List[str]:
    """Versions with a harvested file, oldest first (PEP 440 order)."""
    d = directory or HARVEST_DIR
    if not d.is_dir():
        return []
    found = [_file_version(p) for p in d.glob("vllm-*.toml")]
    return sorted(found, key=versions.parse)


def load(version: str, directory: Optional[Path] = None) -> Optional[ReleaseFacts]:
    """Facts of this release (local tag ignored), or None when no file was harvested for it."""
    d = directory or HARVEST_DIR
    key = (str(d), str(versions.release(version)))
    if key not in _cache:
        want = versions.release(version)
        match = next((v for v in releases(d) if versions.release(v) == want), None)
        path = d / f"vllm-{match}.toml"
        _cache[key] = None if match is None else parse(
            load_toml(path, what="harvested release facts", limit=DATA_FILE_MAX_BYTES), str(path))
    return _cache[key]


def first_release(predicate: Any, directory: Optional[Path] = None,
                  after: Optional[str] = None) -> Optional[str]:
    """The oldest harvested release (newer than `after`, when given) whose facts satisfy predicate(facts)."""
    for v in releases(directory):
        if after is not None and versions.parse(v) <= versions.release(after):
            continue
        f = load(v, directory)
        if f is not None and predicate(f):
            return v
    return None
