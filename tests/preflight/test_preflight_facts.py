"""The first-release search skips harvested files that do not mention what it looks for (a speed-up of the
slowest `plan --model` path); the skip must never change the answer."""

import json
from pathlib import Path

import pytest

import compat.preflight.facts as facts
from compat.preflight.checks import _kernels

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "tests" / "fixtures" / "models"
HARVEST = ROOT / "compat" / "data" / "harvested"
ARCHS = sorted({a for p in MODELS.glob("*/config.json") for a in json.loads(p.read_text())["architectures"]}
               | {"NoSuchModelForCausalLM"})
METHODS = ["awq", "gptq", "fp8", "compressed-tensors", "no-such-method"]


def _fresh(monkeypatch):
    monkeypatch.setattr(facts, "_cache", {})


@pytest.mark.parametrize("arch", ARCHS)
def test_first_release_of_an_architecture_is_the_same_with_the_text_prefilter(monkeypatch, arch):
    def knows(r):
        return r.architectures is not None and arch in r.architectures

    _fresh(monkeypatch)
    full = facts.first_release(knows, HARVEST)
    _fresh(monkeypatch)
    assert facts.first_release(knows, HARVEST, mentions=(arch,)) == full


@pytest.mark.parametrize("method", METHODS)
def test_first_release_of_a_quantization_method_is_the_same_with_the_text_prefilter(monkeypatch, method):
    kernels = _kernels(method)

    def has(r):
        return any(k in r.quantization for k in kernels)

    _fresh(monkeypatch)
    full = facts.first_release(has, HARVEST)
    _fresh(monkeypatch)
    assert facts.first_release(has, HARVEST, mentions=kernels) == full


def test_the_prefilter_spares_parsing(monkeypatch):
    """A name no release has: with the prefilter, no harvested file is parsed at all."""
    _fresh(monkeypatch)
    assert facts.first_release(lambda r: False, HARVEST, mentions=("NoSuchModelForCausalLM",)) is None
    assert facts._cache == {}
    assert facts.first_release(lambda r: False, HARVEST) is None
    assert len(facts._cache) == len(facts.releases(HARVEST))
