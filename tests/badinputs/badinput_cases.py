"""The bad-input bench (issue 14): 300+ malformed, wrong-typed or odd inputs, each with the outcome it must get.

A case is the command line, the environment and the files it runs with, and what must come out: exit 2 with one
line on stderr containing `fragment`, or (for a knob the command does not consult, or an odd but valid value) the
very answer of the `same_as` baseline. Files are written into a fresh directory per case ({d} in argv/env/paths);
`FIFO`, `DIR` and `HUGE` stand for a named pipe, a directory and a 2 MiB file.

Run by tests/badinputs/test_bench.py (in-process, with a per-case alarm) and, for the counts,
`python tests/badinputs/test_bench.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

FIFO, DIR, HUGE = "<fifo>", "<dir>", "<huge>"

DRIVER = '[driver]\nversion = "580.159.04"\ncuda = "13.0"\n'
GPU = 'name = "NVIDIA H100 80GB HBM3"\ncompute_capability = "9.0"\nmemory_mib = 81559\ncount = 1\n'
H100 = DRIVER + "\n[[gpus]]\n" + GPU
A100 = DRIVER + '\n[[gpus]]\nname = "NVIDIA A100-SXM4-80GB"\ncompute_capability = "8.0"\nmemory_mib = 81920\ncount = 8\n'
H100_VLLM = H100 + '\n[packages]\nvllm = "0.11.0"\ntorch = "2.8.0+cu128"\n'
PROFILE = ('name = "mine"\ndescription = "x"\n[match]\nsm_min = 90\nsm_max = 99\n[settings]\ndtype = "bfloat16"\n'
           'hf_attn_implementation = "sdpa"\nattention = "sm90"\nfp8 = true\n')


@dataclass(frozen=True)
class Case:
    id: str
    argv: Tuple[str, ...]
    expect: int                      # exit status it must get: 2 (bad input) or 0/1 (an answer)
    fragment: str = ""               # part of the one stderr line (exit 2)
    env: Tuple[Tuple[str, str], ...] = ()
    files: Tuple[Tuple[str, str], ...] = ()
    same_as: Optional["Case"] = None  # the answer (stdout, exit) must equal this case's


def _case(id: str, argv: List[str], expect: int, fragment: str = "", env: Optional[Dict[str, str]] = None,
          files: Optional[Dict[str, str]] = None, same_as: Optional[Case] = None) -> Case:
    return Case(id, tuple(argv), expect, fragment, tuple(sorted((env or {}).items())),
                tuple(sorted((files or {}).items())), same_as)


# -- hardware files: (id, file text, fragment) -----------------------------------------------------------------------

def _gpu(field_line: str, drop: str = "") -> str:
    lines = [ln for ln in GPU.splitlines() if not (drop and ln.startswith(drop + " "))]
    return DRIVER + "\n[[gpus]]\n" + "\n".join(lines) + "\n" + field_line + "\n"


def _cc(value: str) -> str:
    return _gpu(f"compute_capability = {value}", drop="compute_capability")


HARDWARE: List[Tuple[str, str, str]] = []
for n, v in enumerate(['"8.10"', '"9.00"', '"8."', '".0"', '"80"', '"sm_80"', '"8.0.0"', "8.0", "9", "true", '""',
                       '" "', '"x.y"', '"-8.0"', '"8.-1"', '"0.5"', '"100.0"', '"8,0"', '"\uff18.\uff10"', "[8, 0]",
                       "{ major = 8 }", '"8.0 "' + "\n# trailing", '"9.0\\n"', '"1e1"', '"nan"']):
    HARDWARE.append((f"cc{n}", _cc(v), "compute_capability"))
for n, v in enumerate(['"false"', '"true"', "0", "1", '"no"', "[]", '""']):
    HARDWARE.append((f"mig{n}", _gpu(f"mig = {v}"), "mig"))
for n, v in enumerate(["1.5", "true", "0", "-1", '"2"', "1e3", "99999999", "[]", "{}", "2.0"]):
    HARDWARE.append((f"count{n}", _gpu(f"count = {v}", drop="count"), "count"))
for n, v in enumerate(["-1", '"80GB"', "1.5", "true", "[]"]):
    HARDWARE.append((f"mem{n}", _gpu(f"memory_mib = {v}", drop="memory_mib"), "memory_mib"))
for n, v in enumerate(["1", '""', "[]", "true", '"   "']):
    HARDWARE.append((f"name{n}", _gpu(f"name = {v}", drop="name"), "name"))
HARDWARE += [
    ("noname", _gpu("", drop="name"), "lacks name"),
    ("nocc", _gpu("", drop="compute_capability"), "lacks compute_capability"),
    ("uuid-int", _gpu("uuid = 5"), "uuid"),
]
for n, (key, v) in enumerate([("version", "535"), ("version", '"abc"'), ("version", '""'), ("version", '"535"'),
                              ("version", '"1.2.3.4.5"'), ("version", "[]"), ("version", "535.104"),
                              ("cuda", "12.2"), ("cuda", '"12"'), ("cuda", '"x"'), ("cuda", '""'), ("cuda", "true"),
                              ("cuda", '"12.2.1"')]):
    body = '[driver]\nversion = "580.159.04"\ncuda = "13.0"\n'.replace(
        f'{key} = "580.159.04"' if key == "version" else f'{key} = "13.0"', f"{key} = {v}")
    HARDWARE.append((f"driver{n}", body + "\n[[gpus]]\n" + GPU, key))
HARDWARE += [
    ("driver-missing", "[[gpus]]\n" + GPU, "version is missing"),
    ("cuda-missing", '[driver]\nversion = "580.159.04"\n\n[[gpus]]\n' + GPU, "cuda is missing"),
    ("driver-str", 'driver = "580"\n', "driver"),
    ("driver-list", "driver = [1]\n", "driver"),
    ("gpus-str", 'gpus = "H100"\n' + DRIVER, "gpus"),
    ("gpus-ints", "gpus = [1, 2]\n" + DRIVER, "gpus[0]"),
    ("gpus-table", DRIVER + "[gpus]\n" + GPU, "gpus"),
    ("unknown-top", H100 + "gpu = 1\n", "unknown field 'gpu'"),
    ("typo-cc", _gpu('compute_capabilty = "9.0"', drop="compute_capability"), "compute_capabilty"),
    ("typo-mig", _gpu("MIG = true"), "unknown field 'MIG'"),
    ("typo-driver", '[driver]\nversoin = "580.159.04"\ncuda = "13.0"\n', "versoin"),
    ("pk-int", H100 + "\n[packages]\nvllm = 1\n", "vllm"),
    ("pk-banana", H100 + '\n[packages]\nvllm = "banana"\n', "vllm"),
    ("pk-empty", H100 + '\n[packages]\ntorch = ""\n', "torch"),
    ("pk-list", H100 + "\n[packages]\ntorch = []\n", "torch"),
    ("pk-str", H100 + 'packages = "vllm"\n', "packages"),
    ("py-float", H100 + 'python = 3.11\n\n[packages]\nvllm = "0.7.2"\n', "python"),
    ("py-abc", H100 + 'python = "abc"\n\n[packages]\nvllm = "0.7.2"\n', "python"),
    ("many-gpus", _gpu("count = 100000", drop="count"), "count"),
]
for n, text in enumerate(["[driver\n", 'name = "x\n', "= 1\n", "[[gpus]]\nname = \n", "a = 1\na = 2\n",
                          "[driver]\n[driver]\n", "x = [1,\n", "\x00\x01", "a = 1 b = 2\n", "[[gpus]\n",
                          "a = " + "[" * 5000 + "]" * 5000 + "\n", 'a = """\n']):
    HARDWARE.append((f"toml{n}", text, "TOML"))
