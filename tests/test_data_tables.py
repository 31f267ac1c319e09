"""The knowledge tables under compat/data parse, cite their source and agree with known facts.

No network, no vLLM or torch needed: these are plain TOML files read with tomllib.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

DATA = Path(__file__).resolve().parent.parent / "compat" / "data"
TABLES = {
    "vllm_attention.toml": ("range",),
    "torch_builds.toml": ("torch",),
    "cuda.toml": ("cuda", "arch"),
}
ARCH_KEYS = ("sm70", "sm75", "sm80", "sm86", "sm89", "sm90", "sm100", "sm120", "cpu")
FIRST_VLLM = Version("0.5.4")
# Newest release read from a real wheel when the table was written; raise it with each new range.
LATEST_VLLM = Version("0.33.0")


def load(name: str) -> dict:
    with open(DATA / name, "rb") as f:
        return tomllib.load(f)


def entries(name: str):
    doc = load(name)
    for key in TABLES[name]:
        for entry in doc.get(key, []):
            yield key, entry


@pytest.mark.parametrize("name", sorted(TABLES))
def test_table_parses_with_schema_1(name):
    doc = load(name)
    assert doc.get("schema") == 1
    for key in TABLES[name]:
        assert doc.get(key), f"{name} has no [[{key}]] entries"


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_entry_has_source_or_reason(name):
    for key, entry in entries(name):
        text = entry.get("source") or entry.get("reason")
        assert isinstance(text, str) and text.strip(), f"{name} [[{key}]] {entry} lacks source/reason"


def test_no_registry_host_names_in_tables():
    for name in TABLES:
        text = (DATA / name).read_text().lower()
        for host in ("pypi.org", "files.pythonhosted", "download.pytorch.org"):
            assert host not in text, f"{name} mentions {host}"


# ---------------------------------------------------------------- vllm_attention.toml

def vllm_ranges():
    return load("vllm_attention.toml")["range"]


def range_for(version: str) -> dict:
    hits = [r for r in vllm_ranges() if SpecifierSet(r["versions"]).contains(version, prereleases=True)]
    assert len(hits) == 1, f"{version} matches {len(hits)} ranges"
    return hits[0]


def bounds(spec: str) -> tuple[Version, Version]:
    lo = hi = None
    for s in SpecifierSet(spec):
        if s.operator == ">=":
            lo = Version(s.version)
        elif s.operator == "<":
            hi = Version(s.version)
    assert lo is not None and hi is not None, f"{spec!r} must be '>=A,<B'"
    return lo, hi


def test_vllm_ranges_are_contiguous_and_cover_first_to_latest():
    spans = sorted(bounds(r["versions"]) for r in vllm_ranges())
    assert spans[0][0] == FIRST_VLLM
    for (lo1, hi1), (lo2, _) in zip(spans, spans[1:]):
        assert hi1 == lo2, f"gap or overlap between <{hi1} and >={lo2}"
    for lo, hi in spans:
        assert lo < hi
    assert spans[-1][1] > LATEST_VLLM


def test_vllm_range_fields():
    for r in vllm_ranges():
        assert r["env_var_status"] in ("read", "deprecated", "removed")
        assert r["default_engine"] in ("v0", "v1")
        assert isinstance(r["config_option"], str)
        assert r["names"] and len(set(r["names"])) == len(r["names"])
        assert set(r["v0_fallback_backends"]) <= set(r["names"])
        choose = r["choose"]
        assert set(ARCH_KEYS) <= set(choose)
        for arch in ARCH_KEYS:
            pick = choose[arch]
            assert pick == "" or pick in r["names"], f"{r['versions']} {arch}={pick} not a valid name"
        if r["default_engine"] == "v1" and r["env_var_status"] != "removed":
            # compat must never pick a backend that silently drops the engine to V0 on Ampere+
            for arch in ("sm80", "sm86", "sm89", "sm90", "sm100", "sm120"):
                assert choose[arch] not in r["v0_fallback_backends"]


@pytest.mark.parametrize(
    "version, arch, expected",
    [
        ("0.5.4", "sm70", "XFORMERS"),
        ("0.6.6.post1", "sm75", "XFORMERS"),
        ("0.8.5", "sm80", "FLASH_ATTN"),
        ("0.10.1.1", "sm70", "XFORMERS"),
        ("0.10.2", "sm70", "FLEX_ATTENTION"),
        ("0.11.0", "sm70", "FLEX_ATTENTION"),
        ("0.11.0", "sm75", "FLEX_ATTENTION"),
        ("0.12.0", "sm70", "TRITON_ATTN"),
        ("0.33.0", "sm75", "TRITON_ATTN"),
        ("0.9.1", "sm100", "FLASHINFER"),
        ("0.8.5", "sm100", ""),
        ("0.11.0", "cpu", "TORCH_SDPA"),
        ("0.11.1", "cpu", "CPU_ATTN"),
    ],
)
def test_vllm_known_choices(version, arch, expected):
    assert range_for(version)["choose"][arch] == expected


def test_vllm_known_env_and_option_history():
    assert range_for("0.12.0")["env_var_status"] == "read"
    assert range_for("0.13.0")["env_var_status"] == "deprecated"
    assert range_for("0.14.1")["env_var_status"] == "deprecated"
    assert range_for("0.15.0")["env_var_status"] == "removed"
    assert range_for("0.12.0")["config_option"] == ""
    assert range_for("0.13.0")["config_option"] == "attention_backend"
    for v in ("0.8.0", "0.8.4"):
        assert set(range_for(v)["v0_fallback_backends"]) == {"XFORMERS", "FLASHINFER"}
    assert range_for("0.8.5")["v0_fallback_backends"] == ["XFORMERS"]
    assert range_for("0.7.3")["default_engine"] == "v0"
    assert range_for("0.8.0")["default_engine"] == "v1"
    assert "FLASH_ATTN_VLLM_V1" in range_for("0.10.2")["names"]
    assert "FLASH_ATTN_VLLM_V1" not in range_for("0.11.0")["names"]
    assert "XFORMERS" not in range_for("0.12.0")["names"]
    assert "TRITON_ATTN_VLLM_V1" in range_for("0.10.2")["names"]
    assert "TRITON_ATTN" in range_for("0.11.0")["names"]


# ---------------------------------------------------------------- torch_builds.toml

def torch_for(version: str) -> dict:
    hits = [t for t in load("torch_builds.toml")["torch"] if SpecifierSet(t["versions"]).contains(version)]
    assert len(hits) == 1, f"torch {version} matches {len(hits)} entries"
    return hits[0]


def test_torch_entries_well_formed():
    spans = []
    for t in load("torch_builds.toml")["torch"]:
        spans.append(bounds(t["versions"]))
        assert t["default_variant"] in t["variants"], t["versions"]
        for variant, archs in t["variants"].items():
            assert variant.startswith("cu")
            assert archs == sorted(archs, key=Version), f"{t['versions']} {variant} not sorted"
            for a in archs:
                Version(a)
    spans.sort()
    for (lo1, hi1), (lo2, _) in zip(spans, spans[1:]):
        assert hi1 <= lo2, "torch entries overlap"


@pytest.mark.parametrize(
    "version, default",
    [("2.4.0", "cu121"), ("2.5.1", "cu124"), ("2.6.0", "cu124"), ("2.7.1", "cu126"),
     ("2.8.0", "cu128"), ("2.9.1", "cu128"), ("2.10.0", "cu128"), ("2.11.0", "cu130")],
)
def test_torch_default_variants(version, default):
    assert torch_for(version)["default_variant"] == default


def test_torch_known_archs():
    assert "7.0" in torch_for("2.8.0")["variants"]["cu128"]
    assert "12.0" in torch_for("2.8.0")["variants"]["cu128"]
    assert "7.0" not in torch_for("2.11.0")["variants"]["cu130"]
    assert "10.0" not in torch_for("2.6.0")["variants"]["cu124"]


# ---------------------------------------------------------------- cuda.toml

def test_cuda_drivers_and_arches():
    doc = load("cuda.toml")
    majors = {c["major"]: c["min_driver"] for c in doc["cuda"]}
    assert majors[11] == "450.80.02"
    assert majors[12] == "525.60.13"
    assert majors[13].startswith("580.")
    for drv in majors.values():
        Version(drv)
    arches = {a["sm"]: a for a in doc["arch"]}
    for sm in ("7.0", "7.5", "8.0", "8.6", "8.7", "8.9", "9.0", "10.0", "12.0"):
        assert sm in arches
        Version(arches[sm]["first_cuda"])
    assert arches["7.0"]["last_cuda_major"] == 12
    assert arches["10.0"]["first_cuda"] == "12.8"
