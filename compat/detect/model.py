"""Frozen values describing a machine. Everything compat decides starts from these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from ..findings import Finding


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    compute_capability: Tuple[int, int]
    memory_mib: int = 0
    uuid: str = ""
    mig: bool = False

    @property
    def cc(self) -> str:
        """Compute capability as "8.0", the way NVIDIA and torch arch lists spell it."""
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"

    @property
    def sm(self) -> int:
        """Compute capability as an integer, 80 for sm_80."""
        return self.compute_capability[0] * 10 + self.compute_capability[1]

    def as_dict(self) -> Dict[str, Any]:
        return {"index": self.index, "name": self.name, "compute_capability": self.cc,
                "memory_mib": self.memory_mib, "uuid": self.uuid, "mig": self.mig}


@dataclass(frozen=True)
class Hardware:
    driver: Optional[str] = None         # "535.104.05"
    cuda: Optional[str] = None           # newest CUDA the driver runs, "12.2"
    gpus: Tuple[GPU, ...] = ()
    source: str = "none"                 # nvml | nvidia-smi | proc | file | none
    findings: Tuple[Finding, ...] = ()

    @property
    def min_sm(self) -> Optional[int]:
        return min((g.sm for g in self.gpus), default=None)

    @property
    def heterogeneous(self) -> bool:
        return len({(g.name, g.compute_capability) for g in self.gpus}) > 1

    def as_dict(self) -> Dict[str, Any]:
        return {"driver": self.driver, "cuda": self.cuda, "source": self.source,
                "gpus": [g.as_dict() for g in self.gpus]}


@dataclass(frozen=True)
class Software:
    python: str
    packages: Tuple[Tuple[str, str], ...] = ()   # (normalized distribution name, version), sorted
    torch_cuda: Optional[str] = None             # CUDA the torch build targets, "12.4"; None for CPU builds
    source: str = "metadata"                     # metadata | file

    def version(self, name: str) -> Optional[str]:
        return dict(self.packages).get(_normalize(name))

    @property
    def torch_variant(self) -> Optional[str]:
        """"cu124", "cpu", or None when torch is not installed."""
        if self.version("torch") is None:
            return None
        if not self.torch_cuda:
            return "cpu"
        return "cu" + self.torch_cuda.replace(".", "")

    def as_dict(self) -> Dict[str, Any]:
        return {"python": self.python, "packages": dict(self.packages), "torch_cuda": self.torch_cuda,
                "torch_variant": self.torch_variant, "source": self.source}


@dataclass(frozen=True)
class Environment:
    hardware: Hardware
    software: Software
    findings: Tuple[Finding, ...] = field(default=())
    hardware_file: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        return {"hardware": self.hardware.as_dict(), "software": self.software.as_dict()}


def _normalize(name: str) -> str:
    """PEP 503 normalisation, so "flash_attn" and "Flash-Attn" are one package."""
    out = []
    prev_sep = False
    for ch in name.lower():
        if ch in "-_.":
            if not prev_sep:
                out.append("-")
            prev_sep = True
        else:
            out.append(ch)
            prev_sep = False
    return "".join(out)


def packages_tuple(mapping: Mapping[str, str]) -> Tuple[Tuple[str, str], ...]:
    return tuple(sorted((_normalize(k), str(v)) for k, v in mapping.items()))