HARDWARE.append(("latin1", DRIVER + "\n[[gpus]]\nname = \"caf\xe9\"\n", "TOML"))  # written as latin-1 below

FILE_KINDS: List[Tuple[str, str, str]] = [
    ("fifo", FIFO, "not a regular file"), ("dir", DIR, "is a directory"), ("huge", HUGE, "more than"),
    ("missing", "", "does not exist"),
]

HW_COMMANDS = {
    "doctor": ["doctor", "--json", "--hardware"],
    "env": ["env", "--hardware"],
    "plan": ["plan", "--format", "json", "--hardware"],
    "verl": ["verl-overrides", "--hardware"],
}


def hardware_cases() -> List[Case]:
    out = []
    for cmd, argv in HW_COMMANDS.items():
        rows = HARDWARE if cmd in ("doctor", "plan") else HARDWARE[::3]  # every row via doctor and plan
        for id, text, frag in rows:
            out.append(_case(f"hw-{cmd}-{id}", argv + ["{d}/hw.toml"], 2, frag, files={"hw.toml": text}))
        for id, kind, frag in FILE_KINDS:
            files = {"hw.toml": kind} if kind else {}
            out.append(_case(f"hw-{cmd}-{id}", argv + ["{d}/hw.toml"], 2, frag, files=files))
        out.append(_case(f"hw-{cmd}-empty-arg", argv + [""], 2, "names no file"))
        out.append(_case(f"hw-{cmd}-env-fifo", argv[:-1], 2, "not a regular file", env={"COMPAT_HARDWARE": "{d}/hw"},
                         files={"hw": FIFO}))
        out.append(_case(f"hw-{cmd}-env-missing", argv[:-1], 2, "does not exist",
                         env={"COMPAT_HARDWARE": "{d}/nope.toml"}))
    return out


