"""Kernel packages a profile relies on are planned with it (issue 15.5): flashinfer where compat picks FLASHINFER
(B200, sm100), pinned exactly as that vLLM release's metadata declares it (compat/data/kernels.toml, read from the
real wheels' METADATA; a harvested [kernels] row wins when compat/data/harvested has the release)."""

from __future__ import annotations

from pathlib import Path

import pytest

from compat import versions
from compat._toml import load_data, load_toml
from compat.detect import detect
from compat.install import planner
from helpers import FIXTURES

B200 = FIXTURES / "b200.toml"
HARVESTED = sorted((Path(planner.__file__).parents[1] / "data" / "harvested").glob("vllm-*.toml"))


def _plan(fixture: Path, version: str):
    return planner.make_plan(detect(str(fixture)), f"vllm=={version}", python="3.11", environ={})


@pytest.mark.parametrize("version, pin", [("0.10.1.1", "flashinfer-python==0.2.11"), ("0.10.2", "flashinfer-python==0.3.0"),
                                          ("0.11.0", "flashinfer-python==0.3.1")])
def test_b200_plans_flashinfer_pinned_as_the_release_extra_declares(version, pin):
    p = _plan(B200, version)
    assert p.kernels == (pin,) and pin in p.requirements()
    assert all(pin in " ".join(p.commands(i)) for i in planner.INSTALLERS)
    assert pin in p.constraints() and p.as_dict()["kernels"] == [pin]


def test_release_that_requires_flashinfer_itself_gets_nothing_added():
    p = _plan(B200, "0.11.1")
    assert p.kernels == () and "installs it itself" in dict(p.explanations)["kernels"]


def test_release_that_declares_no_flashinfer_says_so():
    p = _plan(B200, "0.9.1")
    assert p.kernels == () and [f.id for f in p.findings if f.id.startswith("plan-kernel")] == ["plan-kernel-absent"]


@pytest.mark.parametrize("fixture", ["h100-sxm.toml", "a100-sxm4.toml", "v100-sxm2.toml"])
def test_no_kernel_package_where_compat_picks_another_backend(fixture):
    assert _plan(FIXTURES / fixture, "0.10.2").kernels == ()


def test_every_release_where_compat_may_pick_flashinfer_has_a_declared_row():
    for rel in load_data("vllm_releases")["release"]:
        kernels, why, finding = planner.kernel_requirements(rel["version"], "FLASHINFER")
        assert finding is None or finding.id != "plan-kernel-unknown" or versions.parse(rel["version"]) < versions.parse(
            "0.9.1"), (rel["version"], why)


def test_rows_cite_their_source_and_do_not_overlap():
    rows = load_data("kernels")["release"]
    assert all(r["source"].strip() for r in rows) and all(b["source"].strip() for b in load_data("kernels")["backend"].values())
    for rel in load_data("vllm_releases")["release"]:
        assert sum(versions.in_spec(rel["version"], r["versions"]) for r in rows) <= 1, rel["version"]


def test_table_agrees_with_the_harvest():
    """Where a release was harvested from its real install (compat/data/harvested, helper `harvest`), the table's
    row says the same; checks nothing until harvested files exist."""
    for path in HARVESTED:
        h = load_toml(path).get("kernels", {}).get("flashinfer")
        version = path.stem.split("-", 1)[1]
        row = next((r["flashinfer"] for r in load_data("kernels")["release"]
                    if versions.in_spec(version, r["versions"])), None)
        if h is None or row is None:
            continue
        assert row["declared"] == h["declared"], path
        assert row.get("requirement", "") in ("", h.get("requirement", "")), path
