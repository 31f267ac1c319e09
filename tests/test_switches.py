"""compat.switches: one vocabulary for every knob, errors raised where a knob is read (issue 14)."""

from __future__ import annotations

import math

import pytest

from compat import hidden_states
from compat.errors import CompatError
from compat.switches import Switches


@pytest.mark.parametrize("raw,on", [
    ("1", True), ("TRUE", True), ("Yes", True), ("on", True), (" on ", True),
    ("0", False), ("false", False), ("NO", False), ("Off", False), ("", False),
])
def test_boolean_vocabulary_in_any_case(raw, on):
    assert Switches.parse({"COMPAT_NO_CACHE": raw}).no_cache is on
    assert Switches.parse({"COMPAT_FORCE_NVML": raw}).force_nvml is on
    assert Switches.parse({"COMPAT_HIDDEN_STATES": raw}).hidden_states is on
    assert (Switches.parse({"COMPAT_FP8": raw}).fp8 == "block") is on


@pytest.mark.parametrize("knob,var,raw", [
    ("no_cache", "COMPAT_NO_CACHE", "maybe"), ("fp8", "COMPAT_FP8", "weird"), ("fp8", "COMPAT_FP8", "int4"),
    ("hidden_states", "COMPAT_HIDDEN_STATES", "2"), ("probe_timeout", "COMPAT_PROBE_TIMEOUT", "nan"),
    ("probe_timeout", "COMPAT_PROBE_TIMEOUT", "inf"), ("probe_timeout", "COMPAT_PROBE_TIMEOUT", "-1"),
    ("probe_timeout", "COMPAT_PROBE_TIMEOUT", "0"), ("probe_timeout", "COMPAT_PROBE_TIMEOUT", "1e999"),
    ("hidden_states_decode_limit", "COMPAT_HIDDEN_STATES_DECODE_LIMIT", "-3"),
    ("hidden_states_decode_limit", "COMPAT_HIDDEN_STATES_DECODE_LIMIT", "1.5"),
    ("hidden_states_all_prompt", "COMPAT_HIDDEN_STATES_PROMPT", "first"),
    ("deep_timeout", "COMPAT_DEEP_TIMEOUT", "nan"), ("deep_multi_timeout", "COMPAT_DEEP_MULTI_TIMEOUT", "-1"),
    ("ray_timeout", "COMPAT_RAY_TIMEOUT", "x"), ("debug", "COMPAT_DEBUG", "maybe"),
])
def test_a_bad_knob_is_an_error_naming_it_when_read_and_only_then(knob, var, raw):
    sw = Switches.parse({var: raw})
    with pytest.raises(CompatError, match=var):
        getattr(sw, knob)
    assert Switches.parse({var: raw}).profile is None  # the other knobs still read fine


def test_keywords_win_over_the_environment_and_are_checked_the_same_way():
    assert Switches.parse({"COMPAT_FP8": "0"}, fp8="block").fp8 == "block"
    assert Switches.parse({"COMPAT_FP8": "block"}, fp8=False).fp8 is None
    with pytest.raises(CompatError, match="fp8='no-such'"):
        Switches.parse({}, fp8="no-such").fp8
    with pytest.raises(CompatError, match="unknown switch"):
        Switches.parse({}, disable=True)
    with pytest.raises(CompatError, match="names no file"):
        Switches.parse({}, hardware="").hardware
    assert Switches.parse({"COMPAT_HARDWARE": ""}).hardware is None  # an empty variable is an unset one


def test_probe_timeout_is_finite_and_positive():
    assert Switches.parse({}).probe_timeout == 10.0
    assert Switches.parse({"COMPAT_PROBE_TIMEOUT": "2.5"}).probe_timeout == 2.5
    assert math.isfinite(Switches.parse({"COMPAT_PROBE_TIMEOUT": "1e300"}).probe_timeout)


def test_disable_patches_is_checked_against_the_known_ids():
    known = {"vllm07": ("vllm07.a", "vllm07.b")}
    assert Switches.parse({"COMPAT_DISABLE_PATCHES": "ALL"}).disabled(known) == {"all"}
    assert Switches.parse({"COMPAT_DISABLE_PATCHES": "VLLM07.a, vllm07"}).disabled(known) == {"vllm07.a", "vllm07"}
    with pytest.raises(CompatError, match=r"unknown patch id or set name vllm07\.c; valid: all, vllm07 "):
        Switches.parse({"COMPAT_DISABLE_PATCHES": "vllm07.c"}).disabled(known)


def test_hidden_states_settings_read_through_switches():
    s = hidden_states.settings({"COMPAT_HIDDEN_STATES": "ALL_PROMPT", "COMPAT_HIDDEN_STATES_DECODE_LIMIT": "4"})
    assert (s.enabled, s.all_prompt, s.decode_limit) == (True, True, 4)
    s = hidden_states.settings({"COMPAT_HIDDEN_STATES": "yes", "COMPAT_HIDDEN_STATES_PROMPT": "all"})
    assert (s.enabled, s.all_prompt, s.decode_limit) == (True, True, None)
    with pytest.raises(CompatError, match="COMPAT_HIDDEN_STATES="):
        hidden_states.settings({"COMPAT_HIDDEN_STATES": "sometimes"})


def test_patches_and_doctor_read_fp8_alike(monkeypatch):
    """COMPAT_FP8=no is off for every command; COMPAT_FP8=weird is an error for every command (was: on for one)."""
    from compat.patches import engine
    from compat.patches.sets import vllm_fp8

    monkeypatch.setenv("COMPAT_FP8", "no")
    assert not engine.switch_on(vllm_fp8.PATCH_SET)
    monkeypatch.setenv("COMPAT_FP8", "weird")
    with pytest.raises(CompatError, match="COMPAT_FP8='weird'"):
        engine.switch_on(vllm_fp8.PATCH_SET)
