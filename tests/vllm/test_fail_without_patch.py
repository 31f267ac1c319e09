"""Every patch test must FAIL on its real release without its patch (house rule: a test that cannot fail proves
nothing). Each case runs a child pytest with COMPAT_DISABLE_PATCHES=<patch id or set> and reads its --junitxml:
exactly the named tests must fail, for the named reason, and every other test the child ran must pass. The test
files read the kill switch at import and hand it to their probes (the suite's autouse fixture clears COMPAT_*
inside each test, so it is set here only in the child's environment).

- vllm07 has three patches and one test per patch: one child per patch id, only that patch disabled
  (the rest of the set still applies) and `-k <its test>`. The other two tests are not run in that child:
  test_external_launcher_uses_local_rank also asserts that every vllm07 patch reports `applied`, which a
  partly disabled set never does.
- vllm082 (one patch) and vllm_fp8 (four patches that only work together: a bf16 reload needs the quantizing
  loader *and* the loader re-attached after post-processing) are switched off as a set.

The hidden-states set (tests/vllm/test_vllm054_hidden.py) is opt-in and proves the same inside the file:
test_without_the_patch_the_states_are_lost runs the real pipeline unpatched and shows the states are lost.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, Iterable, NamedTuple, Optional, Tuple

import pytest

from compat.patches.sets import vllm07, vllm082, vllm_fp8

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHILD_TIMEOUT_S = 1800  # a child imports vLLM + torch in several probes; cold on 2 cores


class Case(NamedTuple):
    test_file: str
    disable: str  # COMPAT_DISABLE_PATCHES value: a patch id or a set name
    select: Optional[str]  # -k expression, or None for the whole file
    fails: Tuple[str, ...]  # test names (with parametrization) that must fail
    because: str  # text every failure's report must contain: the failure is the patched bug, not a crash


V07 = "test_vllm07.py"
CASES = [
    Case(V07, "vllm07.parallel_state_world_size", "test_tp_group_smaller_than_the_world_builds_groups",
         ("test_tp_group_smaller_than_the_world_builds_groups",), "is not equal to tensor_model_parallel_size"),
    Case(V07, "vllm07.external_launcher_local_rank", "test_external_launcher_uses_local_rank",
         ("test_external_launcher_uses_local_rank",), "assert 3 == 1"),
    Case(V07, "vllm07.pt_weights_no_empty_cache", "test_pt_weights_iterator_never_empties_the_cuda_cache",
         ("test_pt_weights_iterator_never_empties_the_cuda_cache",), "empty_cache called 3 times"),
    Case("test_vllm082.py", "vllm082", None,
         ("test_fused_moe_experts_keep_weight_loader_across_loads",), "no attribute 'weight_loader'"),
    Case("test_vllm_fp8.py", "vllm_fp8", None,
         ("test_second_weight_load_gives_the_same_parameters[plain]",
          "test_second_weight_load_gives_the_same_parameters[sm90]",
          "test_scale_names_follow_the_release"), "no attribute 'weight_loader'"),
]
SETS = {ps.name: ps for ps in (vllm07.PATCH_SET, vllm082.PATCH_SET, vllm_fp8.PATCH_SET)}


def _set_of(case: Case):
    return SETS[case.disable.partition(".")[0]]


def test_every_patch_has_a_fail_without_case():
    """A new patch in these sets needs its own case here (or the set-level case of a single-patch / joint set)."""
    covered = {c.disable for c in CASES}
    for ps in SETS.values():
        if ps.name in covered:
            continue
        missing = [p.id for p in ps.patches if p.id not in covered]
        assert not missing, f"no fail-without case for {missing}"


def _junit(path: Path) -> Dict[str, str]:
    """test name -> 'passed' | 'failed' | 'error' | 'skipped', and failure texts under '<name>#text'."""
    out: Dict[str, str] = {}
    for tc in ET.parse(path).getroot().iter("testcase"):
        name = tc.get("name", "")
        state, text = "passed", ""
        for child in tc:
            if child.tag in ("failure", "error", "skipped"):
                state = "failed" if child.tag == "failure" else child.tag
                text = (child.get("message") or "") + "\n" + (child.text or "")
                break
        out[name] = state
        out[name + "#text"] = text
    return out


def _outcomes(report: Dict[str, str]) -> Iterable[Tuple[str, str]]:
    return ((n, s) for n, s in report.items() if not n.endswith("#text"))


def _params():
    for case in CASES:
        ps = _set_of(case)
        yield pytest.param(case, marks=pytest.mark.vllm(ps.versions), id=case.disable)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(_params()))
def test_patch_tests_fail_without_their_patch(case: Case, tmp_path):
    ps = _set_of(case)
    assert case.disable == ps.name or case.disable in {p.id for p in ps.patches}, case.disable
    xml = tmp_path / "junit.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPAT_")}
    env["COMPAT_DISABLE_PATCHES"] = case.disable
    cmd = [sys.executable, "-m", "pytest", str(HERE / case.test_file), "-q", "-p", "no:cacheprovider",
           f"--junitxml={xml}"]
    if case.select:
        cmd += ["-k", case.select]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=CHILD_TIMEOUT_S, cwd=ROOT)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert xml.exists(), f"child pytest wrote no report (exit {proc.returncode}):\n{tail}"
    report = _junit(xml)
    outcomes = dict(_outcomes(report))
    failed = sorted(n for n, s in outcomes.items() if s in ("failed", "error"))
    assert failed == sorted(case.fails), (
        f"with {case.disable} off, expected exactly {sorted(case.fails)} to fail; outcomes {outcomes}\n{tail}")
    for name in case.fails:
        assert case.because in report[name + "#text"], (
            f"{name} failed, but not for the patched bug (no {case.because!r} in its report):\n"
            f"{report[name + '#text'][-3000:]}")
    others = {n: s for n, s in outcomes.items() if n not in case.fails}
    assert all(s == "passed" for s in others.values()), f"other tests must pass: {others}\n{tail}"
    if case.select:
        assert set(outcomes) == set(case.fails), f"-k {case.select} selected {sorted(outcomes)}"
    assert proc.returncode == 1, f"child pytest exit {proc.returncode}\n{tail}"