# -- profiles in COMPAT_PROFILE_PATH ---------------------------------------------------------------------------------

def _prof(replace: str = "", add: str = "") -> str:
    text = PROFILE
    if replace:
        old, new = replace.split("=>")
        assert old in text, old
        text = text.replace(old, new)
    return text + add


PROFILES: List[Tuple[str, str, str]] = [
    ("dtypes-str", _prof(add='[refuse]\ndtypes = "bfloat16"\n'), "dtypes"),
    ("dtypes-bad", _prof(add='[refuse]\ndtypes = ["int4"]\n'), "dtypes"),
    ("dtypes-int", _prof(add="[refuse]\ndtypes = [1]\n"), "dtypes"),
    ("refuse-vllm-int", _prof(add="[refuse]\nvllm = 1\n"), "vllm"),
    ("refuse-fp8-bool", _prof(add="[refuse]\nfp8 = true\n"), "fp8"),
    ("dtype-bad", _prof('dtype = "bfloat16"=>dtype = "int8"'), "dtype"),
    ("dtype-int", _prof('dtype = "bfloat16"=>dtype = 16'), "dtype"),
    ("hf-bad", _prof('"sdpa"=>"flash"'), "hf_attn_implementation"),
    ("fp8-str", _prof("fp8 = true=>fp8 = \"false\""), "fp8"),
    ("fp8-int", _prof("fp8 = true=>fp8 = 1"), "fp8"),
    ("fa2-str", _prof(add=""), ""),  # placeholder replaced below
    ("smmin-str", _prof("sm_min = 90=>sm_min = \"90\""), "sm_min"),
    ("smmin-bool", _prof("sm_min = 90=>sm_min = true"), "sm_min"),
    ("smmax-float", _prof("sm_max = 99=>sm_max = 99.5"), "sm_max"),
    ("no-sm", _prof("sm_min = 90\nsm_max = 99\n=>"), "sm_min"),
    ("cpu-str", _prof("[match]\n=>[match]\ncpu = \"yes\"\n"), "cpu"),
    ("name-int", _prof('name = "mine"=>name = 3'), "name"),
    ("no-name", _prof('name = "mine"\n=>'), "lacks name"),
    ("no-settings", 'name = "mine"\n[match]\nsm_min = 90\nsm_max = 99\n', "settings"),
    ("settings-str", 'name = "mine"\nsettings = "x"\n[match]\nsm_min = 90\nsm_max = 99\n', "settings"),
    ("unknown", _prof(add="colour = 1\n"), "colour"),
    ("unknown-settings", _prof("attention = \"sm90\"=>attention = \"sm90\"\ndtypes = 1"), "dtypes"),
    ("env-names-str", _prof(add='[[env]]\nname = "X"\nvalue = "1"\nnames = "RTX"\n'), "names"),
    ("env-mingpus", _prof(add='[[env]]\nname = "X"\nvalue = "1"\nmin_gpus = "2"\n'), "min_gpus"),
    ("env-value-int", _prof(add='[[env]]\nname = "X"\nvalue = 1\n'), "value"),
    ("env-noname", _prof(add='[[env]]\nvalue = "1"\n'), "lacks name"),
    ("env-table", _prof(add='[env]\nname = "X"\n'), "env"),
    ("desc-int", _prof('description = "x"=>description = 1'), "description"),
    ("toml", "name = \n", "TOML"),
    ("fifo", FIFO, "not a regular file"),
    ("huge", HUGE, "more than"),
]
PROFILES[10] = ("fa2-str", _prof("fp8 = true=>fp8 = true\nflash_attention_2 = \"yes\""), "flash_attention_2")


