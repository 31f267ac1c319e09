"""The knowledge tables under compat/data parse, cite their source and agree with known facts.

No network, no vLLM or torch needed: these are plain TOML files read with tomllib.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

from compat.harvested import load as harvested_load
from compat.harvested import releases as harvested_releases

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "compat" / "data"
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


# Host-name fragments of package registries and package indexes, split so this file names no host itself.
REGISTRY_FRAGMENTS = (
    "py" + "pi",                      # the Python package index and its test instance
    "python" + "hosted",              # its file host
    "npm" + "js",                     # npm
    "ruby" + "gems",
    "crates" + r"\.io",
    "ana" + "conda",                  # conda channels
    "download" + r"\." + "pytorch",   # PyTorch's per-CUDA-variant wheel index
    "wheels" + r"\." + "vllm",        # vLLM's nightly wheel index
)
# a host name (scheme optional, so bare hosts count too) containing one of the fragments
REGISTRY_HOST = re.compile(r"(?:[a-z][a-z0-9+.-]*://)?((?:[a-z0-9-]+\.)*[a-z0-9-]*(?:" + "|".join(REGISTRY_FRAGMENTS)
                           + r")[a-z0-9-]*(?:\.[a-z0-9-]+)+)(?:/[^\s\"'`)<>\]]*)?", re.I)


def allowed_index_url() -> str:
    """The one package-index address compat may carry: PyTorch's CUDA-variant index, installer.toml [torch_index]."""
    return load("installer.toml")["torch_index"]["url"]


def allowed(match: "re.Match") -> bool:
    """Only the [torch_index] url value itself; its `{variant}` placeholder stands for one CUDA variant (cu126)."""
    template, url = allowed_index_url(), match.group(0).rstrip(".,;:")
    instance = re.escape(template).replace(re.escape("{variant}"), r"cu\d+")
    return url == template or re.fullmatch(instance, url) is not None


def tracked_text_files():
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("needs git: not a git checkout, the registry-host scan reads `git ls-files`")
    for rel in filter(None, out.decode().split("\0")):
        path = ROOT / rel
        try:
            raw = path.read_bytes()
        except OSError:  # listed but deleted in the work tree
            continue
        if b"\0" in raw:
            continue  # binary
        try:
            yield rel, raw.decode("utf-8")
        except UnicodeDecodeError:
            continue


def test_registry_pattern_is_not_vacuous():
    host = "files." + "python" + "hosted" + ".org"
    for text in (f"https://{host}/packages/x.whl", f"see {host} for", "https://" + "py" + "pi.org/simple",
                 "registry." + "npm" + "js.org", allowed_index_url().replace("{variant}", "cu124") + "/extra"):
        assert REGISTRY_HOST.search(text), text
    assert allowed(REGISTRY_HOST.search(allowed_index_url()))
    assert allowed(REGISTRY_HOST.search("`" + allowed_index_url().replace("{variant}", "cu126") + "`"))
    assert not allowed(REGISTRY_HOST.search(allowed_index_url().replace("{variant}", "nightly/cu126")))
    for text in ("pip install vllm", "PyPI package torch", "compat.detect.software", "pytorch.org docs"):
        assert not REGISTRY_HOST.search(text), text


def test_the_exempted_value_is_the_variant_index_template():
    url = allowed_index_url()
    assert "{variant}" in url and REGISTRY_HOST.fullmatch(url), url  # the key read is really the index address


def test_no_registry_host_names_in_tracked_files():
    """House rule: install by package name, never by registry address; the one exception is the [torch_index] url."""
    hits = []
    for rel, text in tracked_text_files():
        for m in REGISTRY_HOST.finditer(text):
            if not allowed(m):
                line = text.count("\n", 0, m.start()) + 1
                hits.append(f"{rel}:{line}: {m.group(0)}")
    assert not hits, "package-registry host names outside installer.toml [torch_index] url:\n" + "\n".join(hits)


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


# What each vLLM release itself picks per GPU arch, written out from that release's source (read in its installed
# wheel: the matrix envs / the uv cache, 2026-12-01), never copied from vllm_attention.toml: (release, column,
# expected, where the release says so). tests/harvest_tables.py adds the harvested constraints for every release.
CUDA_072 = "vllm/platforms/cuda.py get_attn_backend_cls"
V0_ON_VOLTA = ("vllm/engine/arg_utils.py _is_v1_supported_oracle: 'Compute Capability < 8.0' falls back to V0; V0 "
               "vllm/platforms/cuda.py get_attn_backend_cls: not has_device_capability(80) -> XFORMERS ('Cannot use "
               "FlashAttention-2 backend for Volta and Turing GPUs')")
