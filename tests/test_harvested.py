"""The harvested release facts (compat/data/harvested/*.toml): the typed reader, the fatbin parser of the
harvester, every committed file against compat's hand tables, and the FLASHINFER choice rule they back."""
from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from typing import Any, List

import pytest

import compat
import harvest_tables as T
from compat import harvested
from compat.harvested import parse
from helpers import FIXTURES

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"compat_tools_{name}", ROOT / "tools" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------------------------- reader
def test_reader_tolerates_missing_tables_and_reads_unknown_as_unknown() -> None:
    h = parse({"release": {"vllm": "0.1.0", "import_error": "ImportError: x"}})
    assert h.version == "0.1.0" and h.release.import_error
    assert h.architectures is None and not h.quantization and not h.attention and h.arch.vllm_C == ()
    q = parse({"release": {"vllm": "1"}, "quantization": {"awq": {"act_dtypes": ["float16"]}}}).quantization["awq"]
    assert q.min_capability is None and q.act_dtypes == ("float16",)
    b = parse({"release": {"vllm": "1"}, "attention": {"X": {"importable": False, "error": "no"}}}).attention["X"]
    assert not b.importable and b.mla is None and b.min_capability is None


def test_load_and_releases(tmp_path: Path) -> None:
    for v in ("0.10.0", "0.9.2", "0.10.1.1"):
        (tmp_path / f"vllm-{v}.toml").write_text(f'[release]\nvllm = "{v}"\n[kernels]\n'
                                                 'flashinfer = { declared = "extra", extra = "flashinfer" }\n')
    assert harvested.releases(tmp_path) == ["0.9.2", "0.10.0", "0.10.1.1"]
    h = harvested.load("0.9.2", tmp_path)
    assert h is not None and h.kernels["flashinfer"].declared == "extra"
    assert not h.kernels["flashinfer"].in_default_install
    assert harvested.load("0.0.1", tmp_path) is None


def test_setup_never_reads_the_harvest() -> None:
    import subprocess
    import sys

    code = ("import sys, compat; compat.setup(patches=False)\n"
            "print('compat.harvested' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr


# ----------------------------------------------------------------------------------------------- fatbin parser
def _fatbin(entries: List[tuple]) -> bytes:
    """One fatbin container: 16-byte header, then (kind, arch, flags, payload) entries with 64-byte headers."""
    body = b""
    for kind, arch, flags, payload in entries:
        head = struct.pack("<HHIQIIHHIIIQ", kind, 0x101, 64, len(payload), 0, 0, 0, 0, arch, 0, 0, flags)
        body += head + b"\0" * (64 - len(head)) + payload
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body


def _elf(sections: dict) -> bytes:
    """A minimal ELF64 little-endian file with the given named sections and a section-name string table."""
    names = b"\0" + b"".join(n + b"\0" for n in sections) + b".shstrtab\0"
    blobs, offset, data = [], 64, b""
    for name, blob in sections.items():
        blobs.append((names.index(name + b"\0"), 64 + len(data), len(blob)))
        data += blob
    blobs.append((names.index(b".shstrtab\0"), 64 + len(data), len(names)))
    data += names
    shoff = 64 + len(data)
    header = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9 + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, shoff, 0,
                                                                    64, 0, 0, 64, len(blobs) + 1, len(blobs))
    shdrs = b"\0" * 64
    for name_off, off, size in blobs:
        shdrs += struct.pack("<IIQQQQIIQQ", name_off, 1, 0, 0, off, size, 0, 0, 1, 0)
    del offset
    return header + data + shdrs


def test_fatbin_parser_reads_sass_ptx_and_arch_specific_targets(tmp_path: Path) -> None:
    H = _tool("harvest")
    fat = _fatbin([(2, 80, 0x2011, b"x" * 10), (2, 90, 0x102011, b"y" * 7), (1, 90, 0x2011, b"ptx")])
    fat2 = _fatbin([(2, 80, 0x2011, b"z")])
    so = tmp_path / "lib.so"
    so.write_bytes(_elf({b".text": b"\x90" * 33, b".nv_fatbin": fat + b"\0" * 8 + fat2}))
    got = H.fatbin_archs(so)
    assert got == {"sass": {"sm_80": 2, "sm_90a": 1}, "ptx": {"compute_90": 1}, "fatbins": 2}
    plain = tmp_path / "plain.so"
    plain.write_bytes(_elf({b".text": b"\x90"}))
    assert H.fatbin_archs(plain) == {"sass": {}, "ptx": {}, "fatbins": 0}


def test_toml_writer_round_trips() -> None:
    import tomllib

    H = _tool("harvest")
    doc = {"release": {"vllm": "1.0", "import_error": 'x "quoted"\\ path'}, "kernels": {"xformers": {
        "declared": "required", "requirement": "xformers==0.0.32"}}, "models": {"architectures": ["A"] * 30},
        "attention": {"FLASH_ATTN": {"importable": True, "head_sizes": [64, 128]}},
        "arch": {"vllm_C": ["sm_80"], "files": {"vllm/_C.abi3.so": ["sm_80"]}}}
    back = tomllib.loads(H.to_toml(doc))
    assert back["release"] == doc["release"] and back["attention"] == doc["attention"]
    assert back["arch"]["files"] == {"vllm/_C.abi3.so": ["sm_80"]} and len(back["models"]["architectures"]) == 30


# ----------------------------------------------------------------------------------------------- committed files
RELEASES = harvested.releases()


def test_every_matrix_release_has_a_harvested_file() -> None:
    M = _tool("matrix")
    missing = [v for v in M.matrix_envs().values() if v not in RELEASES]
    assert not missing, f"no compat/data/harvested file for matrix releases {missing}: run tox -e harvest"


