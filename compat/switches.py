"""Switches: every COMPAT_* knob and setup() keyword, parsed and validated in one place.

`Switches.parse(environ, **kwargs)` reads each knob once (a keyword wins over the variable, so spawned workers that
only see the environment agree with the process that called setup()). A malformed knob does not fail the parse: the
error is kept and raised (CompatError, one line naming the knob, the value and a fix) the moment that knob is read, so
a garbage knob that a command never consults cannot change its answer, and one that it does consult is never
silently read as something else. Imports nothing beyond the standard library and compat.errors.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, Iterable, Mapping, Optional, Tuple

from .errors import CompatError

TRUE = ("1", "true", "yes", "on")
FALSE = ("", "0", "false", "no", "off")
FP8_MODES = ("block",)
HIDDEN_PROMPT = ("last", "all")
PROBE_TIMEOUT_S = 10.0
DEEP_TIMEOUT_S = 300.0
DEEP_MULTI_TIMEOUT_S = 120.0
RAY_TIMEOUT_S = 180.0

# knob -> environment variable (the documented names; README "Knobs")
ENV = {
    "profile": "COMPAT_PROFILE",
    "profile_path": "COMPAT_PROFILE_PATH",
    "hardware": "COMPAT_HARDWARE",
    "disable_patches": "COMPAT_DISABLE_PATCHES",
    "hidden_states": "COMPAT_HIDDEN_STATES",
    "hidden_states_prompt": "COMPAT_HIDDEN_STATES_PROMPT",
    "hidden_states_decode_limit": "COMPAT_HIDDEN_STATES_DECODE_LIMIT",
    "fp8": "COMPAT_FP8",
    "hf_dtype": "COMPAT_HF_DTYPE",
    "no_cache": "COMPAT_NO_CACHE",
    "probe_timeout": "COMPAT_PROBE_TIMEOUT",
    "deep_timeout": "COMPAT_DEEP_TIMEOUT",
    "deep_multi_timeout": "COMPAT_DEEP_MULTI_TIMEOUT",
    "ray_timeout": "COMPAT_RAY_TIMEOUT",
    "debug": "COMPAT_DEBUG",
    "force_nvml": "COMPAT_FORCE_NVML",
    "autoload": "COMPAT_AUTOLOAD",
}
OPT_IN = ("hidden_states", "fp8", "hf_dtype")  # patch-set switches setup() takes as keywords


def _word(raw: object) -> str:
    return str(raw).strip().lower()


def parse_bool(name: str, raw: object) -> bool:
    """1/0, true/false, yes/no, on/off in any case (and Python bools); anything else is a CompatError."""
    if isinstance(raw, bool):
        return raw
    w = _word(raw)
    if w in TRUE:
        return True
    if w in FALSE:
        return False
    raise CompatError(f"{name}={raw!r} is not a yes/no value; use 1/0, true/false, yes/no or on/off")


def parse_fp8(name: str, raw: object) -> Optional[str]:
    """None (off) or "block"; a yes-word means the one mode compat has."""
    if raw is None or raw is False:
        return None
    if raw is True:
        return "block"
    w = _word(raw)
    if w in FALSE:
        return None
    if w in TRUE or w in FP8_MODES:
        return "block" if w in TRUE else w
    raise CompatError(f"{name}={raw!r} is not an FP8 mode; use fp8='block' (COMPAT_FP8=block or 1/on), "
                      "or 0/off to leave FP8 off")


def parse_hidden(name: str, raw: object) -> Tuple[bool, bool]:
    """(enabled, every prompt position): yes-words or `last` -> last prompt position; `all`/`all_prompt` -> all."""
    if isinstance(raw, bool):
        return raw, False
    w = _word(raw)
    if w in FALSE:
        return False, False
    if w in TRUE or w == "last":
        return True, False
    if w in ("all", "all_prompt"):
        return True, True
    raise CompatError(f"{name}={raw!r} is not a hidden-states mode; use 1 (last prompt position), all_prompt, or 0")


def parse_positive_seconds(name: str, raw: object) -> float:
    try:
        value = float(str(raw).strip())
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise CompatError(f"{name}={raw!r} must be a positive, finite number of seconds (e.g. 10); fix or unset it")
    return value


def parse_count(name: str, raw: object) -> Optional[int]:
    """A whole number >= 0; 0 means no limit (None)."""
    text = str(raw).strip()
    if isinstance(raw, bool) or not (text.isascii() and text.isdigit()):
        raise CompatError(f"{name}={raw!r} must be a whole number >= 0 (0 keeps every row); fix or unset it")
    return int(text) or None


def parse_tokens(raw: object) -> FrozenSet[str]:
    """Patch ids / set names, comma or space separated, lower-cased (`ALL` is `all`)."""
    if raw is None or raw is False:
        return frozenset()
    items: Iterable[Any] = raw.replace(",", " ").split() if isinstance(raw, str) else raw  # type: ignore[assignment]
    return frozenset(str(i).strip().lower() for i in items if str(i).strip())


@dataclass(frozen=True)
class Switches:
    """Every knob as one value. Read a knob through its property: a malformed one raises CompatError there."""

    values: Mapping[str, Any] = field(default_factory=dict)
    problems: Mapping[str, str] = field(default_factory=dict)  # knob -> the one-line error
    given: FrozenSet[str] = frozenset()  # knobs the caller passed as keywords (setup(fp8=...)), not from env

    @classmethod
    def parse(cls, environ: Optional[Mapping[str, str]] = None, **kwargs: Any) -> Switches:
        env = os.environ if environ is None else environ
        values: Dict[str, Any] = {}
        problems: Dict[str, str] = {}
        given = frozenset(k for k, v in kwargs.items() if v is not None)
        unknown = sorted(set(kwargs) - set(ENV))
        if unknown:
            raise CompatError(f"unknown switch(es) {', '.join(unknown)}; known: {', '.join(ENV)}")
        for knob, var in ENV.items():
            raw = kwargs.get(knob)
            name = knob if raw is not None else var
            if raw is None:
                raw = env.get(var)
            try:
                values[knob] = _PARSERS[knob](name, raw)
            except CompatError as exc:
                problems[knob] = str(exc)
                values[knob] = None
        return cls(values, problems, given)

    def get(self, knob: str) -> Any:
        if knob in self.problems:
            raise CompatError(self.problems[knob])
        return self.values.get(knob)

    # -- typed views, one per knob --------------------------------------------------------------------------

    @property
    def profile(self) -> Optional[str]:
        return self.get("profile")  # type: ignore[no-any-return]

    @property
    def profile_path(self) -> Tuple[str, ...]:
        return self.get("profile_path") or ()

    @property
    def hardware(self) -> Optional[str]:
        return self.get("hardware")  # type: ignore[no-any-return]

    @property
    def fp8(self) -> Optional[str]:
        return self.get("fp8")  # type: ignore[no-any-return]

    @property
    def hf_dtype(self) -> Optional[bool]:
        """bfloat16 loading in transformers becomes float16: None lets the profile decide (on where it refuses
        bfloat16); False is a decision to keep bfloat16."""
        return self.get("hf_dtype")  # type: ignore[no-any-return]

    @property
    def hidden_states(self) -> bool:
        return bool(self.get("hidden_states")[0])

    @property
    def hidden_states_all_prompt(self) -> bool:
        prompt = self.get("hidden_states_prompt")
        return bool(self.get("hidden_states")[1]) if prompt is None else prompt == "all"

    @property
    def hidden_states_decode_limit(self) -> Optional[int]:
        return self.get("hidden_states_decode_limit")  # type: ignore[no-any-return]

    @property
    def no_cache(self) -> bool:
        return bool(self.get("no_cache"))

    @property
    def force_nvml(self) -> bool:
        return bool(self.get("force_nvml"))

    @property
    def autoload(self) -> bool:
        return bool(self.get("autoload"))

    @property
    def probe_timeout(self) -> float:
        value = self.get("probe_timeout")
        return PROBE_TIMEOUT_S if value is None else float(value)

    @property
    def deep_timeout(self) -> float:
        value = self.get("deep_timeout")
        return DEEP_TIMEOUT_S if value is None else float(value)

    @property
    def deep_multi_timeout(self) -> float:
        value = self.get("deep_multi_timeout")
        return DEEP_MULTI_TIMEOUT_S if value is None else float(value)

    @property
    def ray_timeout(self) -> float:
        value = self.get("ray_timeout")
        return RAY_TIMEOUT_S if value is None else float(value)

    @property
    def debug(self) -> bool:
        return bool(self.get("debug"))

    def disabled(self, known: Mapping[str, Iterable[str]]) -> FrozenSet[str]:
        """Kill-switch tokens checked against `known` (set name -> its patch ids); CompatError on an unknown one."""
        tokens: FrozenSet[str] = self.get("disable_patches") or frozenset()
        valid = {"all"} | {n.lower() for n in known} | {i.lower() for ids in known.values() for i in ids}
        bad = sorted(tokens - valid)
        if bad:
            listing = ", ".join(["all", *(f"{n} ({', '.join(ids)})" for n, ids in known.items())])
            raise CompatError(f"{ENV['disable_patches']}: unknown patch id or set name {', '.join(bad)}; "
                              f"valid: {listing}")
        return tokens

    def opt_in(self, switch: str, environ: Optional[Mapping[str, str]] = None) -> bool:
        """Whether the patch-set switch `switch` is on: the two compat knows, or any other as a yes/no variable."""
        if switch == "fp8":
            return self.fp8 is not None
        if switch == "hidden_states":
            return self.hidden_states
        if switch == "hf_dtype":
            return bool(self.hf_dtype)
        env = os.environ if environ is None else environ
        var = "COMPAT_" + switch.upper()
        return parse_bool(var, env.get(var, ""))

    def opt_ins(self) -> Dict[str, Any]:
        """The patch-set switches that are on, as the engine takes them: {"fp8": "block", "hidden_states": True}."""
        out: Dict[str, Any] = {}
        if self.fp8 is not None:
            out["fp8"] = self.fp8
        if self.hidden_states:
            out["hidden_states"] = True
        if self.hf_dtype is not None:
            out["hf_dtype"] = self.hf_dtype  # False too: "off" is a decision the profile must not override
        return out


def _opt_str(name: str, raw: object) -> Optional[str]:
    if raw is None:
        return None
    text = str(raw).strip()
    if not text and not name.startswith("COMPAT_"):  # --profile '' / setup(profile=''): a mistake, not "choose"
        raise CompatError(f"{name}={raw!r} names nothing; give a profile name, or leave it out to choose by GPU")
    return text or None


def _paths(name: str, raw: object) -> Tuple[str, ...]:
    if raw is None:
        return ()
    parts = raw if isinstance(raw, (list, tuple)) else str(raw).split(os.pathsep)
    return tuple(str(p) for p in parts if str(p).strip())


def _hardware(name: str, raw: object) -> Optional[str]:
    if raw is None:
        return None
    text = str(raw)
    if not text.strip():
        if name == ENV["hardware"]:
            return None  # an empty variable is an unset one
        raise CompatError(f"{name}={raw!r} names no file; give the path of a hardware TOML file, or leave it out")
    return text


def _maybe(parse: Any) -> Any:
    def run(name: str, raw: object) -> Any:
        return None if raw is None or (isinstance(raw, str) and not raw.strip()) else parse(name, raw)

    return run


def _prompt(name: str, raw: object) -> Optional[str]:
    w = _word(raw)
    if w in ("all", "all_prompt"):
        return "all"
    if w == "last":
        return "last"
    raise CompatError(f"{name}={raw!r} is not a prompt mode; use last or all")


_PARSERS: Dict[str, Any] = {
    "profile": _opt_str,
    "profile_path": _paths,
    "hardware": _hardware,
    "disable_patches": lambda name, raw: parse_tokens(raw),
    "hidden_states": lambda name, raw: (False, False) if raw is None else parse_hidden(name, raw),
    "hidden_states_prompt": _maybe(_prompt),
    "hidden_states_decode_limit": _maybe(parse_count),
    "fp8": parse_fp8,
    "hf_dtype": _maybe(parse_bool),
    "no_cache": lambda name, raw: False if raw is None else parse_bool(name, raw),
    "probe_timeout": _maybe(parse_positive_seconds),
    "deep_timeout": _maybe(parse_positive_seconds),
    "deep_multi_timeout": _maybe(parse_positive_seconds),
    "ray_timeout": _maybe(parse_positive_seconds),
    "debug": lambda name, raw: False if raw is None else parse_bool(name, raw),
    "force_nvml": lambda name, raw: False if raw is None else parse_bool(name, raw),
    "autoload": lambda name, raw: False if raw is None else parse_bool(name, raw),
}


def current(environ: Optional[Mapping[str, str]] = None) -> Switches:
    """The switches as this process's environment states them (workers, the patch engine, CLIs)."""
    return Switches.parse(environ)