PRIORITY_033 = ("vllm/platforms/cuda.py _get_backend_priorities (non-MLA): major 10 -> [FLASHINFER, FLASH_ATTN, "
                "TRITON_ATTN, FLEX_ATTENTION, TURBOQUANT], else [FLASH_ATTN, FLASHINFER, TRITON_ATTN, ...]; the first "
                "whose supports_compute_capability holds: flash_attn.py >= 8.0, flashinfer.py >= 8.0 and <= 12.1, "
                "triton_attn.py any")
KNOWN_CHOICES = [
    ("0.5.4", "sm70", "XFORMERS", "vllm/attention/selector.py which_attn_to_use: device capability major < 8 -> "
     "XFORMERS ('Cannot use FlashAttention-2 backend for Volta and Turing GPUs')"),
    ("0.5.4", "cpu", "TORCH_SDPA", "vllm/attention/selector.py which_attn_to_use: is_cpu() -> TORCH_SDPA"),
    ("0.7.2", "sm75", "XFORMERS", CUDA_072 + ": not has_device_capability(80) -> XFORMERS (Volta and Turing)"),
    ("0.7.2", "sm90", "FLASH_ATTN", CUDA_072 + ": target_backend = FLASH_ATTN from capability 8.0 (fp16/bf16)"),
    ("0.8.5", "sm70", "XFORMERS", V0_ON_VOLTA),
    ("0.8.5", "sm80", "FLASH_ATTN", "vllm/platforms/cuda.py get_attn_backend_cls, use_v1: has_device_capability(80) "
     "-> v1 FlashAttentionBackend; FLASH_ATTN is in arg_utils.py V1_BACKENDS"),
    ("0.10.1.1", "sm70", "XFORMERS", V0_ON_VOLTA),
    ("0.10.2", "sm70", "FLEX_ATTENTION", "vllm/engine/arg_utils.py has no 'Compute Capability < 8.0' V0 fallback any "
     "more; vllm/platforms/cuda.py V1 defaults: 'FlexAttention is the default for older GPUs'"),
    ("0.10.2", "sm100", "FLASHINFER", "vllm/platforms/cuda.py V1 defaults: 'Prefer FlashInfer for Blackwell GPUs if "
     "installed' on is_device_capability(100)"),
    ("0.11.0", "sm75", "FLEX_ATTENTION", "vllm/platforms/cuda.py (V0 removed): 'FlexAttention is the default for "
     "older GPUs'"),
    ("0.11.0", "sm120", "FLASH_ATTN", "vllm/platforms/cuda.py: FlashInfer is preferred on is_device_capability(100) "
     "only; 'FlashAttention is the default for SM 8.0+ GPUs'"),
    ("0.11.0", "cpu", "TORCH_SDPA", "vllm/platforms/cpu.py get_attn_backend_cls -> v1 cpu_attn.TorchSDPABackend"),
    ("0.33.0", "sm70", "TRITON_ATTN", PRIORITY_033),
    ("0.33.0", "sm75", "TRITON_ATTN", PRIORITY_033 + " (FlashInfer's floor raised to SM80: broken on Turing)"),
    ("0.33.0", "sm90", "FLASH_ATTN", PRIORITY_033),
    ("0.33.0", "sm100", "FLASHINFER", PRIORITY_033),
    ("0.33.0", "sm120", "FLASH_ATTN", PRIORITY_033),
    ("0.33.0", "cpu", "CPU_ATTN", "vllm/platforms/cpu.py get_attn_backend_cls -> AttentionBackendEnum.CPU_ATTN"),
]


@pytest.mark.parametrize("version, arch, expected, source", KNOWN_CHOICES,
                         ids=[f"{v}-{a}" for v, a, _, _ in KNOWN_CHOICES])
def test_vllm_known_choices(version, arch, expected, source):
    assert source.strip()
    assert range_for(version)["choose"][arch] == expected, f"vLLM {version} on {arch}: {source}"


