"""`plan --model`, `doctor --model` and `compat.vllm_kwargs(model=...)`: the text and JSON contract, exit
statuses, one-line bad input, and no torch/vLLM import. Runs in-process against fixture machines."""

import json
import sys

import pytest

import compat
import compat.preflight.facts as facts
from compat.cli import main
from helpers import FIXTURES, ROOT, run_python, with_packages

MODELS = ROOT / "tests" / "fixtures" / "models"
HARVEST = ROOT / "compat" / "data" / "harvested"     # tools/harvest.py's files, one per release
NEWEST = facts.releases(HARVEST)[-1]     # a release with facts, so quantization is checked
GIB = 1 << 30

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# parameter counts the hub shows for these checkpoints (tests/fixtures/models/README.md)
LLAMA_3_1_8B_PARAMS = 8_030_261_248
LLAMA_3_1_70B_PARAMS = 70_553_706_496
UTILIZATION = tomllib.loads((ROOT / "compat" / "data" / "preflight.toml").read_text())["memory"]["gpu_memory_utilization"]


def _gpu_mib(machine):
    """The fixture machine's GPU memory, read from its TOML (the number the text must show)."""
    return tomllib.loads((FIXTURES / f"{machine}.toml").read_text())["gpus"][0]["memory_mib"]


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_plan_model_json_has_the_model_section(capsys):
    code, out, _ = _run(capsys, "plan", "--hardware", str(FIXTURES / "a100-sxm4.toml"), "--format", "json",
                        "--model", str(MODELS / "llama-3.1-70b"))
    d = json.loads(out)
    m = d["model"]
    assert m["architecture"] == "LlamaForCausalLM" and m["parameters"] == LLAMA_3_1_70B_PARAMS
    assert m["vllm"] == d["vllm"] and m["vllm_source"] == "planned"
    assert m["engine_kwargs"]["tensor_parallel_size"] == m["memory"]["tensor_parallel_size"]
    assert m["engine_kwargs"]["dtype"] == "bfloat16"
    assert {"id", "severity", "message", "fix"} <= set(m["findings"][0])
    assert all(f["id"].startswith("preflight-") for f in m["findings"])
    assert code == (0 if m["ok"] else 1) and d["ok"] == m["ok"]


def test_plan_model_text_shows_the_numbers(capsys):
    code, out, _ = _run(capsys, "plan", "--hardware", str(FIXTURES / "rtx3090.toml"),
                        "--model", str(MODELS / "llama-3.1-8b" / "config.json"))
    assert "Model " in out and "engine arguments: dtype=" in out
    usable = _gpu_mib("rtx3090") * (1 << 20) * UTILIZATION / GIB      # memory x gpu_memory_utilization
    assert f"tp=1: usable {usable:.2f} GiB" in out
    assert f"weights {LLAMA_3_1_8B_PARAMS * 2 / GIB:.2f} GiB" in out  # bfloat16: 2 bytes per parameter


def test_doctor_model_nothing_fits_is_an_error_with_numbers(capsys, tmp_path):
    hw = with_packages(tmp_path, "t4-driver470")      # nothing installed: checked against the planned release
    code, out, _ = _run(capsys, "doctor", "--hardware", str(hw), "--model", str(MODELS / "llama-3.1-70b"))
    assert code == 1
    assert "Model " in out and out.index("Model ") < out.index("Findings")
    weights = LLAMA_3_1_70B_PARAMS * 2 / GIB                          # float16 on T4: 2 bytes per parameter
    assert f"does not fit 1 x {_gpu_mib('t4-driver470')} MiB" in out and f"{weights:.2f} GiB" in out


def test_doctor_model_json(capsys, tmp_path):
    hw = with_packages(tmp_path, "h100-sxm", vllm="0.11.0")
    code, out, _ = _run(capsys, "doctor", "--json", "--hardware", str(hw), "--model", str(MODELS / "qwen3-8b"),
                        "--max-model-len", "8192")
    d = json.loads(out)
    assert d["model"]["vllm"] == "0.11.0" and d["model"]["vllm_source"] == "installed"
    assert d["model"]["engine_kwargs"]["max_model_len"] == 8192
    ids = {f["id"] for f in d["findings"]}
    assert {f["id"] for f in d["model"]["findings"]} <= ids   # the model's findings are doctor's findings too
    assert code == (1 if any(f["severity"] == "error" for f in d["findings"]) else 0)


