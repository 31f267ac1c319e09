"""The transformers sets on the real transformers + torch of this env (CPU), under simulated machines.

A tiny random Llama is saved into a tmp dir in bfloat16 and loaded in a child process (tests/hf/hf_probe.py: a
fresh interpreter that calls compat.setup() and then imports transformers, so the post-import hook applies the
sets) the way verl 0.4.1 - 0.6.0 load the actor/ref model: `AutoConfig.from_pretrained(...,
attn_implementation="flash_attention_2")` then `AutoModelForCausalLM.from_pretrained(config=..., torch_dtype=bf16)`
or `from_config`. flash-attn is not installed in these envs, so on every profile flash-attn cannot serve and the
request is served with sdpa; bfloat16 becomes float16 on the V100 and T4 profiles only. Requests that already work
(sdpa/eager, float32/float16, bfloat16 on A100) must come back unchanged.

Without the sets (COMPAT_DISABLE_PATCHES, read at import as the vLLM set tests do: the suite's autouse fixture
clears it inside tests) the flash_attention_2 tests fail with transformers' own "FlashAttention2 has been toggled
on, but it cannot be used" ImportError and the float16 tests with bfloat16 parameters:
test_fail_without_the_sets proves it with a child pytest of this file.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FIX = ROOT / "tests" / "fixtures" / "hardware"
DISABLED = os.environ.get("COMPAT_DISABLE_PATCHES", "")
TOGGLED = "FlashAttention2 has been toggled on, but it cannot be used"
PROBE_TIMEOUT_S = 1200  # torch + transformers import, 9 tiny loads x 5 machines; slow on a shared box


def _transformers() -> str:
    try:
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        return ""


TF = _transformers()
pytestmark = pytest.mark.skipif(not TF or importlib.util.find_spec("torch") is None,
                                reason="needs torch: and transformers (the vLLM matrix envs carry both)")

MAKE = """
import sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64)
torch.manual_seed(0)
LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(sys.argv[1])
"""
REFUSE_BF16 = ("v100-sxm2", "t4-driver470")
BF16_OK = ("a100-sxm4", "h100-sxm", "rtx4090-old-driver")
MACHINES = REFUSE_BF16 + BF16_OK  # v100 first: the hook applies the sets there; the one-per-process warnings too


def _env(extra: Dict[str, str]) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPAT_", "NCCL_", "VLLM_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["XDG_CACHE_HOME"] = os.environ.get("XDG_CACHE_HOME", "/tmp")
    if DISABLED:
        env["COMPAT_DISABLE_PATCHES"] = DISABLED
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny-llama")
    proc = subprocess.run([sys.executable, "-c", MAKE, str(path)], capture_output=True, text=True,
                          env=_env({}), timeout=PROBE_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path


@lru_cache(maxsize=None)
def _probe(model: str, machines: Tuple[str, ...], extra: Tuple[Tuple[str, str], ...] = ()) -> Dict[str, Any]:
    files = [str(FIX / f"{m}.toml") for m in machines]
    proc = subprocess.run([sys.executable, str(HERE / "hf_probe.py"), model, *files], capture_output=True,
                          text=True, env=_env(dict(extra)), timeout=PROBE_TIMEOUT_S)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")]
    assert proc.returncode == 0 and lines, f"probe failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    out = json.loads(lines[-1][len("PROBE "):])
    return {m: dict(out[f], transformers=out["transformers"]) for m, f in zip(machines, files)}


def probe(tiny_model: Path, hardware: str, **extra: str) -> Dict[str, Any]:
    """One child process per set of env overrides loads the model on every machine (see hf_probe.py)."""
    machines = MACHINES if not extra else ("v100-sxm2",)
    return _probe(str(tiny_model), machines, tuple(sorted(extra.items())))[hardware]


def loaded(result: Dict[str, Any], name: str) -> Dict[str, Any]:
    r = result[name]
    assert "error" not in r, f"{name} on transformers {result['transformers']}: {r['error']}"
    assert r.get("finite", True), f"{name}: the forward pass gave non-finite logits"
    return r


@pytest.mark.slow
@pytest.mark.parametrize("hardware", REFUSE_BF16)
def test_verl_load_on_v100_and_t4_gives_sdpa_and_float16(tiny_model, hardware):
    res = probe(tiny_model, hardware)
    for name in ("verl_from_pretrained", "verl_from_config"):
        r = loaded(res, name)
        assert (r["attn"], r["dtypes"]) == ("sdpa", ["float16"]), (name, r)


@pytest.mark.slow
@pytest.mark.parametrize("hardware", BF16_OK)
def test_verl_load_without_a_fitting_flash_attn_gives_sdpa_and_keeps_bfloat16(tiny_model, hardware):
    res = probe(tiny_model, hardware)
    for name in ("verl_from_pretrained", "verl_from_config"):
        r = loaded(res, name)
        assert (r["attn"], r["dtypes"]) == ("sdpa", ["bfloat16"]), (name, r)


@pytest.mark.slow
def test_flash_attention_2_kwarg_and_string_dtype_on_v100(tiny_model):
    res = probe(tiny_model, "v100-sxm2")
    for name in ("kwarg_fa2", "kwarg_fa2_dtype_str"):
        r = loaded(res, name)
        assert (r["attn"], r["dtypes"]) == ("sdpa", ["float16"]), (name, r)


@pytest.mark.slow
def test_set_attn_implementation_after_loading_on_v100(tiny_model):
    r = loaded(probe(tiny_model, "v100-sxm2"), "set_attn_fa2")
    if "skipped" in r:  # set_attn_implementation exists from 4.54 on; before, only loading chooses
        assert tuple(int(x) for x in TF.split(".")[:2]) < (4, 54), r
        return
    assert r["attn"] == "sdpa", r


@pytest.mark.slow
@pytest.mark.parametrize("hardware,dtype", [("v100-sxm2", "float16"), ("a100-sxm4", "bfloat16")])
def test_auto_dtype_on_a_bfloat16_checkpoint(tiny_model, hardware, dtype):
    r = loaded(probe(tiny_model, hardware), "auto_dtype")
    assert (r["attn"], r["dtypes"]) == ("sdpa", [dtype]), r


@pytest.mark.slow
@pytest.mark.parametrize("hardware", ["v100-sxm2", "a100-sxm4"])
def test_requests_that_already_work_are_unchanged(tiny_model, hardware):
    """Identity: sdpa/eager with float32/float16 everywhere, and bfloat16 where the profile allows it."""
    res = probe(tiny_model, hardware)
    assert (loaded(res, "sdpa_fp32")["attn"], loaded(res, "sdpa_fp32")["dtypes"]) == ("sdpa", ["float32"])
    assert (loaded(res, "eager_fp16")["attn"], loaded(res, "eager_fp16")["dtypes"]) == ("eager", ["float16"])
    if hardware == "a100-sxm4":
        assert loaded(res, "sdpa_bf16")["dtypes"] == ["bfloat16"]
        assert "bfloat16" not in res["log"], res["log"]  # no dtype warning where nothing changed


@pytest.mark.slow
def test_hf_dtype_switch_off_keeps_bfloat16_on_v100(tiny_model):
    res = probe(tiny_model, "v100-sxm2", COMPAT_HF_DTYPE="0")
    r = loaded(res, "verl_from_pretrained")
    assert (r["attn"], r["dtypes"]) == ("sdpa", ["bfloat16"]), r
    assert res["patches"]["transformers_dtype.from_pretrained"] == "disabled", res["patches"]


@pytest.mark.slow
def test_one_warning_line_per_process_and_sets_applied_by_the_hook(tiny_model):
    res = probe(tiny_model, "v100-sxm2")
    for name in ("verl_from_pretrained", "kwarg_fa2", "sdpa_bf16"):  # three loads that each needed a set
        assert loaded(res, name)["dtypes"] == ["float16"], (name, res[name])
    lines = res["log"].splitlines()
    assert len([ln for ln in lines if "flash-attn cannot serve" in ln]) == 1, lines
    assert len([ln for ln in lines if "refuses bfloat16" in ln]) == 1, lines
    if DISABLED:
        return
    applied = {k for k, v in res["patches"].items() if v == "applied"}
    era = "autoset" if tuple(int(x) for x in TF.split(".")[:2]) < (4, 54) else "check_and_adjust"
    assert applied == {f"transformers_attn.{era}", "transformers_dtype.from_pretrained",
                       "transformers_dtype.from_config"}, res["patches"]


# ------------------------------------------------------------------------------------------------------------
# fail without: the same tests in a child pytest with the sets switched off

from transformers_cases import ATTN_TESTS, DTYPE_TESTS  # noqa: E402 - the lists this section checks



def _junit(path: Path) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for tc in ET.parse(path).getroot().iter("testcase"):
        name, state, text = tc.get("name", ""), "passed", ""
        for child in tc:
            if child.tag in ("failure", "error", "skipped"):
                state = "failed" if child.tag == "failure" else child.tag
                text = (child.get("message") or "") + "\n" + (child.text or "")
                break
        out[name], out[name + "#text"] = state, text
    return out


@pytest.mark.slow
@pytest.mark.skipif(bool(DISABLED), reason="this is the child run")
@pytest.mark.parametrize("disable,fails,because", [
    ("transformers_attn", ATTN_TESTS, TOGGLED),
    ("transformers_dtype", DTYPE_TESTS, "bfloat16"),
], ids=["transformers_attn", "transformers_dtype"])
def test_fail_without_the_sets(tmp_path, disable, fails, because):
    """Exactly the tests that need the set fail without it, for the reason the set exists; the rest pass."""
    reasons = {name: because for name in fails}
    if disable == "transformers_attn" and tuple(int(x) for x in TF.split(".")[:2]) >= (4, 54):
        fails = fails + ("test_set_attn_implementation_after_loading_on_v100",)
        # 4.54 - 4.55 catch the ImportError in set_attn_implementation, log "Impossible to set the requested
        # attn_implementation" and keep the old attention: the request is silently not served (4.56+ raise)
        old = tuple(int(x) for x in TF.split(".")[:2]) < (4, 56)
        reasons[fails[-1]] = "assert 'eager' == 'sdpa'" if old else because
    xml = tmp_path / "junit.xml"
    env = _env({"COMPAT_DISABLE_PATCHES": disable})
    cmd = [sys.executable, "-m", "pytest", str(Path(__file__)), "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
           "-k", "not test_fail_without_the_sets"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3 * PROBE_TIMEOUT_S, cwd=ROOT)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert xml.exists(), f"child pytest wrote no report (exit {proc.returncode}):\n{tail}"
    report = _junit(xml)
    outcomes = {n: s for n, s in report.items() if not n.endswith("#text")}
    failed = sorted(n for n, s in outcomes.items() if s in ("failed", "error"))
    assert failed == sorted(fails), f"with {disable} off: {outcomes}\n{tail}"
    for name in fails:
        assert reasons[name] in report[name + "#text"], f"{name} failed for another reason:\n{report[name + '#text']}"
    assert all(s == "passed" for n, s in outcomes.items() if n not in fails), outcomes
