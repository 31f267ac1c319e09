"""What a vLLM release itself says it supports, read from compat/data/harvested/vllm-X.Y.Z.toml.

Read through compat.harvested, the typed reader of the harvest format; a missing table or key is unknown,
and unknown is never read as "supported". Files are parsed lazily, one per release asked for, and cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from .. import harvested, versions
from .._toml import DATA_FILE_MAX_BYTES, read_regular

HARVEST_DIR = harvested.HARVEST_DIR


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


def _adapt(h: harvested.Harvest, file: str) -> ReleaseFacts:
    """compat.harvested's reader (owner: harvest) marks unknown lists as empty; here unknown is None."""
    attn = {name: BackendFacts(importable=a.importable, head_sizes=tuple(a.head_sizes) or None,
                               dtypes=tuple(a.dtypes) or None, min_capability=a.min_capability, mla=a.mla,
                               sliding_window=a.sliding_window)
            for name, a in h.attention.items()}
    quant = {name: QuantFacts(q.min_capability, tuple(q.act_dtypes)) for name, q in h.quantization.items()}
    archs = None if h.architectures is None else frozenset(h.architectures)
    return ReleaseFacts(vllm=h.version, file=file, architectures=archs, quantization=quant, attention=attn)


def releases(directory: Optional[Path] = None) -> List[str]:
    """Versions with a harvested file, oldest first (PEP 440 order)."""
    d = directory or HARVEST_DIR
    return harvested.releases(d) if d.is_dir() else []


def _key(version: str, d: Path) -> Tuple[str, str]:
    return (str(d), str(versions.release(version)))


def load(version: str, directory: Optional[Path] = None) -> Optional[ReleaseFacts]:
    """Facts of this release (local tag ignored: 0.6.1.post1+cu118 is 0.6.1.post1), or None without a file."""
    d = directory or HARVEST_DIR
    key = _key(version, d)
    if key not in _cache:
        want = versions.release(version)
        match = next((v for v in releases(d) if versions.release(v) == want), None)
        h = None if match is None else harvested.load(match, d)
        _cache[key] = None if h is None else _adapt(h, str(d / f"vllm-{match}.toml"))
    return _cache[key]


def _mentions_any(path: Path, names: Sequence[str]) -> bool:
    """Whether the file's text contains one of the names: a cheap read that spares parsing a release's TOML
    when the predicate cannot hold (the harvest writes names as plain TOML strings)."""
    raw = read_regular(path, "harvested vLLM facts", DATA_FILE_MAX_BYTES)
    return any(n.encode() in raw for n in names)


def first_release(predicate: Callable[[ReleaseFacts], bool], directory: Optional[Path] = None,
                  after: Optional[str] = None, mentions: Sequence[str] = ()) -> Optional[str]:
    """The oldest harvested release (newer than `after`, when given) whose facts satisfy predicate(facts).

    `mentions`: names the predicate needs in the facts (an architecture, quantization methods); a release whose
    file contains none of them is skipped unparsed. The search for the first release that knows a new
    architecture otherwise parses every older file (about 10 ms each), the slowest path of `plan --model`."""
    d = directory or HARVEST_DIR
    for v in releases(directory):
        if after is not None and versions.parse(v) <= versions.release(after):
            continue
        if mentions and _key(v, d) not in _cache and not _mentions_any(d / f"vllm-{v}.toml", mentions):
            continue
        f = load(v, directory)
        if f is not None and predicate(f):
            return v
    return None
