"""The facts compat's hand tables state about one vLLM release, diffed against what the release itself holds
(its harvested file, compat/data/harvested/vllm-X.Y.Z.toml, or a fresh harvest in a matrix env).

Used by tests/test_harvested.py (every committed file, no vLLM needed) and tests/vllm/test_tables_vs_harvest.py
(each matrix env re-harvests its installed release). Each check returns the disagreements as readable lines.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from compat._toml import load_data, load_toml
from compat.choose import attention_range
from compat.harvested import Harvest
from compat.knowledge import backend_requirements

ROOT = Path(__file__).resolve().parents[1]
DISTS = {"flashinfer": ("flashinfer-python", "flashinfer"), "xformers": ("xformers",),
         "flash_attn": ("flash-attn", "vllm-flash-attn")}


def _sm(name: str) -> int:
    """'sm_90a' -> 90."""
    return int(name.split("_", 1)[1].rstrip("af"))


def _release_row(version: str) -> dict:
    for rel in load_toml(ROOT / "compat" / "data" / "vllm_releases.toml")["release"]:
        if rel["version"] == version:
            return rel
    raise KeyError(version)


def torch_pin(h: Harvest) -> List[str]:
    """vllm_releases.toml `torch` is the exact pin in the wheel's Requires-Dist, and the torch that installed."""
    rel = _release_row(h.version)
    out = []
    if h.release.torch_requirement != f"=={rel['torch']}":
        out.append(f"vllm_releases.toml torch = {rel['torch']!r}, wheel metadata says torch{h.release.torch_requirement}")
    if h.release.torch != rel["torch"]:
        out.append(f"vllm_releases.toml torch = {rel['torch']!r}, installed torch is {h.release.torch}")
    return out


def backend_names(h: Harvest) -> List[str]:
    """vllm_attention.toml `names` are the members of the release's backend enum."""
    r = attention_range(h.version)
    if r is None:
        return [f"vllm_attention.toml has no range for {h.version}"]
    if not h.attention:
        return []  # the harvest could not import vLLM: unknown, nothing to compare
    table, real = set(r["names"]), set(h.attention)
    out = []
    if table - real:
        out.append(f"vllm_attention.toml {r['versions']} names {sorted(table - real)} that vLLM {h.version} lacks")
    if real - table:
        out.append(f"vllm_attention.toml {r['versions']} misses {sorted(real - table)} that vLLM {h.version} has")
    return out


def chosen_backends_run(h: Harvest) -> List[str]:
    """Every backend [range.choose] picks exists in the release and imports on its default install; one that
    needs an optional kernel package is listed in [range.requires] (with that package, which the release must
    not install by default) and has a [range.fallback] for the column that does import."""
    r = attention_range(h.version)
    if r is None or not h.attention:
        return []
    out = []
    requires = r.get("requires", {})
    fallback = r.get("fallback", {})
    for column, name in sorted(r.get("choose", {}).items()):
        if not name:
            continue
        b = h.attention.get(name)
        if b is None:
            out.append(f"{r['versions']} choose.{column} = {name!r}: vLLM {h.version} has no such backend")
            continue
        if b.importable:
            continue
        if name not in requires:
            out.append(f"{r['versions']} choose.{column} = {name!r} does not import on a default install of vLLM "
                       f"{h.version} ({b.error}); list its package in [range.requires] and add [range.fallback]")
            continue
        own = fallback.get(column, "")
        if not own or own not in h.attention or not h.attention[own].importable:
            out.append(f"{r['versions']} choose.{column} = {name!r} needs {requires[name]}; fallback.{column} = "
                       f"{own!r} must be a backend that imports on a default install of vLLM {h.version}")
    for name, dists in requires.items():
        for key, names in DISTS.items():
            if set(dists) & set(names):
                k = h.kernels.get(key)
                if k is not None and k.in_default_install:
                    out.append(f"{r['versions']} requires.{name} = {dists}, but vLLM {h.version} installs {key} "
                               f"by default ({k.declared}: {k.requirement or k.note})")
    return out


