"""Every patch test must FAIL on its real release without its patch (house rule: a test that cannot fail proves
nothing). Each case runs a child pytest with COMPAT_DISABLE_PATCHES=<one patch id> and reads its --junitxml:
exactly the named tests must fail, for the named reason (the patched bug's message), and every other test the
child ran must pass. The test files read the kill switch at import and hand it to their probes / fixtures (the
suite's autouse fixture clears COMPAT_* inside each test, so it is set here only in the child's environment).

Every patch id of every set compat ships has its own case (test_every_patch_has_its_own_fail_without_case; ids
proven in another matrix, e.g. verl_padding in the verl envs, are named in ELSEWHERE with their test): the
rest of its set still applies, so each case proves that patch alone. A case selects the test that exercises its
patch with `-k` where other tests of the file assert the whole set (e.g. that every patch reports `applied`).
The vLLM sets' cases run in every env whose release the set patches. The transformers sets' cases run in one env
per transformers era (vllm054: 4.44.1, vllm0110: 4.57.1) to bound CI time; in the other envs, where the sets apply to
that env's transformers too, tests/hf/test_transformers_sets.py::test_fail_without_the_sets proves each set whole.
A named test that the child skips for another release (e.g. the 0.8.3/0.8.4-only aiter test in the 0.8.2 env) is
not expected to fail there; every other named test must.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, Iterable, NamedTuple, Optional, Tuple

import pytest

from compat.patches.sets import all_sets
from transformers_cases import ATTN_TESTS, DTYPE_TESTS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHILD_TIMEOUT_S = 1800  # a child imports vLLM + torch in several probes; cold on 2 cores


class Case(NamedTuple):
    test_file: str
    disable: str  # COMPAT_DISABLE_PATCHES value: one patch id
    select: Optional[str]  # -k expression, or None for the whole file
    fails: Tuple[str, ...]  # test names (with parametrization) that must fail
    because: str  # text every failure's report must contain: the failure is the patched bug, not a crash
    vllm: Optional[str] = None  # the vLLM envs to run in (default: the set's range; transformers sets: one env)


V07 = "test_vllm07.py"
V082 = "test_vllm082.py"
FP8 = "test_vllm_fp8.py"
HID = "test_vllm054_hidden.py"
FP8_LOST = "no attribute 'weight_loader'"
FP8_LOAD = ("test_second_weight_load_gives_the_same_parameters[plain]",
            "test_second_weight_load_gives_the_same_parameters[sm90]")
CASES = [
    Case(V07, "vllm07.parallel_state_world_size", "test_tp_group_smaller_than_the_world_builds_groups",
         ("test_tp_group_smaller_than_the_world_builds_groups",), "is not equal to tensor_model_parallel_size"),
    Case(V07, "vllm07.external_launcher_local_rank", "test_external_launcher_uses_local_rank",
         ("test_external_launcher_uses_local_rank",), "assert 3 == 1"),
    Case(V07, "vllm07.pt_weights_no_empty_cache", "test_pt_weights_iterator_never_empties_the_cuda_cache",
         ("test_pt_weights_iterator_never_empties_the_cuda_cache",), "empty_cache called 3 times"),
    # the mutation test applies its own (mutated) patch and the repair-helper test switches the set off itself
    Case(V082, "vllm082.moe_keep_parameters", None,
         ("test_fused_moe_experts_keep_weight_loader_across_loads", "test_rocm_padding_still_applies_and_keeps_the_loader",
          "test_rocm_aiter_shuffle_keeps_the_loader"), "no attribute 'weight_loader'"),
    Case(HID, "vllm054_hidden.worker_enables_runner", "test_switch_reaches_model_runner_through_worker",
         ("test_switch_reaches_model_runner_through_worker",), "left the runner's return_hidden_states off"),
    Case(HID, "vllm054_hidden.runner_splits_rows", "test_prefill_and_decode_states_arrive_in_order",
         ("test_prefill_and_decode_states_arrive_in_order",), "prefill hidden states lost: hidden_states_prefill is None"),
    Case(HID, "vllm054_hidden.keep_prompt_rows", "test_prefill_and_decode_states_arrive_in_order",
         ("test_prefill_and_decode_states_arrive_in_order",), "prefill hidden states lost: hidden_states_prefill is None"),
    Case(HID, "vllm054_hidden.keep_decode_rows", "test_prefill_and_decode_states_arrive_in_order",
         ("test_prefill_and_decode_states_arrive_in_order",), "decode hidden states lost: hidden_states_decode is None"),
    Case(HID, "vllm054_hidden.request_output_fields", "test_prefill_and_decode_states_arrive_in_order",
         ("test_prefill_and_decode_states_arrive_in_order",), "hidden_states_prefill is '<no attribute>'"),
    # every release of the set (0.10.0, 0.10.1.1, 0.10.2, 0.11.0: each has its own fingerprints), one id at a time;
    # -k leaves out test_scale_names_follow_the_release, which runs the same probe and fails with it
    Case(FP8, "vllm_fp8.linear_create_weights", "test_second_weight_load", FP8_LOAD, FP8_LOST),
    Case(FP8, "vllm_fp8.linear_process_weights", "test_second_weight_load", FP8_LOAD, FP8_LOST),
    Case(FP8, "vllm_fp8.moe_create_weights", "test_second_weight_load", FP8_LOAD, FP8_LOST),
    Case(FP8, "vllm_fp8.moe_process_weights", "test_second_weight_load", FP8_LOAD, FP8_LOST),
]
# transformers sets (tests/hf/test_transformers_sets.py): every vLLM env carries a transformers, so each case runs in
# one env of the patch's transformers era (vllm054: transformers 4.44.1, vllm0110: 4.57.1) to bound CI time
HF = "../hf/test_transformers_sets.py"
HF_ALL = "not test_fail_without_the_sets"
TOGGLED = "FlashAttention2 has been toggled on, but it cannot be used"
CASES += [
    Case(HF, "transformers_attn.autoset", HF_ALL, ATTN_TESTS, TOGGLED, vllm="==0.5.4"),
    Case(HF, "transformers_attn.check_and_adjust", HF_ALL,
         ATTN_TESTS + ("test_set_attn_implementation_after_loading_on_v100",), TOGGLED, vllm="==0.11.0"),
    Case(HF, "transformers_dtype.from_pretrained", HF_ALL, DTYPE_TESTS, "bfloat16", vllm="==0.5.4"),
    Case(HF, "transformers_dtype.from_config", HF_ALL, (
        "test_verl_load_on_v100_and_t4_gives_sdpa_and_float16[v100-sxm2]",
        "test_verl_load_on_v100_and_t4_gives_sdpa_and_float16[t4-driver470]"),
        "'verl_from_config', {'attn': 'sdpa', 'dtypes': ['bfloat16']", vllm="==0.5.4"),
]
SETS = {ps.name: ps for ps in all_sets()}
# ids whose fail-without case runs in another matrix (the verl envs: their release, not a vLLM one): the test that
# switches the patch off there and asserts the patched failure, as "file::test"
ELSEWHERE = {
    "verl_padding.bert_padding": "tests/verl/test_bert_padding.py::test_the_kill_switch_brings_the_failure_back",
    "flash_attn_hide.broken":
        "tests/verl/test_broken_flash_attn.py::test_the_kill_switch_brings_the_transformers_failure_back",
}


def _set_of(case: Case):
    return SETS[case.disable.partition(".")[0]]


def test_every_patch_has_its_own_fail_without_case():
    """Each patch id of every set compat ships (compat.patches.sets.all_sets) is switched off alone by one case."""
    covered = {c.disable for c in CASES if "." in c.disable} | set(ELSEWHERE)
    missing = [p.id for ps in SETS.values() for p in ps.patches if p.id not in covered]
    assert not missing, f"no fail-without case for {missing}: add a Case in {Path(__file__).name}"
    for pid, where in ELSEWHERE.items():  # the test named there exists and itself switches exactly this id off
        path, _, name = where.partition("::")
        text = (ROOT / path).read_text()
        fn = [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.FunctionDef) and n.name == name]
        assert fn and f'COMPAT_DISABLE_PATCHES="{pid}"' in ast.get_source_segment(text, fn[0]), (pid, where)
    assert all(c.disable in {p.id for p in _set_of(c).patches} | {_set_of(c).name} for c in CASES)  # no stale ids


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
        yield pytest.param(case, marks=pytest.mark.vllm(case.vllm or ps.versions), id=case.disable)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(_params()))
def test_patch_tests_fail_without_their_patch(case: Case, tmp_path):
    ps = _set_of(case)
    assert case.disable in {p.id for p in ps.patches} | {ps.name}, case.disable
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
    # a named test skipped by the child for another release (the vllm marker) is not this env's to fail
    other_release = [n for n in case.fails if outcomes.get(n) == "skipped"
                     and "needs vLLM" in report[n + "#text"] and "this env has" in report[n + "#text"]]
    expected = sorted(n for n in case.fails if n not in other_release)
    assert expected, f"with {case.disable} off, none of {case.fails} ran:\n{tail}"
    failed = sorted(n for n, s in outcomes.items() if s in ("failed", "error"))
    assert failed == expected, (
        f"with {case.disable} off, expected exactly {expected} to fail; outcomes {outcomes}\n{tail}")
    for name in expected:
        assert case.because in report[name + "#text"], (
            f"{name} failed, but not for the patched bug (no {case.because!r} in its report):\n"
            f"{report[name + '#text'][-3000:]}")
    others = {n: s for n, s in outcomes.items() if n not in case.fails}
    assert all(s == "passed" for s in others.values()), f"other tests must pass: {others}\n{tail}"
    if case.select and " " not in case.select:  # -k <test name>: it selected exactly the named tests
        assert set(outcomes) == set(case.fails), f"-k {case.select} selected {sorted(outcomes)}"
    assert proc.returncode == 1, f"child pytest exit {proc.returncode}\n{tail}"
