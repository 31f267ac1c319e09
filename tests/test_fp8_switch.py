"""The fp8 switch: opt-in, refused (and the vllm_fp8 patch set kept off) below sm89, engine kwargs when on.

Fast: no torch, no vLLM (simulated machines; the patch engine is driven with the vLLM version the fixture names).
"""

from __future__ import annotations

import os

import compat
from compat import _setup
from compat.patches import engine
from compat.patches.sets import vllm_fp8
from helpers import FIXTURES

A100 = str(FIXTURES / "a100-sxm4.toml")
H100 = str(FIXTURES / "h100-vllm0110.toml")


def _fp8_rows(rep):
    return [p for p in rep.patches if p.patch_set == "vllm_fp8"]


def test_fp8_refused_on_sm80_and_the_patch_set_stays_off(monkeypatch):
    monkeypatch.setenv("COMPAT_FP8", "block")  # what spawned workers would inherit
    rep = _setup.build_report(hardware=A100, fp8="block", patches=True, switches={"fp8": "block"},
                              vllm_version="0.11.0")
    assert any(f.id == "fp8-unsupported" and f.severity == "error" for f in rep.findings)
    assert rep.resolved.fp8 is False
    assert dict(rep.switches)["fp8"] is False
    assert engine._config is not None and engine._config.switches["fp8"] is False
    assert not engine.switch_on(vllm_fp8.PATCH_SET, engine._config.switches)  # env COMPAT_FP8 does not win
    rows = _fp8_rows(rep)
    assert rows and {r.status for r in rows} == {"disabled"}
    assert "vllm_fp8" not in engine.applied_sets()


def test_setup_does_not_export_a_refused_switch():
    rep = compat.setup(hardware=A100, fp8="block", patches=False)
    assert not rep.resolved.fp8
    assert "COMPAT_FP8" not in os.environ  # spawned workers must not turn it on either
    assert "quantization" not in compat.vllm_kwargs()


def test_fp8_on_h100_activates_the_set_for_010_and_011():
    for version in ("0.10.0", "0.10.1.1", "0.10.2", "0.11.0"):
        rep = _setup.build_report(hardware=H100, fp8="block", patches=True, switches={"fp8": "block"},
                                  vllm_version=version)
        assert rep.resolved.fp8 is True
        assert engine.switch_on(vllm_fp8.PATCH_SET, engine._config.switches)
        assert {r.status for r in _fp8_rows(rep)} == {"applies"}, version
        compat.revert()
    rep = _setup.build_report(hardware=H100, fp8="block", switches={"fp8": "block"}, vllm_version="0.9.2")
    assert {r.status for r in _fp8_rows(rep)} == {"not-applicable"}


def test_fp8_is_opt_in():
    rep = _setup.build_report(hardware=H100, vllm_version="0.11.0")
    assert rep.resolved.fp8 is True  # the GPU could, but nobody asked
    assert {r.status for r in _fp8_rows(rep)} == {"disabled"}


def test_vllm_kwargs_serve_bf16_in_block_fp8(monkeypatch):
    compat.setup(hardware=H100, fp8="block", patches=False)
    kw = compat.vllm_kwargs()
    assert kw["quantization"] == "fp8"
    assert kw["hf_overrides"] == {"quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic",
                                                          "weight_block_size": [128, 128], "fmt": "e4m3"}}
    assert compat.vllm_kwargs(quantization=None)["quantization"] is None  # the caller's override wins
    compat.revert()
    assert "COMPAT_FP8" not in os.environ  # setup() exported it for workers; revert() took it back
    compat.setup(hardware=H100, patches=False)
    assert "quantization" not in compat.vllm_kwargs()


def test_the_set_module_imports_nothing_heavy():
    assert vllm_fp8.PATCH_SET.switch == "fp8"
    src = open(vllm_fp8.__file__).read().split('"""', 2)[2]
    top = [line for line in src.splitlines() if line.startswith(("import ", "from "))]
    assert all("torch" not in line and "vllm" not in line for line in top), top
