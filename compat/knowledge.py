"""Lookups in the knowledge tables of compat/data (each entry there carries its source)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, cast

from . import versions
from ._toml import DATA_DIR, load_data


def _table(name: str) -> Dict[str, Any]:
    return load_data(name) if (DATA_DIR / f"{name}.toml").exists() else {}


def min_driver_for_cuda(cuda: str) -> Optional[str]:
    """Minimum driver that runs CUDA `cuda` (major.minor) under minor-version compatibility."""
    major = int(cuda.split(".")[0])
    for row in _table("cuda").get("cuda", []):
        if int(row["major"]) == major:
            return str(row["min_driver"])
    return None


def arch_row(cc: str) -> Optional[Dict[str, Any]]:
    return cast(Optional[Dict[str, Any]], next((a for a in _table("cuda").get("arch", []) if a["sm"] == cc), None))


def torch_row(torch_version: str) -> Optional[Dict[str, Any]]:
    for row in _table("torch_builds").get("torch", []):
        if versions.in_spec(torch_version, row["versions"]):
            return cast(Dict[str, Any], row)
    return None


def torch_archs(torch_version: str, variant: str) -> Optional[List[str]]:
    """CUDA archs ("8.0") a torch build carries, or None when the table does not know the build."""
    row = torch_row(torch_version)
    if row is None:
        return None
    return cast(Optional[List[str]], row.get("variants", {}).get(variant))


def runs_arch(archs: List[str], cc: Tuple[int, int]) -> bool:
    """A cubin for sm_XY runs on the same major with minor >= Y (sm_80 code runs on sm_86)."""
    for a in archs:
        major, minor = (int(x) for x in a.split(".")[:2])
        if major == cc[0] and minor <= cc[1]:
            return True
    return False


def vllm_release(version: str) -> Optional[Dict[str, Any]]:
    rel = str(versions.release(version))
    for row in _table("vllm_releases").get("release", []):
        if str(versions.release(row["version"])) == rel:
            return cast(Dict[str, Any], row)
    return None


def backend_requirements(vllm_version: Optional[str] = None) -> Dict[str, Any]:
    """attention_backends.toml rows; with a vLLM version, `min_sm` is the one that release states (a row's
    `since` entries raise the floor from a release on, e.g. FLASHINFER needs sm80 from vLLM 0.24.0)."""
    rows = cast(Dict[str, Any], _table("attention_backends").get("backend", {}))
    if vllm_version is None:
        return rows
    out: Dict[str, Any] = {}
    for name, row in rows.items():
        for later in row.get("since", []):
            if versions.in_spec(vllm_version, later["vllm"]):
                row = {**row, "min_sm": later["min_sm"]}
        out[name] = row
    return out


def transformers_imports_flash_attn_eagerly(transformers_version: str) -> bool:
    """Whether this transformers imports flash_attn in modeling_flash_attention_utils' body (flash_attn.toml
    [transformers_import]); later releases import it only to use it."""
    below = _table("flash_attn")["transformers_import"]["eager_below"]
    return versions.parse(transformers_version) < versions.parse(below)


def flash_attn_problems(fa_version: str, torch_version: Optional[str], min_sm: Optional[int]) -> List[Tuple[str, str]]:
    """Why an installed flash-attn cannot serve this machine, as (finding id, message); empty when it fits.

    One rule for the profile's attn_implementation choice and for doctor's check.
    """
    out: List[Tuple[str, str]] = []
    need = _table("flash_attn").get("min_sm", 80)
    if min_sm is not None and min_sm < need:
        out.append(("flash-attn-unsupported-gpu", f"flash-attn {fa_version} is installed but needs sm{need}+; "
                                                  f"this GPU is sm{min_sm}"))
    bw = _table("flash_attn").get("blackwell", {})
    if min_sm is not None and bw and min_sm >= bw["sm_min"] and \
            versions.parse(fa_version).release < versions.parse(bw["min_version"]).release:
        out.append(("flash-attn-unsupported-gpu", f"flash-attn {fa_version} wheels carry no sm_100/sm_120 "
                                                     f"kernels (built with CUDA < 12.8); this GPU is sm{min_sm}: "
                                                     f"use flash-attn >= {bw['min_version']}"))
    local = versions.parse(fa_version).local or ""
    if "torch" in local and torch_version:
        built = local.split("torch")[1].split("cxx")[0]
        have = ".".join(str(x) for x in versions.release(torch_version).release[:2])
        if built and built != have:
            out.append(("flash-attn-torch-mismatch", f"flash-attn {fa_version} was built for torch {built}, "
                                                     f"but torch {torch_version} is installed"))
    return out
