"""`python -m compat env`: exports parsed back by the real shell, quoting, conflicts, secrets, bad input."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hardware"

V100_VLLM072 = """
[driver]
version = "535.104.05"
cuda = "12.2"
[[gpus]]
name = "Tesla V100-SXM2-32GB"
compute_capability = "7.0"
memory_mib = 32768
count = 8
[packages]
torch = "2.5.1+cu124"
vllm = "0.7.2"
transformers = "4.49.0"
"""


@pytest.fixture(autouse=True)
def _no_compat_env(monkeypatch):
    for var in ("COMPAT_HARDWARE", "COMPAT_AUTOLOAD", "COMPAT_RAY_EXPORTED"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def v100(tmp_path):
    p = tmp_path / "v100-vllm072.toml"
    p.write_text(V100_VLLM072)
    return str(p)


def compat_cli(*args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("COMPAT_", "NCCL_", "VLLM_"))}
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "compat", *args], capture_output=True, text=True, env=e,
                          timeout=120)


def bash_env_after_eval(script: str, env=None) -> dict:
    """Run `eval "$script"` in a real bash and return the resulting environment."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("NCCL_", "VLLM_"))}
    e.update(env or {})
    e["COMPAT_SCRIPT"] = script
    out = subprocess.run(["bash", "-c", 'eval "$COMPAT_SCRIPT" && env -0'], capture_output=True, env=e,
                         timeout=60, check=True).stdout
    return dict(item.split(b"=", 1) for item in out.split(b"\0") if b"=" in item and item)


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash: no bash on PATH")


@needs_bash
def test_bash_output_evaluates_to_the_profile_env(tmp_path):
    from helpers import with_packages
    proc = compat_cli("env", "--hardware", str(with_packages(tmp_path, "rtx4090-old-driver")))
    assert proc.returncode == 0, proc.stderr
    env = bash_env_after_eval(proc.stdout)
    assert env[b"NCCL_P2P_DISABLE"] == b"1" and env[b"NCCL_IB_DISABLE"] == b"1"
    assert proc.stdout.startswith("# compat profile ada")


@needs_bash
def test_attention_backend_export_for_the_release_in_the_fixture(v100):
    proc = compat_cli("env", "--hardware", v100)
    assert proc.returncode == 0, proc.stderr
    assert "profile v100" in proc.stdout
    env = bash_env_after_eval(proc.stdout)
    # vLLM 0.7.2 reads VLLM_ATTENTION_BACKEND; V100 runs XFORMERS there (compat/data/vllm_attention.toml)
    assert env.get(b"VLLM_ATTENTION_BACKEND") == b"XFORMERS"


@needs_bash
def test_user_value_is_kept_and_only_commented(v100):
    proc = compat_cli("env", "--hardware", v100, env={"VLLM_ATTENTION_BACKEND": "FLASHINFER"})
    assert "export VLLM_ATTENTION_BACKEND" not in proc.stdout
    assert "# VLLM_ATTENTION_BACKEND: kept your value 'FLASHINFER'" in proc.stdout
    env = bash_env_after_eval(proc.stdout, env={"VLLM_ATTENTION_BACKEND": "FLASHINFER"})
    assert env[b"VLLM_ATTENTION_BACKEND"] == b"FLASHINFER"


@needs_bash
def test_profile_flag_is_exported_for_child_processes():
    proc = compat_cli("env", "--profile", "v100")
    assert proc.returncode in (0, 1), proc.stderr
    assert bash_env_after_eval(proc.stdout)[b"COMPAT_PROFILE"] == b"v100"


WEIRD = ["plain", "with space", "it's", 'dq"uote', "$HOME `id` $(id)", "back\\slash", "semi;colon&", "",
         "multi\nline", "unicode-é", "--flag=1,2"]


@needs_bash
@pytest.mark.parametrize("value", WEIRD)
def test_bash_quoting_round_trips(value):
    from compat.integrations.shell import format_line
    env = bash_env_after_eval(format_line("bash", "COMPAT_T", value))
    assert env[b"COMPAT_T"] == value.encode()


@pytest.mark.skipif(shutil.which("fish") is None, reason="needs fish: no fish on PATH")
@pytest.mark.parametrize("value", WEIRD)
def test_fish_quoting_round_trips(value):
    from compat.integrations.shell import format_line
    out = subprocess.run(["fish", "-c", format_line("fish", "COMPAT_T", value) + "; printf %s $COMPAT_T"],
                         capture_output=True, timeout=60, check=True).stdout
    assert out == value.encode()


def test_fish_and_dotenv_syntax():
    from compat.integrations.shell import format_line
    assert format_line("fish", "A", "x") == "set -gx A 'x'"
    assert format_line("fish", "A", "it's") == "set -gx A 'it\\'s'"
    assert format_line("dotenv", "A", "XFORMERS") == "A=XFORMERS"
    assert format_line("dotenv", "A", "a b") == "A='a b'"
    assert format_line("dotenv", "A", "it's $x") == 'A="it\'s \\$x"'


@needs_bash
@pytest.mark.parametrize("value", [v for v in WEIRD if "\n" not in v])
def test_dotenv_lines_read_back_by_bash_source(tmp_path, value):
    """`set -a; . .env` is how many scripts load a dotenv file; one-line values must survive it."""
    from compat.integrations.shell import format_line
    env = bash_env_after_eval("set -a; " + format_line("dotenv", "COMPAT_T", value))
    assert env[b"COMPAT_T"] == value.encode()


def test_fish_and_dotenv_cli(v100):
    fish = compat_cli("env", "--shell", "fish", "--hardware", v100).stdout
    assert "set -gx VLLM_ATTENTION_BACKEND 'XFORMERS'" in fish
    dotenv = compat_cli("env", "--shell", "dotenv", "--hardware", v100).stdout
    assert "VLLM_ATTENTION_BACKEND=XFORMERS" in dotenv.splitlines()


def test_secrets_are_never_printed(monkeypatch):
    """A profile variable whose name looks secret is commented out, its value never shown."""
    from dataclasses import replace

    from compat._setup import build_report
    from compat.integrations.shell import render

    rep = build_report(str(FIXTURES / "cpu-only.toml"), environ={})
    resolved = replace(rep.resolved, env=(("HF_TOKEN", "hf_abcdef", "test"), ("A_KEY", "k3y", "test")))
    out = render(replace(rep, resolved=resolved), "bash", environ={"A_KEY": "mine"})
    assert "hf_abcdef" not in out and "k3y" not in out and "mine" not in out
    assert "# HF_TOKEN: a secret; not printed" in out
    assert "\nexport " not in out


def test_bad_input_exits_2_with_one_line():
    proc = compat_cli("env", "--hardware", "/nonexistent.toml")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert compat_cli("env", "--shell", "tcsh").returncode == 2
    assert compat_cli("env", "--profile", "no-such-profile").returncode == 2


def test_env_command_does_not_import_heavy_modules(v100):
    code = ("import sys; from compat.integrations import shell; shell.run(['--hardware', %r]);"
            "bad = [m for m in ('torch', 'vllm', 'ray', 'numpy', 'transformers') if m in sys.modules];"
            "sys.stderr.write(repr(bad)); sys.exit(3 if bad else 0)" % v100)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
