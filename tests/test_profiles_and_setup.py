"""Profiles, resolution, env export and setup()."""

from __future__ import annotations

import os
import threading

import pytest

import compat
from compat import profiles
from compat.apply import env as envmod
from compat.errors import CompatError
from helpers import FIXTURES, hardware_fixtures

EXPECTED_PROFILE = {
    "a100-mig": "a100", "a100-sxm4": "a100", "b200": "blackwell", "cpu-only": "cpu", "h100-sxm": "hopper",
    "l40s": "ada", "mixed-a100-v100": "v100", "rtx3090": "ampere", "rtx4090-old-driver": "ada",
    "rtx5090": "blackwell", "t4-driver470": "turing", "v100-sxm2": "v100",
}


@pytest.mark.parametrize("path", hardware_fixtures(), ids=lambda p: p.stem)
def test_every_fixture_gets_a_sensible_profile(path):
    rep = compat.setup(hardware=str(path), patches=False)
    d = rep.as_dict()
    if path.stem in EXPECTED_PROFILE:
        assert d["profile"]["name"] == EXPECTED_PROFILE[path.stem]
    sms = [g.sm for g in rep.environment.hardware.gpus]
    if sms and min(sms) < 80:
        assert d["profile"]["dtype"] == "float16"
        assert d["profile"]["hf_attn_implementation"] != "flash_attention_2"
    elif sms:
        assert d["profile"]["dtype"] == "bfloat16"
    assert d["profile"]["fp8"] == bool(sms and min(sms) >= 89)
    assert set(d) >= {"hardware", "software", "profile", "env", "patches", "findings"}


def test_selection_rules():
    assert profiles.select_profile([])[0].name == "cpu"
    p, f = profiles.select_profile([130])
    assert p.name == "blackwell" and f[0].id == "gpu-unknown-newer" and f[0].severity == "warning"
    p, f = profiles.select_profile([60])
    assert f[0].id == "gpu-unsupported" and f[0].severity == "error"
    p, f = profiles.select_profile([80, 70])
    assert p.name == "v100" and f[0].id == "mixed-gpus"


def test_overrides_env_and_argument(monkeypatch):
    monkeypatch.setenv("COMPAT_PROFILE", "turing")
    assert profiles.select_profile([90])[0].name == "turing"
    assert profiles.select_profile([90], requested="a100")[0].name == "a100"
    with pytest.raises(CompatError, match="unknown profile 'nope'.*known profiles"):
        profiles.select_profile([90], requested="nope")


def test_user_profile_dir_overrides_shipped(monkeypatch, tmp_path):
    (tmp_path / "hopper.toml").write_text(
        'name = "hopper"\n[match]\nsm_min = 90\nsm_max = 99\n[settings]\ndtype = "float16"\n'
        'hf_attn_implementation = "eager"\nattention = "sm90"\n')
    monkeypatch.setenv("COMPAT_PROFILE_PATH", str(tmp_path))
    rep = compat.setup(hardware=str(FIXTURES / "h100-sxm.toml"), patches=False)
    assert rep.resolved.dtype == "float16" and rep.resolved.hf_attn_implementation == "eager"


@pytest.mark.parametrize("content,match", [
    ("name = \"x\"\n[settings\n", "not valid TOML"),
    ("name = \"x\"\n[match]\nsm_min = 1\nsm_max = 2\n", "lacks `settings`"),
    ("name = \"x\"\n[match]\nsm_min=1\nsm_max=2\n[settings]\ndtype='int8'\nhf_attn_implementation='sdpa'\n"
     "attention='sm80'\n", "dtype = 'int8' is not one of"),
    ("name = \"x\"\n[match]\nsm_min=1\nsm_max=2\n[settings]\ndtype='float16'\nhf_attn_implementation='sdpa'\n"
     "attention='sm80'\n[refuse]\ndtypes='bfloat16'\n", r"dtypes = 'bfloat16' is not a list of strings"),
    ("name = \"x\"\n[match]\nsm_min=1\nsm_max=2\n[settings]\ndtype='float16'\nhf_attn_implementation='sdpa'\n"
     "attention='sm80'\nfp8='false'\n", r"fp8 = 'false' is not true or false"),
])
def test_malformed_profiles_are_clear_errors(monkeypatch, tmp_path, content, match):
    (tmp_path / "bad.toml").write_text(content)
    monkeypatch.setenv("COMPAT_PROFILE_PATH", str(tmp_path))
    with pytest.raises(CompatError, match=match):
        profiles.load_profiles()