# The same selection rules per era, for every harvested release and every column up to sm90 (Blackwell: below):
# (first release of the era, sm<80 pick, sm80-sm90 pick, cpu pick). Sources as in KNOWN_CHOICES: V0 and the V0
# fallback of 0.8.0-0.10.1.1 pick XFORMERS below sm80; 0.10.2 drops the fallback (FlexAttention is V1's default
# for older GPUs); 0.11.1+ use the priority list (TRITON_ATTN the first that runs below sm80) and CPU_ATTN.
ERAS = [("0.5.4", "XFORMERS", "FLASH_ATTN", "TORCH_SDPA"), ("0.10.2", "FLEX_ATTENTION", "FLASH_ATTN", "TORCH_SDPA"),
        ("0.11.1", "TRITON_ATTN", "FLASH_ATTN", "CPU_ATTN")]


@pytest.mark.parametrize("version", harvested_releases())
def test_every_harvested_release_picks_what_its_era_selects(version):
    _, old, new, cpu = [e for e in ERAS if Version(version) >= Version(e[0])][-1]
    choose = range_for(version)["choose"]
    want = {"sm70": old, "sm75": old, "sm80": new, "sm86": new, "sm89": new, "sm90": new, "cpu": cpu}
    assert {k: choose[k] for k in want} == want, version


# Where a release gets no backend at all: its pinned torch has no kernels for the arch. Written out, not from
# compat's tables: torch 2.4-2.6 were published for CUDA <= 12.6 only (PyTorch RELEASE.md release matrix; CUDA 12.8,
# the first with sm_100/sm_120, came with torch 2.7), so no variant of them runs on Blackwell.
TORCH_WITHOUT_BLACKWELL = SpecifierSet("<2.7")


@pytest.mark.parametrize("version", harvested_releases())
def test_no_backend_exactly_where_the_pinned_torch_has_no_kernels(version):
    """The harvested release's torch pin decides the Blackwell columns: "" exactly where that torch has no
    Blackwell build, and then the default wheel's libtorch_cuda.so (harvested) indeed has no sm_10x/sm_12x code."""
    h = harvested_load(version)
    choose = range_for(version)["choose"]
    no_blackwell = Version(h.release.torch) in TORCH_WITHOUT_BLACKWELL
    for column in ("sm100", "sm120"):
        assert (choose[column] == "") == no_blackwell, (version, h.release.torch, column, choose[column])
    if no_blackwell:
        assert not [a for a in h.arch.torch_cuda if a.startswith(("sm_10", "sm_12"))] and not h.arch.torch_cuda_ptx
    for column in ARCH_KEYS:
        if column not in ("sm100", "sm120"):
            assert choose[column], f"{version} {column}: the pinned torch {h.release.torch} runs there"


# What each release around the VLLM_ATTENTION_BACKEND -> attention_backend move does, written out from that
# release's wheel (pip download --no-deps vllm==X, read with unzip -p; no env, no harvest field carries it):
# (release, env_var_status, config_option, what the wheel's sources show). Both sides of every boundary are here.
ENV_AND_OPTION_FROM_WHEELS = [
    ("0.11.1", "read", "",
     "vllm/attention/selector.py:126 'backend_by_env_var: str | None = envs.VLLM_ATTENTION_BACKEND'; "
     "vllm/engine/arg_utils.py has no attention_backend field, vllm/config/attention.py does not exist"),
    ("0.11.2", "read", "",
     "vllm/attention/selector.py:126 'backend_by_env_var: str | None = envs.VLLM_ATTENTION_BACKEND'; "
     "vllm/engine/arg_utils.py has no attention_backend field, vllm/config/attention.py does not exist"),
    ("0.12.0", "read", "",
     "vllm/attention/selector.py:136 'backend_by_env_var: str | None = envs.VLLM_ATTENTION_BACKEND' (no deprecation, "
     "only a '_VLLM_V1' suffix warning); vllm/engine/arg_utils.py has only mm_encoder_attn_backend"),
    ("0.13.0", "deprecated", "attention_backend",
     "vllm/config/attention.py:93 AttentionConfig.__post_init__ "
     "'self._set_from_env_if_set(\"backend\", \"VLLM_ATTENTION_BACKEND\")', which warns 'Using %s environment "
     "variable is deprecated and will be removed in v0.14.0 or v1.0.0'; the selector no longer reads it; "
     "vllm/engine/arg_utils.py:546 'attention_backend: AttentionBackendEnum | None = AttentionConfig.backend', "
     ":727 '--attention-backend'"),
    ("0.14.0", "deprecated", "attention_backend",
     "vllm/config/attention.py:93 same _set_from_env_if_set(\"backend\", \"VLLM_ATTENTION_BACKEND\") and warning; "
     "vllm/engine/arg_utils.py:556 'attention_backend: AttentionBackendEnum | None = AttentionConfig.backend'"),
    ("0.14.1", "deprecated", "attention_backend",
     "vllm/config/attention.py identical to 0.14.0 (line 93 reads the variable with the warning); "
     "vllm/engine/arg_utils.py:556 attention_backend"),
    ("0.15.0", "removed", "attention_backend",
     "no .py file in the wheel names VLLM_ATTENTION_BACKEND (envs.py and config/attention.py dropped it); "
     "vllm/engine/arg_utils.py:554 'attention_backend: AttentionBackendEnum | None = AttentionConfig.backend'"),
    ("0.15.1", "removed", "attention_backend",
     "no .py file in the wheel names VLLM_ATTENTION_BACKEND; vllm/engine/arg_utils.py:554 attention_backend"),
    ("0.16.0", "removed", "attention_backend",
     "no .py file in the wheel names VLLM_ATTENTION_BACKEND; vllm/engine/arg_utils.py:561 attention_backend, "
     ":760 '--attention-backend'"),
]


