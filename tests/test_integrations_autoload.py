"""Opt-in autoload through compat-autoload.pth, tested the way users get it: the project built as a wheel and
installed into a fresh venv. Off: nothing imported. On: setup() ran before user code, in spawned children too.
Broken: one warning line, the interpreter still starts."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from promises import need

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hardware"
PTH = "compat-autoload.pth"

pytestmark = pytest.mark.slow


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)


def find_uv() -> str:
    """uv the way tools/matrix.py finds it: COMPAT_UV, PATH (tox-uv puts its own uv there), the `uv` package."""
    found = os.environ.get("COMPAT_UV") or shutil.which("uv")
    if not found:
        try:
            from uv import find_uv_bin  # type: ignore[import-not-found]

            found = find_uv_bin()
        except Exception:  # noqa: BLE001 - any failure means: no uv here
            need("uv", "no uv on PATH, no COMPAT_UV, no `uv` package (tox-uv brings one)")
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = _run([find_uv(), "build", "--wheel", "-q", "-o", str(out), str(ROOT)])
    # a build that fails is a failure of the project (its build config), never a reason to skip the claims
    assert proc.returncode == 0, f"uv build of the wheel failed:\n{proc.stderr[-2000:]}"
    (whl,) = out.glob("compat-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv_python(wheel, tmp_path_factory) -> str:
    """A fresh venv with the wheel (and its small dependencies) installed."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    uv = find_uv()
    install = [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(wheel)]
    for cmd in ([uv, "venv", "-q", "--python", sys.executable, str(venv)], install + ["--offline"]):
        proc = _run(cmd)
        if proc.returncode != 0 and "--offline" in cmd:
            proc = _run(install)   # cache cold: allow the index
        assert proc.returncode == 0, f"cannot create the test venv: {' '.join(cmd)}:\n{proc.stderr[-2000:]}"
    return str(venv / "bin" / "python")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COMPAT_", "NCCL_", "VLLM_", "PYTHON")) and k != "VIRTUAL_ENV"}
    env.update(extra)
    return env


def test_wheel_ships_the_pth_at_its_root(wheel):
    with zipfile.ZipFile(wheel) as z:
        assert z.read(PTH).decode() == (ROOT / PTH).read_text()
        entry_points = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "[vllm.general_plugins]" in entry_points
    assert "compat = compat.integrations.vllm_plugin:register" in entry_points


def test_pth_is_one_import_line(wheel):
    lines = (ROOT / PTH).read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("import os;")    # site.py executes lines starting "import"
    assert "compat" not in lines[0].split(" and ", 1)[0]             # the check itself never imports compat


def test_installed_where_site_processes_it(venv_python):
    proc = _run([venv_python, "-c", "import site, os; print(any(os.path.exists(os.path.join(p, %r)) "
                 "for p in site.getsitepackages()))" % PTH], env=clean_env())
    assert proc.stdout.strip() == "True", proc.stderr


@pytest.mark.parametrize("value", [None, "0", "", "true"])
def test_off_imports_nothing(venv_python, value):
    env = clean_env() if value is None else clean_env(COMPAT_AUTOLOAD=value)
    proc = _run([venv_python, "-c", "import sys; print('compat' in sys.modules)"], env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "False" and proc.stderr == ""


def test_on_runs_setup_before_user_code(venv_python):
    code = ("import sys, os\nassert 'compat' in sys.modules\nimport compat\nrep = compat.current()\n"
            "print(rep.resolved.profile.name, os.environ.get('NCCL_P2P_DISABLE'))")
    proc = _run([venv_python, "-c", code],
                env=clean_env(COMPAT_AUTOLOAD="1", COMPAT_HARDWARE=str(FIXTURES / "rtx4090-old-driver.toml")))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ada", "1"]
    assert proc.stderr == ""


def test_spawned_children_are_set_up_too(venv_python, tmp_path):
    """multiprocessing 'spawn' (how vLLM starts workers) runs a fresh interpreter: the .pth runs there again."""
    script = tmp_path / "spawn_child.py"
    script.write_text(
        "import multiprocessing as mp, os\n"
        "def child(q):\n"
        "    import compat\n"
        "    rep = compat.current()\n"
        "    q.put((os.getpid(), rep is not None and rep.resolved.profile.name))\n"
        "if __name__ == '__main__':\n"
        "    ctx = mp.get_context('spawn'); q = ctx.Queue()\n"
        "    p = ctx.Process(target=child, args=(q,)); p.start(); pid, prof = q.get(timeout=120); p.join()\n"
        "    assert pid != os.getpid()\n"
        "    print(prof)\n")
    proc = _run([venv_python, str(script)],
                env=clean_env(COMPAT_AUTOLOAD="1", COMPAT_HARDWARE=str(FIXTURES / "v100-sxm2.toml")))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "v100"


def test_failing_setup_is_one_warning_line(venv_python):
    proc = _run([venv_python, "-c", "print('started')"],
                env=clean_env(COMPAT_AUTOLOAD="1", COMPAT_PROFILE="no-such-profile"))
    assert proc.returncode == 0 and proc.stdout.strip() == "started"
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("compat: warning: setup() from COMPAT_AUTOLOAD=1 failed: CompatError:")


def test_broken_compat_install_is_one_warning_line(venv_python, tmp_path):
    broken = tmp_path / "shadow" / "compat"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise RuntimeError('half-installed\\npackage')\n")
    proc = _run([venv_python, "-c", "print('started')"],
                env=clean_env(COMPAT_AUTOLOAD="1", PYTHONPATH=str(broken.parent)))
    assert proc.returncode == 0 and proc.stdout.strip() == "started"
    assert proc.stderr == ("compat: warning: COMPAT_AUTOLOAD=1 but compat could not be imported: "
                           "RuntimeError: half-installed package\n")


def test_entry_point_visible_to_importlib_metadata(venv_python):
    """What vLLM's load_general_plugins() does: entry_points(group=...) then .load()."""
    code = ("from importlib.metadata import entry_points\n"
            "eps = [e for e in entry_points(group='vllm.general_plugins') if e.name == 'compat']\n"
            "assert len(eps) == 1, eps\nf = eps[0].load(); rep = f(); print(rep is not None)")
    proc = _run([venv_python, "-c", code], env=clean_env(COMPAT_HARDWARE=str(FIXTURES / "cpu-only.toml")))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"