def _runs_on(archs: List[str], sm: int) -> bool:
    """CUDA's compatibility rule: SASS sm_XY runs on the same major with minor >= Y (an arch-specific sm_XYa only on
    XY itself); PTX compute_XY is JIT-compiled for any sm >= XY."""
    for a in archs:
        n = _sm(a)
        if a.startswith("compute_") and not a.endswith("a") and n <= sm:
            return True
        if a.startswith("sm_") and (n == sm if a.endswith(("a", "f")) else n // 10 == sm // 10 and n <= sm):
            return True
    return False


# The backends whose attention kernels are the release's bundled flash-attn library (vllm/vllm_flash_attn, FA2;
# vLLM 0.6.2+ bundle it, earlier releases use the separate vllm-flash-attn dist, whose archs are not harvested)
FA_BACKENDS = ("FLASH_ATTN", "FLASH_ATTN_VLLM_V1")
FA2_LIBS = ("vllm/vllm_flash_attn/vllm_flash_attn_c.abi3.so", "vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so")


def chosen_backends_have_kernels(h: Harvest) -> List[str]:
    """Every backend [range.choose] (or [range.fallback]) names for a GPU column has kernels for that GPU in the
    release itself, by the harvested facts: its own floor (supports_compute_capability, where the release states
    one), the archs compiled into the bundled flash-attn library for FLASH_ATTN, and float16 among its dtypes below
    sm80 (no bfloat16 there). Expected values come from the release, never from vllm_attention.toml."""
    r = attention_range(h.version)
    if r is None or not h.attention:
        return []
    fa2 = next((list(h.arch.files[lib]) for lib in FA2_LIBS if lib in h.arch.files), None)
    picks = [("choose", c, n) for c, n in r.get("choose", {}).items()]
    picks += [("fallback", c, n) for c, n in r.get("fallback", {}).items()]
    out = []
    for table, column, name in sorted(picks):
        if not name or not column.startswith("sm"):
            continue
        sm, b = int(column[2:]), h.attention.get(name)
        if b is None:
            continue  # chosen_backends_run reports a missing name
        where = f"{r['versions']} {table}.{column} = {name!r}"
        if b.min_capability is not None and b.min_capability > sm:
            out.append(f"{where}: vLLM {h.version}'s {name} needs sm{b.min_capability} (supports_compute_capability)")
        if name in FA_BACKENDS and fa2 is not None and not _runs_on(fa2, sm):
            out.append(f"{where}: vLLM {h.version}'s flash-attn library carries {fa2}, no kernel for sm{sm}")
        if sm < 80 and b.dtypes and "float16" not in b.dtypes:
            out.append(f"{where}: vLLM {h.version}'s {name} runs {list(b.dtypes)}, no float16 (sm{sm} has no bf16)")
    return out


def backend_arch_floors(h: Harvest) -> List[str]:
    """attention_backends.toml min_sm never lets compat accept a GPU the release's backend itself refuses
    (where the release states a floor: supports_compute_capability)."""
    table = backend_requirements(h.version)
    out = []
    for name, b in sorted(h.attention.items()):
        row = table.get(name)
        if row is None or b.min_capability is None or "min_sm" not in row:
            continue
        if row["min_sm"] < b.min_capability:
            out.append(f"attention_backends.toml {name} min_sm = {row['min_sm']}, vLLM {h.version} needs "
                       f"sm{b.min_capability}")
    return out


def torch_archs(h: Harvest) -> List[str]:
    """torch_builds.toml: the default variant of the installed torch is the CUDA it was built with and lists the
    archs its libtorch_cuda.so carries."""
    if not h.release.torch or not h.arch.torch_cuda:
        return []
    for row in load_data("torch_builds").get("torch", []):
        if SpecifierSet(row["versions"]).contains(Version(h.release.torch)):
            break
    else:
        return [f"torch_builds.toml has no entry for torch {h.release.torch}"]
    out = []
    variant = row["default_variant"]
    if h.release.torch_cuda and variant != "cu" + h.release.torch_cuda.replace(".", ""):
        out.append(f"torch_builds.toml {row['versions']} default_variant = {variant!r}, torch {h.release.torch} "
                   f"is built with CUDA {h.release.torch_cuda}")
    table = {a for a in row["variants"].get(variant, [])}
    real = {f"{_sm(a) // 10}.{_sm(a) % 10}" for a in h.arch.torch_cuda}
    if table != real:
        out.append(f"torch_builds.toml {row['versions']} {variant} = {sorted(table)}, torch {h.release.torch}'s "
                   f"libtorch_cuda.so carries {sorted(real)}")
    return out


def blackwell_floor(h: Harvest) -> List[str]:
    """profiles/blackwell.toml refuses exactly the vLLM releases whose own kernels (vllm/_C) have no sm_100 code
    (torch's Blackwell build is a variant choice the planner makes: torch_builds.toml)."""
    refuse = load_toml(ROOT / "profiles" / "blackwell.toml").get("refuse", {}).get("vllm", "")
    if not refuse or not h.arch.vllm_C:
        return []
    refused = SpecifierSet(refuse).contains(Version(h.version))
    has = any(_sm(a) == 100 for a in h.arch.vllm_C)
    if refused and has:
        return [f"blackwell.toml refuses vllm{refuse}, but vLLM {h.version}'s _C carries sm_100"]
    if not refused and not has:
        return [f"blackwell.toml accepts vLLM {h.version}, whose _C has no sm_100 kernels"]
    return []


CHECKS = (torch_pin, backend_names, chosen_backends_run, chosen_backends_have_kernels, backend_arch_floors, torch_archs, blackwell_floor)


def all_problems(h: Harvest) -> List[str]:
    return [line for check in CHECKS for line in check(h)]