def test_bad_profile_path(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPAT_PROFILE_PATH", str(tmp_path / "missing"))
    with pytest.raises(CompatError, match="not a directory"):
        profiles.load_profiles()


def test_env_export_never_overwrites_the_user(monkeypatch):
    monkeypatch.setenv("NCCL_P2P_DISABLE", "0")
    rep = compat.setup(hardware=str(FIXTURES / "rtx4090-old-driver.toml"), patches=False)
    assert os.environ["NCCL_P2P_DISABLE"] == "0"
    assert os.environ["NCCL_IB_DISABLE"] == "1"
    assert ("NCCL_P2P_DISABLE", "0", "1") in rep.env_kept
    assert any(f.id == "env-conflict" for f in rep.findings)
    compat.revert()
    assert "NCCL_IB_DISABLE" not in os.environ and os.environ["NCCL_P2P_DISABLE"] == "0"


def test_p2p_rule_only_for_old_drivers():
    rep = compat.setup(hardware=str(FIXTURES / "l40s.toml"), patches=False)
    assert "NCCL_P2P_DISABLE" not in dict(rep.env_set)


def test_secrets_redacted():
    assert envmod.redact("HF_TOKEN", "hf_abc") == "***" and envmod.redact("WANDB_API_KEY", "k") == "***"
    assert envmod.redact("NCCL_P2P_DISABLE", "1") == "1"


def test_setup_idempotent_under_16_threads():
    results = []
    barrier = threading.Barrier(16)

    def work():
        barrier.wait()
        results.append(compat.setup(hardware=str(FIXTURES / "h100-sxm.toml"), patches=False))

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 16 and all(r is results[0] for r in results)


def test_strict_raises_on_errors():
    with pytest.raises(CompatError, match="older than sm70"):
        compat.setup(hardware=str(FIXTURES / "p100.toml"), strict=True, patches=False)


def test_kwargs_for_vllm_and_hf():
    compat.setup(hardware=str(FIXTURES / "v100-sxm2.toml"), patches=False)
    assert compat.vllm_kwargs()["dtype"] == "float16"
    hf = compat.hf_kwargs()
    assert hf["attn_implementation"] == "sdpa" and "float16" in hf.values()
    compat.setup(hardware=str(FIXTURES / "h100-vllm0110.toml"), patches=False)
    hf = compat.hf_kwargs()
    assert hf == {"dtype": "bfloat16", "attn_implementation": "flash_attention_2"}  # flash-attn installed, tf 4.57
    assert compat.vllm_kwargs(max_model_len=4096) == {"dtype": "bfloat16", "max_model_len": 4096}


def test_bf16_below_sm80_is_an_error():
    rep = compat.setup(hardware=str(FIXTURES / "t4-driver470.toml"), dtype="bfloat16", patches=False)
    assert any(f.id == "dtype-unsupported" and f.severity == "error" for f in rep.findings)


def test_fp8_refused_below_sm89():
    rep = compat.setup(hardware=str(FIXTURES / "a100-sxm4.toml"), fp8="block", patches=False)
    assert any(f.id == "fp8-unsupported" and f.severity == "error" for f in rep.findings)
    assert rep.resolved.fp8 is False


def test_bad_fp8_value():
    with pytest.raises(CompatError, match="fp8='block'"):
        compat.setup(fp8="int4", patches=False)


def test_bad_refuse_specifier_is_a_clear_error(monkeypatch, tmp_path):
    (tmp_path / "hopper.toml").write_text(
        'name = "hopper"\n[match]\nsm_min = 90\nsm_max = 99\n[settings]\ndtype = "bfloat16"\n'
        'hf_attn_implementation = "sdpa"\nattention = "sm90"\n[refuse]\nvllm = "not a spec"\n')
    monkeypatch.setenv("COMPAT_PROFILE_PATH", str(tmp_path))
    fx = tmp_path.parent / f"{tmp_path.name}-fx.toml"
    fx.write_text((FIXTURES / "h100-sxm.toml").read_text() + '\n[packages]\nvllm = "0.11.0"\n')
    rep = compat.setup(hardware=str(fx), patches=False)  # setup() itself does not run doctor's checks
    with pytest.raises(CompatError, match="refuse.vllm.*not a valid version specifier"):
        rep.findings


def test_revert_removes_the_switches_setup_exported():
    compat.setup(hardware=str(FIXTURES / "h100-sxm.toml"), hidden_states=True, patches=False)
    assert os.environ["COMPAT_HIDDEN_STATES"] == "1"
    compat.revert()
    assert "COMPAT_HIDDEN_STATES" not in os.environ
    assert dict(compat.setup(hardware=str(FIXTURES / "h100-sxm.toml"), patches=False).switches) == {}


def test_setup_sees_changed_visibility(monkeypatch):
    hw = str(FIXTURES / "v100-sxm2.toml")
    assert len(compat.setup(hardware=hw, patches=False).environment.hardware.gpus) == 8
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "none")
    assert compat.setup(hardware=hw, patches=False).environment.hardware.gpus == ()


