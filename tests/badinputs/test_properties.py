"""Property tests (hypothesis) over compat's inputs (issue 14): whatever the hardware file, profile or knob holds,
a command exits 0, 1 or 2, says exactly one line on stderr when it exits 2, never ends in a traceback or hangs
(each run is under an alarm), and a valid input's answer does not change when a knob the command does not read
is garbage.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from badinput_cases import A100, H100, H100_VLLM, _case  # noqa: E402
from test_bench import run_case  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                   st.text(max_size=12), st.sampled_from(["8.0", "9.0", "8.10", "12.0", "535.104.05", "12.2", "false"]),
                   st.lists(st.integers(0, 20), max_size=3))


def _toml_value(v: object) -> str:
    if v is None:
        return '""'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
    if isinstance(v, str):
        return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in v) + '"'
    if isinstance(v, list):
        return "[" + ", ".join(map(_toml_value, v)) + "]"
    return str(v)


@st.composite
def hardware_files(draw: st.DrawFn) -> str:
    lines = ["[driver]"]
    for key, good in (("version", "535.104.05"), ("cuda", "12.2")):
        v = draw(st.one_of(st.just(good), scalar))
        lines.append(f"{key} = {_toml_value(v)}")
    for _ in range(draw(st.integers(0, 3))):
        lines.append("[[gpus]]")
        for key, good in (("name", "NVIDIA A100"), ("compute_capability", "8.0"), ("memory_mib", 40960),
                          ("count", 2), ("mig", False)):
            if draw(st.integers(0, 5)):
                v = draw(st.one_of(st.just(good), scalar))
                lines.append(f"{key} = {_toml_value(v)}")
    if draw(st.booleans()):
        lines.append("[packages]")
        lines.append(f"vllm = {_toml_value(draw(st.one_of(st.just('0.7.2'), scalar)))}")
    return "\n".join(lines) + "\n"


def _run(argv, files, env=None):
    with tempfile.TemporaryDirectory() as tmp:
        return run_case(_case("prop", argv, -1, env=env, files=files), Path(tmp) / "c")


def _contract(code: int, err: str, error: str) -> None:
    assert not error, error  # 'traceback: ...' or 'hang'
    assert code in (0, 1, 2), code
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err


@SETTINGS
@given(hardware_files(), st.sampled_from(["doctor", "plan", "env"]))
def test_any_hardware_file_gets_an_answer_or_one_line(text, cmd):
    argv = {"doctor": ["doctor", "--json"], "plan": ["plan", "--format", "json"], "env": ["env"]}[cmd]
    code, out, err, error = _run(argv + ["--hardware", "{d}/hw.toml"], {"hw.toml": text})
    _contract(code, err, error)


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_as_a_hardware_file(data):
    text = data.decode("latin-1")
    code, out, err, error = _run(["doctor", "--hardware", "{d}/hw.toml"], {"hw.toml": text})
    _contract(code, err, error)


KNOBS = ["COMPAT_FP8", "COMPAT_HIDDEN_STATES", "COMPAT_HF_DTYPE", "COMPAT_DISABLE_PATCHES", "COMPAT_PROFILE",
         "COMPAT_NO_CACHE", "COMPAT_PROBE_TIMEOUT", "COMPAT_HIDDEN_STATES_DECODE_LIMIT", "COMPAT_FORCE_NVML"]
knob_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=16)


@SETTINGS
@given(st.sampled_from(KNOBS), knob_text, st.sampled_from(["doctor", "patches", "env", "verl-overrides"]))
def test_any_knob_value_gets_an_answer_or_one_line(var, value, cmd):
    argv = [cmd] + (["--vllm", "0.11.0"] if cmd == "patches" else ["--hardware", "{d}/hw.toml"])
    code, out, err, error = _run(argv, {"hw.toml": H100_VLLM}, {var: value})
    _contract(code, err, error)


UNRELATED = ["COMPAT_PROBE_TIMEOUT", "COMPAT_NO_CACHE", "COMPAT_FORCE_NVML", "COMPAT_DEEP_TIMEOUT",
             "COMPAT_HIDDEN_STATES_DECODE_LIMIT", "COMPAT_HIDDEN_STATES_PROMPT", "COMPAT_AUTOLOAD",
             "COMPAT_DEEP_MULTI_TIMEOUT", "COMPAT_RAY_TIMEOUT", "COMPAT_DEBUG"]


@SETTINGS
@given(st.sampled_from(UNRELATED), knob_text, st.sampled_from([H100, A100, H100_VLLM]),
       st.sampled_from(["doctor", "env", "plan"]))
def test_garbage_in_an_unrelated_knob_never_changes_a_valid_answer(var, value, machine, cmd):
    argv = {"doctor": ["doctor", "--json"], "plan": ["plan", "--format", "json"], "env": ["env"]}[cmd]
    argv = argv + ["--hardware", "{d}/hw.toml"]
    base = _run(argv, {"hw.toml": machine})
    got = _run(argv, {"hw.toml": machine}, {var: value})
    assert not got[3], got[3]
    assert got[:2] == base[:2], (var, value)