def profile_cases() -> List[Case]:
    out = []
    for cmd in ("doctor", "env"):
        for id, text, frag in PROFILES:
            argv = ["doctor", "--json"] if cmd == "doctor" else ["env"]
            out.append(_case(f"prof-{cmd}-{id}", argv + ["--hardware", "{d}/hw.toml"], 2, frag,
                             env={"COMPAT_PROFILE_PATH": "{d}/p"}, files={"hw.toml": H100, "p/x.toml": text}))
    out += [
        _case("prof-path-missing", ["doctor", "--hardware", "{d}/hw.toml"], 2, "not a directory",
              env={"COMPAT_PROFILE_PATH": "{d}/nope"}, files={"hw.toml": H100}),
        _case("prof-path-fifo", ["doctor", "--hardware", "{d}/hw.toml"], 2, "not a directory",
              env={"COMPAT_PROFILE_PATH": "{d}/f"}, files={"hw.toml": H100, "f": FIFO}),
        _case("prof-path-file", ["doctor", "--hardware", "{d}/hw.toml"], 2, "not a directory",
              env={"COMPAT_PROFILE_PATH": "{d}/hw.toml"}, files={"hw.toml": H100}),
        _case("prof-unknown-name", ["doctor", "--hardware", "{d}/hw.toml"], 2, "unknown profile",
              env={"COMPAT_PROFILE": "nope"}, files={"hw.toml": H100}),
        _case("prof-unknown-flag", ["doctor", "--hardware", "{d}/hw.toml", "--profile", "nope"], 2,
              "unknown profile", files={"hw.toml": H100}),
    ]
    return out


# -- knobs -------------------------------------------------------------------------------------------------------------

BAD_KNOBS: List[Tuple[str, str, str]] = [
    ("COMPAT_FP8", v, "COMPAT_FP8") for v in ("weird", "2", "int4", "block2", "yes please", "-1", "on!")
] + [
    ("COMPAT_HIDDEN_STATES", v, "COMPAT_HIDDEN_STATES") for v in ("maybe", "2", "all_prompts", "first", "-")
] + [
    ("COMPAT_HF_DTYPE", v, "COMPAT_HF_DTYPE") for v in ("maybe", "2", "float16", "none!")
] + [
    ("COMPAT_DISABLE_PATCHES", v, "unknown patch id") for v in ("nope", "vllm07.typo", "al", "vllm07,nope",
                                                                "ALL,x", "*")
]

