"""Unit tests (no torch, no transformers needed) for what the transformers sets rely on: per-patch release ranges
and submodule watching in the engine, the hf_dtype switch in setup(), the verdict and doctor's findings."""

from __future__ import annotations

import json
import sys
import uuid

import pytest

from compat import _setup
from compat.hf import checks as hfchecks
from compat.hf import verdict as hfverdict
from compat.patches import engine
from compat.patches.engine import Patch, PatchSet, fingerprint_source
from helpers import FIXTURES, run_python, with_packages

OLD = "def f_old(x):\n    return x\n"
NEW = "def f_new(x):\n    return x\n"


@pytest.fixture
def toy(tmp_path, monkeypatch):
    made = []

    def make(version):
        name = "hftoy_" + uuid.uuid4().hex[:10]
        site = tmp_path / name
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text("")
        (site / name / "modeling.py").write_text(NEW)
        dist = site / f"{name}-{version}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        monkeypatch.syspath_prepend(str(site))
        made.append(name)
        return name

    yield make
    engine.revert()
    for name in made:
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]


def _two_era_set(pkg):
    def wrap(original):
        return lambda x: ("patched", original(x))

    return PatchSet(name="toy_eras", package=pkg, versions=">=1.0,<3", watch=f"{pkg}.modeling", patches=(
        Patch(id="toy_eras.old", target=f"{pkg}.modeling:f_old", why="t", upstream_fix="none", versions="<1.4",
              fingerprint=fingerprint_source(OLD), make=wrap),
        Patch(id="toy_eras.new", target=f"{pkg}.modeling:f_new", why="t", upstream_fix="none", versions=">=1.4",
              fingerprint=fingerprint_source(NEW), make=wrap),
    ))


def test_a_patch_outside_its_own_range_is_skipped_and_the_set_waits_for_the_watched_submodule(toy):
    pkg = toy("1.5.0")
    ps = _two_era_set(pkg)
    engine.activate({}, sets=[ps])
    __import__(pkg)  # the package alone does not trigger the set
    assert engine.applied_sets() == ()
    mod = __import__(f"{pkg}.modeling", fromlist=["x"])
    assert engine.applied_sets() == ("toy_eras",)
    assert mod.f_new(1) == ("patched", 1)
    rows = {s.id: (s.status, s.versions) for s in engine.status(sets=[ps])}
    assert rows == {"toy_eras.old": ("not-applicable", "<1.4"), "toy_eras.new": ("applied", ">=1.4")}
    engine.revert()
    assert mod.f_new(1) == 1


def test_a_patch_range_must_be_a_specifier():
    with pytest.raises(Exception):
        Patch(id="x.y", target="a.b:c", why="", upstream_fix="", versions="not a spec",
              fingerprint="sha256:" + "0" * 16, make=lambda o: o)


@pytest.mark.parametrize("kwargs,environ,want", [
    ({}, {}, {}),
    ({"hf_dtype": False}, {}, {"hf_dtype": False}),
    ({"hf_dtype": True}, {}, {"hf_dtype": True}),
    ({}, {"COMPAT_HF_DTYPE": "0"}, {"hf_dtype": False}),
    ({}, {"COMPAT_HF_DTYPE": "off"}, {"hf_dtype": False}),
    ({}, {"COMPAT_HF_DTYPE": "1"}, {"hf_dtype": True}),
    ({"hf_dtype": "no"}, {"COMPAT_HF_DTYPE": "1"}, {"hf_dtype": False}),
])
def test_hf_dtype_switch_values(kwargs, environ, want):
    from compat.switches import Switches  # the one reader of every knob (issue 14)

    assert Switches.parse(environ, **kwargs).opt_ins() == want


@pytest.mark.parametrize("fixture,on", [("v100-sxm2", True), ("t4-driver470", True), ("a100-sxm4", False),
                                        ("h100-sxm", False), ("rtx4090-old-driver", False)])
def test_hf_dtype_defaults_to_the_profiles_bfloat16_refusal(tmp_path, fixture, on):
    hw = with_packages(tmp_path, fixture, transformers="4.51.1", torch="2.6.0")
    rep = _setup.build_report(str(hw), environ={})
    assert dict(rep.switches).get("hf_dtype", False) is on
    v = hfverdict.from_report(rep)
    assert (v.refuse_bf16, v.hf_dtype, v.flash_attn, v.attn) == (on, on, False, "sdpa")
    assert v.why  # flash-attn is not installed in the fixture's package table / below sm80