@pytest.mark.parametrize("argv,message", [
    (["--model", "/nonexistent/model"], "no config.json"),
    (["--model", str(MODELS / "qwen3-8b"), "--max-model-len", "0"], "--max-model-len must be a positive"),
    (["--model", str(MODELS / "qwen3-8b"), "--gpu-memory-utilization", "1.5"], "gpu_memory_utilization"),
])
@pytest.mark.parametrize("command", ["plan", "doctor"])
def test_bad_model_input_is_one_line_exit_2(capsys, command, argv, message):
    code, _, err = _run(capsys, command, "--hardware", str(FIXTURES / "a100-sxm4.toml"), *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_vllm_kwargs_with_model(tmp_path):
    hw = with_packages(tmp_path, "rtx3090", vllm=NEWEST)
    try:
        compat.setup(hardware=str(hw), patches=False)
        kw = compat.vllm_kwargs(model=str(MODELS / "llama-3.1-8b"))
        assert kw["dtype"] == "bfloat16" and kw["tensor_parallel_size"] == 1
        assert 0 < kw["max_model_len"] < 131072          # 128k context does not fit 24 GiB: shrunk
        kw = compat.vllm_kwargs(model=str(MODELS / "qwen2.5-7b-instruct-awq"), max_model_len=4096)
        assert kw["dtype"] == "float16" and kw["max_model_len"] == 4096 and kw["quantization"].startswith("awq")
    finally:
        compat.revert()


def test_plan_model_imports_no_torch_or_vllm():
    r = run_python(
        "import sys, json, contextlib, io\n"
        "from compat.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        f"    main(['plan', '--format', 'json', '--hardware', {str(FIXTURES / 'b200.toml')!r}, "
        f"'--model', {str(MODELS / 'deepseek-v3')!r}])\n"
        "print(sorted(m for m in ('torch', 'vllm', 'transformers', 'numpy') if m in sys.modules))\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_b200_with_vllm_0110_checks_the_backend_the_plan_installs(capsys):
    """flashinfer is only an extra of vLLM 0.11.0: pre-flight asks for FLASHINFER on B200 exactly when the plan
    installs flashinfer with it (the harvest env, without it, could not import the backend), else for what
    vLLM picks itself; never a backend error either way."""
    code, out, _ = _run(capsys, "plan", "vllm==0.11.0", "--hardware", str(FIXTURES / "b200.toml"), "--format", "json",
                        "--model", str(MODELS / "llama-3.1-8b"))
    d = json.loads(out)
    m = d["model"]
    planned_flashinfer = any(k.startswith("flashinfer") for k in d.get("kernels", []))
    assert (m["attention_backend"] == "FLASHINFER") == planned_flashinfer, (m["attention_backend"], d.get("kernels"))
    assert not [f for f in m["findings"] if f["id"].startswith("preflight-backend") and f["severity"] == "error"]


def test_b200_with_vllm_0110_installed_without_flashinfer(tmp_path):
    """The installed case: vLLM 0.11.0 without flashinfer on B200 is checked against vLLM's own fallback."""
    from compat.detect import detect
    from compat.preflight import for_environment

    hw = with_packages(tmp_path, "b200", vllm="0.11.0", torch="2.8.0+cu128")
    pf = for_environment(MODELS / "llama-3.1-8b", detect(str(hw)), environ={})
    assert pf.backend != "FLASHINFER"
    assert "FLASHINFER" not in json.dumps(pf.kwargs())


def test_preflight_of_every_fixture_model_takes_well_under_a_second_in_process():
    """The offline promise, minus interpreter start-up: all 11 fixture models against the oldest harvested
    release (Qwen3 unknown there: the first-release search reads every harvested file) in under a second."""
    import time

    from compat.detect import detect
    from compat.preflight import for_environment

    env = detect(str(FIXTURES / "a100-sxm4.toml"))
    oldest = facts.releases(HARVEST)[0]
    start = time.perf_counter()
    for d in sorted(p for p in MODELS.iterdir() if (p / "config.json").exists()):
        for_environment(d, env, vllm=oldest, environ={})
    assert time.perf_counter() - start < 1.0