def test_setup_does_not_judge_its_own_exports(tmp_path):
    from helpers import with_packages

    rep = compat.setup(hardware=str(with_packages(tmp_path, "v100-sxm2", vllm="0.8.2")), patches=False)
    assert dict(rep.env_set)["VLLM_ATTENTION_BACKEND"] == "XFORMERS"
    assert not [f for f in rep.findings if f.id.startswith("attention-")], rep.findings


def test_flash_attention_2_only_when_the_installed_flash_attn_fits(tmp_path):
    from helpers import with_packages

    ok = with_packages(tmp_path, "a100-sxm4", torch="2.4.0+cu121", flash_attn="2.6.3")
    assert compat.setup(hardware=str(ok), patches=False).resolved.hf_attn_implementation == "flash_attention_2"
    compat.revert()
    other = tmp_path / "other"
    other.mkdir()
    bad = with_packages(other, "a100-sxm4", torch="2.5.1+cu124", flash_attn="2.6.3+cu123torch2.4cxx11abiFALSE")
    rep = compat.setup(hardware=str(bad), patches=False)
    assert rep.resolved.hf_attn_implementation == "sdpa"  # what hf_kwargs() hands the trainer
    assert any(f.id == "flash-attn-torch-mismatch" for f in rep.findings)


@pytest.mark.parametrize("extra,match", [
    ('[[env]]\nname = "X"\nvalue = "1"\nnames = "RTX 4090"\n', "list of strings"),
    ('[[env]]\nname = "X"\nvalue = "1"\nmin_gpus = "x"\n', "min_gpus = 'x' is not a whole number"),
])
def test_profile_field_types_checked(monkeypatch, tmp_path, extra, match):
    (tmp_path / "p.toml").write_text('name = "p"\n[match]\nsm_min = 90\nsm_max = 99\n[settings]\ndtype = "bfloat16"\n'
                                     'hf_attn_implementation = "sdpa"\nattention = "sm90"\n' + extra)
    monkeypatch.setenv("COMPAT_PROFILE_PATH", str(tmp_path))
    with pytest.raises(CompatError, match=match):
        profiles.load_profiles()