@pytest.mark.parametrize("version, status, option, seen", ENV_AND_OPTION_FROM_WHEELS,
                         ids=[row[0] for row in ENV_AND_OPTION_FROM_WHEELS])
def test_vllm_env_and_option_match_the_wheels(version, status, option, seen):
    """The table's env_var_status and config_option agree with what the release's own sources do (see `seen`)."""
    row = range_for(version)
    assert (row["env_var"], row["env_var_status"], row["config_option"]) == (
        "VLLM_ATTENTION_BACKEND", status, option), seen


def test_vllm_known_env_and_option_history():
    # written out from the releases' sources (installed wheels): vllm/envs.py (VLLM_USE_V1 default "0" in 0.7.3,
    # "1" in 0.8.2; VLLM_ATTENTION_BACKEND read in 0.10.2, read nowhere in 0.33.0), vllm/engine/arg_utils.py
    # (V1_BACKENDS: 0.8.2 lacks XFORMERS and FLASHINFER, 0.8.5 adds FLASHINFER; EngineArgs.attention_backend in 0.33.0,
    # absent in 0.10.2)
    assert range_for("0.10.2")["env_var_status"] == "read"
    assert range_for("0.33.0")["env_var_status"] == "removed"
    assert range_for("0.10.2")["config_option"] == ""
    assert range_for("0.33.0")["config_option"] == "attention_backend"
    assert {"XFORMERS", "FLASHINFER"} <= set(range_for("0.8.2")["v0_fallback_backends"])
    assert "FLASHINFER" not in range_for("0.8.5")["v0_fallback_backends"]
    assert "XFORMERS" in range_for("0.8.5")["v0_fallback_backends"]
    assert range_for("0.7.3")["default_engine"] == "v0"
    assert range_for("0.8.2")["default_engine"] == "v1"
    # backend names: tests/harvest_tables.py backend_names diffs `names` with every harvested enum


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


# ---------------------------------------------------------------- vllm_extras.toml

def test_vllm_extras_entries_cite_a_source():
    doc = load("vllm_extras.toml")
    assert doc.get("schema") == 1
    for key in ("verl", "fp8"):
        assert (doc[key].get("source") or doc[key].get("reason") or "").strip(), f"[{key}] lacks source/reason"
    Version(doc["verl"]["cuda_graph_min_vllm"])
    ranges = doc["fp8"]["scale_suffix"]
    assert ranges
    for entry in ranges:
        assert entry["source"].strip() and entry["linear"] in ("_scale", "_scale_inv") and entry["moe"]
        SpecifierSet(entry["versions"])
    for v in ("0.10.0", "0.10.1.1", "0.10.2", "0.11.0", "0.12.0"):  # ranges do not overlap
        assert sum(SpecifierSet(e["versions"]).contains(v) for e in ranges) <= 1, v