def test_verdict_where_flash_attn_fits(tmp_path):
    hw = with_packages(tmp_path, "h100-sxm", transformers="4.51.1", torch="2.6.0", flash_attn="2.7.4.post1")
    v = hfverdict.from_report(_setup.build_report(str(hw), environ={}))
    assert (v.flash_attn, v.attn, v.why, v.hf_dtype) == (True, "flash_attention_2", "", False)


def test_verdict_reasons(tmp_path):
    def why(fixture, **pk):
        d = tmp_path / uuid.uuid4().hex[:8]  # one file per machine: detection is cached per file
        d.mkdir()
        hw = with_packages(d, fixture, transformers="4.51.1", torch="2.6.0", **pk)
        return hfverdict.from_report(_setup.build_report(str(hw), environ={})).why

    assert "sm70" in why("v100-sxm2", flash_attn="2.7.4.post1")
    assert why("a100-sxm4") == "flash-attn is not installed"
    assert "built for torch 2.5" in why("a100-sxm4", flash_attn="2.7.4.post1+cu12torch2.5cxx11abiFALSE")


def _ids(fixture, tmp_path, **pk):
    d = tmp_path / uuid.uuid4().hex[:8]  # one file per machine: detection is cached per file
    d.mkdir()
    hw = with_packages(d, fixture, **pk)
    return {f.id: f for f in _setup.build_report(str(hw), environ={}).findings}


def test_doctor_says_what_the_sets_do(tmp_path):
    v100 = _ids("v100-sxm2", tmp_path, transformers="4.51.1", torch="2.6.0")
    assert v100["hf-flash-attention-2-served"].severity == "info"
    assert "sdpa" in v100["hf-flash-attention-2-served"].message
    assert "loss scaling" in v100["hf-bfloat16-loaded-as-float16"].message
    a100 = _ids("a100-sxm4", tmp_path, transformers="4.57.1", torch="2.8.0")
    assert "hf-flash-attention-2-served" in a100 and "hf-bfloat16-loaded-as-float16" not in a100
    fits = _ids("h100-sxm", tmp_path, transformers="4.57.1", torch="2.8.0", flash_attn="2.8.3")
    assert not any(i.startswith("hf-") for i in fits)
    none = _ids("v100-sxm2", tmp_path, torch="2.6.0")
    assert not any(i.startswith("hf-") for i in none)


def test_doctor_warns_when_the_set_is_switched_off_or_does_not_cover_the_release(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPAT_DISABLE_PATCHES", "transformers_attn")
    monkeypatch.setenv("COMPAT_HF_DTYPE", "0")
    off = _ids("v100-sxm2", tmp_path, transformers="4.51.1", torch="2.6.0")
    assert off["hf-flash-attention-2-fails"].severity == "warning"
    assert "COMPAT_DISABLE_PATCHES" in off["hf-flash-attention-2-fails"].fix
    assert "hf-bfloat16-loaded-as-float16" not in off
    monkeypatch.delenv("COMPAT_DISABLE_PATCHES")
    old = _ids("v100-sxm2", tmp_path, transformers="4.40.0", torch="2.3.0")
    assert "does not cover transformers 4.40.0" in old["hf-flash-attention-2-fails"].message


def test_setup_exports_an_explicit_hf_dtype_for_workers(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPAT_HARDWARE", str(FIXTURES / "v100-sxm2.toml"))
    import os

    _setup.setup(hf_dtype=False, patches=False)
    assert os.environ.get("COMPAT_HF_DTYPE") == "0"
    _setup.revert()
    assert "COMPAT_HF_DTYPE" not in os.environ


def test_setup_imports_neither_torch_nor_transformers():
    code = ("import sys, json, compat; compat.setup(hardware=%r); "
            "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules)))"
            % str(FIXTURES / "v100-sxm2.toml"))
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_checks_are_registered_for_doctor():
    from compat.report.checks import CHECKS

    assert hfchecks.hf_loading in CHECKS
