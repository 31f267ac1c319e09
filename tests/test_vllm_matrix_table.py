"""compat/data/vllm_releases.toml is well formed, and tox.ini / noxfile.py test exactly the matrix it names."""
from __future__ import annotations

import configparser
import datetime as dt
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def matrix():
    from helpers import load_tools_matrix

    return load_tools_matrix()


def test_every_release_entry_is_complete(matrix):
    rels = matrix.releases()
    assert [r["version"] for r in rels][0] == "0.5.4"
    for r in rels:
        Version(r["version"])
        date = dt.date.fromisoformat(r["date"])
        cutoff = dt.date.fromisoformat(r["exclude_newer"])
        assert cutoff > date, r["version"]
        assert re.fullmatch(r"\d+\.\d+\.\d+", r["torch"]), r["version"]
        assert SpecifierSet(r["python"]).contains("3.11") or Version(r["version"]) < Version("0.5.4"), r["version"]
        assert r["source"].strip()
        for o in r["overrides"]:
            Requirement(o)
        if r["overrides"]:
            assert r.get("reason", "").strip(), r["version"]
        for extra in r.get("also_install", []):
            Requirement(extra)
        if r.get("also_install"):
            assert r.get("reason", "").strip(), r["version"]


def test_releases_are_unique_and_dated_in_order(matrix):
    rels = matrix.releases()
    versions = [r["version"] for r in rels]
    assert len(set(versions)) == len(versions)
    dates = [r["date"] for r in rels]
    assert dates == sorted(dates)


def test_env_names(matrix):
    assert matrix.env_name("0.10.1.1") == "vllm0101"
    assert matrix.env_name("0.5.4") == "vllm054"
    envs = matrix.matrix_envs()
    assert envs["vllm-latest"] == matrix.releases()[-1]["version"]
    assert matrix.resolve("vllm072")["version"] == "0.7.2"
    assert matrix.resolve("0.7.2")["torch"] == "2.5.1"


def _expand(item: str):
    m = re.fullmatch(r"([^{]*)\{([^}]*)\}(.*)", item)
    if not m:
        return [item]
    return [m.group(1) + part + m.group(3) for part in m.group(2).split(",")]


def test_tox_env_list_is_the_table_matrix(matrix):
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "tox.ini")
    names = [n for line in cfg["tox"]["env_list"].split() for n in _expand(line.strip())]
    # install-e2e right after py: `tox -p 2` starts envs in this order, and the installer env needs the most free disk
    # (a pip install has no shared cache: ~10 GB per venv), which a cold CI box has most of before the matrix fills
    # the uv cache; then the vLLM envs, the verl envs (compat/data/verl.toml), the Ray cluster
    assert names == ["py", "install-e2e", *matrix.matrix_envs(), *matrix.verl_envs(), "ray"]


def test_override_file_and_command(matrix, tmp_path):
    rel = matrix.resolve("vllm054")
    cmd = matrix.install_cmd(rel, "/env/bin/python", str(tmp_path / "o.txt"))
    assert cmd[1:] == ["pip", "install", "--python", "/env/bin/python", "--exclude-newer", "2024-08-20T00:00:00Z",
                       "--override", str(tmp_path / "o.txt"), "vllm==0.5.4", "torch==2.4.0", "setuptools"]