# Written out from the releases, not from vllm_extras.toml: vllm 0.10.2 vllm/model_executor/layers/quantization/
# fp8.py registers the linear block scale as `weight_scale_inv`; 0.11.0 renames it `weight_scale` after
# post-processing; both keep `w13_weight_scale_inv` on MoE. Checked in each real release by
# tests/vllm/test_vllm_fp8.py (test_scale_names_follow_the_release, test_load_weights_quantizes_what_the_model_holds).
@pytest.mark.parametrize("version, linear", [
    ("0.10.0", "_scale_inv"), ("0.10.1.1", "_scale_inv"), ("0.10.2", "_scale_inv"), ("0.11.0", "_scale"),
    ("0.11.0+cu128", "_scale"), ("0.11.1", "_scale"), ("0.9.2", "_scale_inv"),
])
def test_fp8_loader_reads_the_scale_suffix_from_the_table(version, linear):
    from compat.fp8.loading import default_suffixes

    assert default_suffixes(version) == (linear, "_scale_inv")


def test_fp8_loader_default_follows_the_installed_release(monkeypatch):
    from compat.detect import software
    from compat.fp8.loading import default_suffixes

    monkeypatch.setattr(software, "installed_version", lambda name, paths=None: "0.11.0" if name == "vllm" else None)
    assert default_suffixes() == ("_scale", "_scale_inv")
    monkeypatch.setattr(software, "installed_version", lambda name, paths=None: None)
    assert default_suffixes() == ("_scale_inv", "_scale_inv")  # vLLM not installed: the table's default


def test_verl_cuda_graph_threshold_is_verls_documented_release():
    from compat.integrations import verl

    # Written out from outside compat: verl's docs/README_vllm0.7.md (volcengine/verl v0.2.x) "Readme for
    # verl(vllm>=0.7) version": CUDA graph in rollout (enforce_eager=False, free_cache_engine=False) for vLLM >= 0.7
    assert verl.cuda_graph_min_vllm() == "0.7.0"


# ---------------------------------------------------------------- tools/matrix.py ordering of vllm_releases.toml

def _matrix():
    from helpers import load_tools_matrix

    return load_tools_matrix("compat_tools_matrix_vkey")


def test_matrix_vkey_orders_like_pep440_with_and_without_packaging(monkeypatch):
    import builtins

    versions = ["0.10.1", "0.6.1.post1", "0.11.0rc1", "0.6.1", "0.10.1.1", "0.11.0", "0.6.1.1", "0.7.3.dev57",
                "0.6.2"]
    expected = sorted(versions, key=Version)
    matrix = _matrix()
    assert sorted(versions, key=matrix._vkey) == expected
    real_import = builtins.__import__

    def no_packaging(name, *args, **kwargs):
        if name == "packaging" or name.startswith("packaging."):
            raise ImportError("no packaging here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_packaging)
    plain = [v for v in versions if "rc" not in v and "dev" not in v]
    assert sorted(plain, key=matrix._vkey) == sorted(plain, key=Version)  # stdlib fallback, same order
    with pytest.raises(ValueError, match="0.11.0rc1.*packaging"):
        matrix._vkey("0.11.0rc1")
    with pytest.raises(ValueError, match="not a version"):
        matrix._vkey("seven")


# ---------------------------------------------------------------- verl.toml: flash_attn.bert_padding at import

def test_verl_padding_set_covers_exactly_the_releases_that_import_bert_padding():
    """The verl_padding patch set's range is the data: the releases whose modules import flash_attn.bert_padding at
    module import on CUDA (read from each wheel, bert_padding_source); the others must stay outside it."""
    from compat.hf.bert_padding import PATTERNS
    from compat.patches.sets import get

    spec = SpecifierSet(get("verl_padding").versions)
    for rel in load("verl.toml")["release"]:
        v = rel["version"]
        assert rel["bert_padding_source"].startswith(f"verl {v} wheel"), v
        assert spec.contains(v) == rel["bert_padding_at_import"], v
        if rel["bert_padding_at_import"]:
            assert {"pad_input", "unpad_input"} <= set(rel["bert_padding_names"]), v
            assert set(rel["bert_padding_rearrange"]) <= set(PATTERNS), v
        else:
            assert rel["bert_padding_names"] == [] and rel["bert_padding_rearrange"] == [], v