def test_harvested_files_are_releases_of_the_table() -> None:
    M = _tool("matrix")
    known = {r["version"] for r in M.releases()}
    assert set(RELEASES) <= known
    assert set(harvested.skipped()) <= known
    for v in RELEASES:
        assert harvested.load(v).version == v  # the file is what its name says


@pytest.mark.parametrize("version", RELEASES)
def test_hand_tables_agree_with_harvested_release(version: str) -> None:
    problems = T.all_problems(harvested.load(version))
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------------------------- FLASHINFER rule
def _b200(tmp_path: Path, vllm: str, extra: str = "") -> str:
    fx = tmp_path / f"b200-{vllm}-{abs(hash(extra))}.toml"
    fx.write_text((FIXTURES / "b200.toml").read_text() + f'\n[packages]\nvllm = "{vllm}"\n{extra}')
    return str(fx)


@pytest.mark.parametrize("vllm", ["0.9.1", "0.10.1.1", "0.11.0"])
def test_b200_without_flashinfer_exports_no_backend(tmp_path: Path, vllm: str) -> None:
    """flashinfer is no dependency of these releases: exporting FLASHINFER makes a plain install fail at engine
    start. compat leaves the choice to vLLM (FLASH_ATTN there) and says so."""
    rep = compat.setup(hardware=_b200(tmp_path, vllm), patches=False)
    b = rep.resolved.attention_backend
    assert b is not None and b.name == "FLASH_ATTN" and not b.env_var and not b.option
    assert "VLLM_ATTENTION_BACKEND" not in dict(rep.env_set)
    f = {x.id: x for x in rep.resolved.findings}["attention-backend-not-installed"]
    assert "flashinfer-python" in f.message and f.severity == "warning" and "flashinfer" in f.fix


def test_b200_with_flashinfer_installed_exports_it(tmp_path: Path) -> None:
    rep = compat.setup(hardware=_b200(tmp_path, "0.11.0", 'flashinfer-python = "0.3.1"\n'), patches=False)
    b = rep.resolved.attention_backend
    assert b is not None and (b.name, b.env_var) == ("FLASHINFER", "VLLM_ATTENTION_BACKEND")
    assert dict(rep.env_set)["VLLM_ATTENTION_BACKEND"] == "FLASHINFER"
    assert "attention-backend-not-installed" not in {x.id for x in rep.resolved.findings}


# ----------------------------------------------------------------------------------------------- flash-attn on Blackwell
@pytest.mark.parametrize("fa,ok", [("2.7.4.post1", False), ("2.8.0.post2", True), ("2.8.3", True)])
def test_flash_attn_wheels_without_blackwell_kernels_are_refused_on_sm100(fa: str, ok: bool) -> None:
    """2.7.4 wheels are built with CUDA 12.4: no sm_100/sm_120 kernels, so no flash_attention_2 on a B200."""
    from compat.knowledge import flash_attn_problems

    assert (not flash_attn_problems(fa, "2.7.1", 100)) is ok
    assert not flash_attn_problems(fa, "2.7.1", 90)  # Hopper is fine either way


def test_b200_with_old_flash_attn_keeps_sdpa(tmp_path: Path) -> None:
    fx = _b200(tmp_path, "0.9.2", 'torch = "2.7.0"\nflash-attn = "2.7.4.post1"\n')
    rep = compat.setup(hardware=fx, patches=False)
    assert rep.resolved.hf_attn_implementation == "sdpa"
    fx = _b200(tmp_path, "0.9.2", 'torch = "2.7.0"\nflash-attn = "2.8.0.post2"\n')
    assert compat.setup(hardware=fx, patches=False).resolved.hf_attn_implementation == "flash_attention_2"


def test_backend_floor_follows_the_release() -> None:
    """vLLM 0.24.0 raised FlashInfer's floor to sm80 (found by diffing attention_backends.toml to the harvest;
    first seen at 0.33.0, placed at 0.24.0 once 0.23.0 / 0.24.0 had files): the table's floor equals the one
    each harvested release states, wherever the release states one."""
    from compat.knowledge import backend_requirements

    assert backend_requirements("0.23.0")["FLASHINFER"]["min_sm"] == 75
    assert backend_requirements("0.24.0")["FLASHINFER"]["min_sm"] == 80
    stated = 0
    for v in harvested.releases():
        h = harvested.load(v)
        b = h.attention.get("FLASHINFER") if h else None
        if b is not None and b.min_capability is not None:
            stated += 1
            assert backend_requirements(v)["FLASHINFER"]["min_sm"] == b.min_capability, v
    assert stated >= 20  # 0.9.x .. 0.33.0 state it (supports_compute_capability)


def test_walk_downloads_each_private_torch_once() -> None:
    """tools/harvest_walk.py's order: matrix releases, then releases on a matrix torch, then one contiguous run
    per other torch (the private cache is wiped at each torch switch: a torch seen twice is downloaded twice)."""
    W, M = _tool("harvest_walk"), _tool("matrix")
    table = M.load_table()
    order = W.walk_order(M.releases(table), table)
    matrix = set(M.matrix_envs(table).values())
    matrix_torch = {M.release(v, table)["torch"] for v in matrix}
    assert [r["version"] for r in order[:len(matrix)]] == sorted(matrix, key=M._vkey)
    runs = [r["torch"] for r in order if r["torch"] not in matrix_torch]
    groups = [t for i, t in enumerate(runs) if i == 0 or runs[i - 1] != t]
    assert len(groups) == len(set(groups)) and groups == sorted(groups, key=M._vkey)