# knobs a command does not consult when the machine is simulated: garbage there must not change the answer
UNRELATED = [("COMPAT_PROBE_TIMEOUT", v) for v in ("nan", "inf", "-1", "0", "x", "1e999", "")] + [
    ("COMPAT_NO_CACHE", v) for v in ("maybe", "2")] + [("COMPAT_FORCE_NVML", v) for v in ("maybe", "yes!")] + [
    ("COMPAT_DEEP_TIMEOUT", v) for v in ("nan", "-5")] + [("COMPAT_DEEP_MULTI_TIMEOUT", "0")] + [
    ("COMPAT_RAY_TIMEOUT", v) for v in ("inf", "x")] + [("COMPAT_DEBUG", "maybe")] + [
    ("COMPAT_HIDDEN_STATES_DECODE_LIMIT", v) for v in ("-1", "x")] + [("COMPAT_HIDDEN_STATES_PROMPT", "first")]

GOOD_KNOBS: List[Tuple[str, str]] = [
    ("COMPAT_FP8", v) for v in ("0", "off", "NO", "false", "")] + [
    ("COMPAT_HIDDEN_STATES", v) for v in ("0", "Off", "no")] + [("COMPAT_NO_CACHE", v) for v in ("true", "YES", "1")]


def knob_cases() -> List[Case]:
    out: List[Case] = []
    hw = {"hw.toml": H100_VLLM}
    for cmd, argv in (("doctor", ["doctor", "--json", "--hardware", "{d}/hw.toml"]),
                      ("env", ["env", "--hardware", "{d}/hw.toml"]), ("patches", ["patches", "--vllm", "0.11.0"])):
        base = _case(f"knob-{cmd}-baseline", argv, 0 if cmd != "doctor" else 1, files=hw)
        for n, (var, value, frag) in enumerate(BAD_KNOBS):
            out.append(_case(f"knob-{cmd}-bad{n}-{var}", argv, 2, frag, env={var: value}, files=hw))
        for n, (var, value) in enumerate(UNRELATED):
            out.append(_case(f"knob-{cmd}-unrelated{n}-{var}", argv, -1, env={var: value}, files=hw, same_as=base))
        if cmd == "patches":
            for n, (var, value) in enumerate(GOOD_KNOBS):
                out.append(_case(f"knob-{cmd}-off{n}-{var}", argv, -1, env={var: value}, files=hw, same_as=base))
    out.append(_case("knob-probe-timeout-used", ["doctor", "--json"], 2, "COMPAT_PROBE_TIMEOUT",
                     env={"COMPAT_PROBE_TIMEOUT": "nan", "COMPAT_FORCE_NVML": "1"}))
    return out


# -- command-line arguments --------------------------------------------------------------------------------------------

def argv_cases() -> List[Case]:
    rows = [
        (["doctor", "--bogus"], "unrecognized"), (["doctor", "--dtype", "int8"], "invalid choice"),
        (["doctor", "--hardware"], "expected one argument"), (["patches", "--vllm"], "expected one argument"),
        (["patches", "--vllm", "x.y"], "not a valid version"), (["patches", "--vllm", ""], "not a valid version"),
        (["plan", "vllm==notaversion"], "not a valid version"), (["plan", "--format", "xml"], "invalid choice"),
        (["install", "--bogus"], "unrecognized"), (["env", "--shell", "zsh"], "invalid choice"),
        (["env", "--bogus"], "unrecognized"), (["verl-overrides", "--bogus"], "unrecognized"),
        (["doctor", "--profile", ""], ""), (["plan", "torch==2.5"], ""),
    ]
    out = [_case(f"argv{n}", argv, 2, frag) for n, (argv, frag) in enumerate(rows)]
    out.append(_case("argv-unknown-command", ["frobnicate"], 2, ""))
    return out


def all_cases() -> List[Case]:
    cases = hardware_cases() + profile_cases() + knob_cases() + argv_cases()
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    return cases
