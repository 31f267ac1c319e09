"""Patch engine mechanics, on small real modules written to tmp_path (no vLLM needed).

Each toy package gets a unique import name and a real .dist-info (so version gating reads real metadata), and the
engine is pointed at it with `sets=[...]`; the hook watches that name exactly as it watches `vllm`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import traceback
import uuid
from pathlib import Path

import pytest

from compat.errors import CompatError
from compat.patches import engine
from compat.patches.engine import Patch, PatchError, PatchSet, fingerprint_source
from compat.patches.source import Edit, SourceEditError, source_edit

ROOT = Path(__file__).resolve().parents[1]

CHECK = '''\
def check(world, tp):
    """Refuses a world larger than the TP group (like vLLM 0.7.2's initialize_model_parallel)."""
    if world != tp:
        raise RuntimeError(f"world {world} != tp {tp}")
    groups = world // tp
    return groups
'''

CLASSES = '''\
class Base:
    def method(self):
        return "base"


class Child(Base):
    def own(self, x):
        y = x + 1
        return super().method() + "-" + str(y)
'''

GEN = '''\
def gen(items, log):
    for x in items:
        yield x
        log.append(x)
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """make(files, version) -> unique package name importable from a tmp site dir with real dist metadata."""
    made = []

    def make(files, version="1.0.0"):
        name = "toypkg_" + uuid.uuid4().hex[:10]
        site = tmp_path / name / "site"
        pkg = site / name
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text(files.get("__init__", ""))
        for mod, text in files.items():
            if mod != "__init__":
                (pkg / f"{mod}.py").write_text(text)
        dist = site / f"{name}-{version}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        monkeypatch.syspath_prepend(str(site))
        made.append(name)
        return name

    yield make
    engine.revert()
    for name in made:
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]


def fp(src: str) -> str:
    return fingerprint_source(src)


REMOVE_CHECK = Edit('if world != tp:\n    raise RuntimeError(f"world {world} != tp {tp}")', "")


def check_set(pkg, fingerprint=None, versions=">=1.0,<2", name="toyset", make=None, switch=None):
    return PatchSet(name=name, package=pkg, versions=versions, switch=switch, patches=(
        Patch(id=f"{name}.check", target=f"{pkg}.mod:check", why="toy", upstream_fix="none",
              fingerprint=fingerprint or fp(CHECK), make=make or source_edit(REMOVE_CHECK)),
    ))


# ---------------------------------------------------------------------------------------------------------------


def test_fingerprint_is_of_dedented_source(toy):
    pkg = toy({"mod": CHECK, "classes": CLASSES})
    mod = __import__(f"{pkg}.mod", fromlist=["x"])
    classes = __import__(f"{pkg}.classes", fromlist=["x"])
    assert engine.fingerprint(mod.check) == fp(CHECK)
    method_src = textwrap.dedent(CLASSES.split("class Child(Base):\n")[1])
    assert engine.fingerprint(classes.Child.own) == fp(method_src)


def test_source_edit_swaps_code_in_place_and_revert_restores_exactly(toy):
    pkg = toy({"mod": CHECK})
    mod = __import__(f"{pkg}.mod", fromlist=["x"])
    original, original_code = mod.check, mod.check.__code__
    alias = mod.check  # what `from mod import check` elsewhere holds
    with pytest.raises(RuntimeError):
        alias(4, 2)
    engine.activate({}, sets=[check_set(pkg)])
    assert engine.applied_sets() == ("toyset",)
    assert mod.check is original and alias(4, 2) == 2  # same object, new code: copies see the fix
    assert mod.check.__code__ is not original_code
    engine.revert()
    assert mod.check is original and mod.check.__code__ is original_code
    with pytest.raises(RuntimeError):
        alias(4, 2)


def test_edited_code_keeps_file_and_line_numbers(toy):
    src = CHECK.replace("    groups = world // tp\n", "    groups = world // tp\n    assert groups < 0, 'boom'\n")
    pkg = toy({"mod": src})
    mod = __import__(f"{pkg}.mod", fromlist=["x"])
    engine.activate({}, sets=[check_set(pkg, fingerprint=fp(src))])
    with pytest.raises(AssertionError) as info:
        mod.check(4, 2)
    frame = traceback.extract_tb(info.tb)[-1]
    assert frame.filename == mod.__file__
    assert frame.lineno == src.splitlines().index("    assert groups < 0, 'boom'") + 1
    assert frame.line.strip() == "assert groups < 0, 'boom'"


def test_method_using_super_keeps_its_class_cell(toy):
    pkg = toy({"classes": CLASSES})
    classes = __import__(f"{pkg}.classes", fromlist=["x"])
    own_src = textwrap.dedent(CLASSES.split("class Child(Base):\n")[1])
    ps = PatchSet(name="toyset", package=pkg, versions=">=1", patches=(
        Patch(id="toyset.own", target=f"{pkg}.classes:Child.own", why="toy", upstream_fix="none",
              fingerprint=fp(own_src), make=source_edit(("y = x + 1", "y = x + 100"))),
    ))
    original = classes.Child.__dict__["own"]
    engine.activate({}, sets=[ps])
    assert classes.Child.__dict__["own"] is original  # code swapped, not replaced
    assert classes.Child().own(1) == "base-101"
    engine.revert()
    assert classes.Child().own(1) == "base-2"


def test_generator_function_edit(toy):
    pkg = toy({"mod": GEN})
    mod = __import__(f"{pkg}.mod", fromlist=["x"])
    ps = PatchSet(name="toyset", package=pkg, versions=">=1", patches=(
        Patch(id="toyset.gen", target=f"{pkg}.mod:gen", why="toy", upstream_fix="none", fingerprint=fp(GEN),
              make=source_edit(("yield x\nlog.append(x)", "yield x"))),
    ))
    engine.activate({}, sets=[ps])
    log = []
    assert list(mod.gen([1, 2], log)) == [1, 2] and log == []


def test_inherited_method_replaced_on_the_class_and_deleted_on_revert(toy):
    pkg = toy({"classes": CLASSES})
    classes = __import__(f"{pkg}.classes", fromlist=["x"])
    base_method = classes.Base.__dict__["method"]
    ps = PatchSet(name="toyset", package=pkg, versions=">=1", patches=(
        Patch(id="toyset.method", target=f"{pkg}.classes:Child.method", why="toy", upstream_fix="none",
              fingerprint=fp(textwrap.dedent(CLASSES.split("class Base:\n")[1].split("\n\n")[0] + "\n")),
              make=lambda original: (lambda self: "patched " + original(self))),
    ))
    assert "method" not in classes.Child.__dict__
    engine.activate({}, sets=[ps])
    assert classes.Child().method() == "patched base" and classes.Base().method() == "base"
    engine.revert()
    assert "method" not in classes.Child.__dict__
    assert classes.Base.__dict__["method"] is base_method


def test_drifted_target_is_refused_and_left_alone(toy, caplog):
    pkg = toy({"mod": CHECK})
    mod = __import__(f"{pkg}.mod", fromlist=["x"])
    code = mod.check.__code__
    verified = CHECK.replace("world // tp", "world // tp  # as verified")  # the release the patch was written for
    ps = check_set(pkg, fingerprint=fp(verified))
    engine.activate({}, sets=[ps])
    assert engine.applied_sets() == () and mod.check.__code__ is code
    (refusal,) = engine.refusals()
    assert f"{pkg}.mod:check changed since" in refusal.reason and fp(CHECK) in refusal.reason
    assert "COMPAT_DISABLE_PATCHES=toyset.check" in refusal.reason
    assert any("not applied" in r.getMessage() for r in caplog.records if r.name == "compat")
    finding = refusal.finding()
    assert finding.severity == "warning" and "toyset" in finding.id
    (row,) = engine.status(sets=[ps])
    assert row.status == "refused" and "changed since" in row.reason


def test_drift_raises_when_the_set_was_asked_for_by_name(toy):
    pkg = toy({"mod": CHECK})
    ps = check_set(pkg, fingerprint=fp(CHECK + "# other release\n"))
    engine.activate({}, explicit={"toyset"}, sets=[ps])  # not imported yet: the check runs at import
    with pytest.raises(PatchError, match="changed since"):
        __import__(pkg)
    engine.revert()
    __import__(pkg)
    with pytest.raises(PatchError, match="changed since"):  # and at once when already imported
        engine.activate({}, explicit={"toyset"}, sets=[ps])


def test_missing_target_is_refused(toy):
    pkg = toy({"mod": CHECK})
    ps = PatchSet(name="toyset", package=pkg, versions=">=1", patches=(
        Patch(id="toyset.gone", target=f"{pkg}.mod:gone", why="toy", upstream_fix="none", fingerprint=fp(CHECK),
              make=source_edit(REMOVE_CHECK)),
    ))
    __import__(f"{pkg}.mod")
    engine.activate({}, sets=[ps])
    (refusal,) = engine.refusals()
    assert "not found" in refusal.reason


def test_half_applied_set_is_rolled_back(toy):
    pkg = toy({"mod": CHECK, "classes": CLASSES})
    mod = __import__(f"{pkg}.mod", fromlist=["x"])
    code = mod.check.__code__

    def broken(original):
        raise ValueError("cannot build replacement")

    ps = PatchSet(name="toyset", package=pkg, versions=">=1", patches=(
        Patch(id="toyset.check", target=f"{pkg}.mod:check", why="toy", upstream_fix="none",
              fingerprint=fp(CHECK), make=source_edit(REMOVE_CHECK)),
        Patch(id="toyset.broken", target=f"{pkg}.mod:check", why="toy", upstream_fix="none",
              fingerprint=fp(CHECK), make=broken),
    ))
    engine.apply_set(ps)
    assert mod.check.__code__ is code  # first patch was installed, then undone
    assert engine.applied_sets() == ()
    assert engine.refusals()[0].patch_id == "toyset.broken" and "rolled back" in engine.refusals()[0].reason
    with pytest.raises(PatchError, match="cannot build replacement"):
        engine.apply_set(ps, explicit=True)
    assert mod.check.__code__ is code


def test_snippet_missing_from_source_refuses(toy):
    pkg = toy({"mod": CHECK})
    mod = __import__(f"{pkg}.mod", fromlist=["x"])
    code = mod.check.__code__
    ps = check_set(pkg, make=source_edit(("raise ValueError('x')", "")))
    with pytest.raises(PatchError, match="not found in the release source"):
        engine.apply_set(ps, explicit=True)
    assert mod.check.__code__ is code


def test_sixteen_threads_apply_once(toy):
    pkg = toy({"mod": CHECK})
    __import__(f"{pkg}.mod")
    calls = []
    inner = source_edit(REMOVE_CHECK)

    def counting(original):
        calls.append(1)
        return inner(original)

    ps = check_set(pkg, make=counting)
    barrier = threading.Barrier(16)

    def worker():
        barrier.wait()
        engine.activate({}, sets=[ps])

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and engine.applied_sets() == ("toyset",)


def test_lazy_application_when_the_package_is_imported_after_activate(toy):
    pkg = toy({"mod": CHECK, "__init__": "from .mod import check\n"})
    ps = check_set(pkg)
    engine.activate({}, sets=[ps])
    assert pkg not in sys.modules  # activate imported nothing
    hooks = [f for f in sys.meta_path if getattr(f, "names", None) == frozenset({pkg})]
    assert len(hooks) == 1
    package = __import__(pkg)
    assert package.check(4, 2) == 2  # the copy made by `from .mod import check` during import is fixed too
    assert engine.applied_sets() == ("toyset",)
    assert hooks[0] not in sys.meta_path  # uninstalled after firing
    assert type(package.__spec__.loader).__name__ == "SourceFileLoader" and package.__loader__ is package.__spec__.loader
    engine.revert()
    with pytest.raises(RuntimeError):
        package.check(4, 2)


def test_revert_before_import_removes_the_hook(toy):
    pkg = toy({"mod": CHECK})
    engine.activate({}, sets=[check_set(pkg)])
    engine.revert()
    assert not [f for f in sys.meta_path if getattr(f, "names", None) == frozenset({pkg})]
    mod = __import__(f"{pkg}.mod", fromlist=["x"])
    with pytest.raises(RuntimeError):
        mod.check(4, 2)


def test_version_gate_reads_dist_metadata(toy):
    pkg = toy({"mod": CHECK}, version="1.0.0+cu124")
    __import__(f"{pkg}.mod")
    engine.activate({}, sets=[check_set(pkg, versions=">=2.0")])
    assert engine.applied_sets() == ()
    (row,) = engine.status(sets=[check_set(pkg, versions=">=2.0")])
    assert row.status == "not-applicable" and "1.0.0+cu124 is outside >=2.0" in row.reason
    engine.activate({}, sets=[check_set(pkg, versions=">=1.0,<1.0.1")])  # local label ignored
    assert engine.applied_sets() == ("toyset",)


def test_engine_reads_versions_through_detect_software(toy, monkeypatch):
    """One version lookup for the project: the engine gates on what compat.detect.software reports."""
    from compat.detect import software

    pkg = toy({"mod": CHECK}, version="1.0.0")
    assert engine.installed_version(pkg) == software.installed_version(pkg) == "1.0.0"
    monkeypatch.setattr(software, "installed_version", lambda name, paths=None: "7.0.0" if name == pkg else None)
    (row,) = engine.status(sets=[check_set(pkg)])
    assert row.status == "not-applicable" and f"{pkg} 7.0.0 is outside" in row.reason


@pytest.mark.parametrize("given", ["1.0.0", "1.0.0+cu118", "1.0.0+cu124"])
def test_given_version_is_this_process_when_only_the_local_tag_differs(toy, monkeypatch, given):
    """`compat patches --vllm 0.7.2` on an installed 0.7.2+cu118 reports this process (applied), not a guess."""
    pkg = toy({"mod": CHECK})
    __import__(f"{pkg}.mod")
    ps = PatchSet(name="toyvllm", package="vllm", versions=">=1.0,<2", patches=(
        Patch(id="toyvllm.check", target=f"{pkg}.mod:check", why="toy", upstream_fix="none", fingerprint=fp(CHECK),
              make=source_edit(REMOVE_CHECK)),
    ))
    monkeypatch.setattr(engine, "installed_version", lambda name: "1.0.0+cu118" if name == "vllm" else None)
    assert engine.apply_set(ps)
    (row,) = engine.status(given, sets=[ps])
    assert row.status == "applied", row
    (row,) = engine.status("1.0.1", sets=[ps])  # another release: what would happen there, not this process
    assert row.status == "applies" and row.reason == "would apply to vllm 1.0.1"


def test_unknown_explicit_set_is_bad_input(toy):
    from compat.errors import CompatError

    pkg = toy({"mod": CHECK})
    with pytest.raises(CompatError, match="unknown patch set"):
        engine.activate({}, explicit={"nosuchset"}, sets=[check_set(pkg)])


def test_activate_from_another_thread_while_the_package_imports(toy):
    """No deadlock: thread A imports the package (slow body), thread B activates meanwhile; applied once."""
    pkg = toy({"mod": CHECK, "__init__": "import time\ntime.sleep(0.5)\nfrom .mod import check\n"})
    ps = check_set(pkg)
    engine.activate({}, sets=[ps])  # hook installed: A's import will fire it
    started = threading.Event()

    def importer():
        started.set()
        __import__(pkg)

    a = threading.Thread(target=importer)
    a.start()
    started.wait()
    import time

    time.sleep(0.1)  # A is inside the package body now: pkg is in sys.modules, still initializing
    b = threading.Thread(target=lambda: engine.activate({}, sets=[ps]))
    b.start()
    a.join(10)
    b.join(10)
    assert not a.is_alive() and not b.is_alive()
    assert engine.applied_sets() == ("toyset",) and sys.modules[pkg].check(4, 2) == 2


def test_explicit_set_for_another_release_raises(toy):
    pkg = toy({"mod": CHECK})
    __import__(f"{pkg}.mod")
    with pytest.raises(PatchError, match="is for"):
        engine.activate({}, explicit={"toyset"}, sets=[check_set(pkg, versions=">=2.0")])


@pytest.mark.parametrize("value", ["toyset.check", "toyset", "all", "ALL", "TOYSET", "toyset, toyset.check"])
def test_kill_switch(toy, monkeypatch, value):
    pkg = toy({"mod": CHECK})
    mod = __import__(f"{pkg}.mod", fromlist=["x"])
    monkeypatch.setenv("COMPAT_DISABLE_PATCHES", value)
    engine.activate({}, sets=[check_set(pkg)])
    assert engine.applied_sets() == ()
    with pytest.raises(RuntimeError):
        mod.check(4, 2)
    (row,) = engine.status(sets=[check_set(pkg)])
    assert row.status == "disabled" and value in row.reason


@pytest.mark.parametrize("value", ["other", "toyset.chek", "toyset,nope", "al"])
def test_kill_switch_naming_nothing_known_is_an_error_listing_the_valid_ones(toy, monkeypatch, value):
    """A typo must not leave every patch on without a word (issue 14)."""
    pkg = toy({"mod": CHECK})
    monkeypatch.setenv("COMPAT_DISABLE_PATCHES", value)
    with pytest.raises(CompatError, match=r"unknown patch id or set name .*valid: all, toyset \(toyset.check\)"):
        engine.activate({}, sets=[check_set(pkg)])
    with pytest.raises(CompatError, match="unknown patch id"):
        engine.status(sets=[check_set(pkg)])


def test_kill_switch_on_one_patch_applies_the_rest(toy, monkeypatch):
    pkg = toy({"mod": CHECK, "other": GEN})
    mod = __import__(f"{pkg}.mod", fromlist=["x"])
    other = __import__(f"{pkg}.other", fromlist=["x"])
    ps = PatchSet(name="toyset", package=pkg, versions=">=1", patches=(
        Patch(id="toyset.check", target=f"{pkg}.mod:check", why="toy", upstream_fix="none",
              fingerprint=fp(CHECK), make=source_edit(REMOVE_CHECK)),
        Patch(id="toyset.gen", target=f"{pkg}.other:gen", why="toy", upstream_fix="none", fingerprint=fp(GEN),
              make=source_edit(("yield x\nlog.append(x)", "yield x"))),
    ))
    monkeypatch.setenv("COMPAT_DISABLE_PATCHES", "toyset.gen")
    engine.activate({}, sets=[ps])
    assert mod.check(4, 2) == 2
    log = []
    list(other.gen([1], log))
    assert log == [1]
    assert {r.id: r.status for r in engine.status(sets=[ps])} == {"toyset.check": "applied",
                                                                   "toyset.gen": "disabled"}


def test_opt_in_set_needs_its_switch(toy, monkeypatch):
    pkg = toy({"mod": CHECK})
    mod = __import__(f"{pkg}.mod", fromlist=["x"])
    ps = check_set(pkg, switch="toyswitch")
    engine.activate({}, sets=[ps])
    assert engine.applied_sets() == ()
    assert engine.status(sets=[ps])[0].status == "disabled"
    engine.activate({"toyswitch": True}, sets=[ps])
    assert mod.check(4, 2) == 2
    engine.revert()
    monkeypatch.setenv("COMPAT_TOYSWITCH", "1")
    engine.activate({}, sets=[ps])
    assert engine.applied_sets() == ("toyset",)


def test_status_rows_and_table(toy):
    pkg = toy({"mod": CHECK})
    ps = check_set(pkg)
    (row,) = engine.status(sets=[ps])
    assert (row.status, row.patch_set, row.versions) == ("applies", "toyset", ">=1.0,<2")
    __import__(f"{pkg}.mod")
    assert engine.status(sets=[ps], verify=True)[0].reason == "target verified (fingerprint matches)"
    engine.activate({}, sets=[ps])
    (row,) = engine.status(sets=[ps])
    assert row.status == "applied" and row.as_dict()["target"] == f"{pkg}.mod:check"
    table = engine.format_status_table([row])
    assert table.splitlines()[0].split() == ["patch", "set", "versions", "status", "reason"]
    assert "toyset.check" in table and "applied" in table
    json.dumps(engine.status_dicts([row]))


def test_shipped_sets_are_well_formed():
    from compat.patches.sets import all_sets

    names = [ps.name for ps in all_sets()]
    assert {"vllm07", "vllm082"} <= set(names) and len(names) == len(set(names))
    for ps in all_sets():
        assert ps.package in ("vllm", "transformers", "verl", "flash-attn") and ps.ledger and ps.patches
        for p in ps.patches:
            assert p.id.startswith(ps.name + ".") and p.why and p.upstream_fix


def _provide_set(pkg, name, module):
    return PatchSet(name="provset", package=pkg, versions=">=1.0,<2", patches=(
        Patch(id="provset.sub", target=f"{engine.MODULES}:{name}", why="toy", upstream_fix="none", fingerprint=(),
              make=lambda original: module),
    ))


def test_sys_modules_target_provides_a_dotted_name_without_its_parent(toy):
    """verl_padding's mechanism: the entry makes `from missing.sub import f` work, while `import missing` and
    find_spec("missing") keep failing; activation waits for the watched package; revert removes the entry."""
    import importlib.util
    import types

    pkg = toy({})
    missing = "missingpkg_" + uuid.uuid4().hex[:8]
    module = types.ModuleType("provided")
    module.f = lambda: "provided"  # type: ignore[attr-defined]
    ps = _provide_set(pkg, f"{missing}.sub", module)
    (row,) = engine.status(sets=[ps], verify=True)  # nothing to verify: no fingerprint is claimed
    assert row.status == "applies" and "fingerprint" not in row.reason and "provided when" in row.reason, row
    engine.activate({}, sets=[ps])
    assert f"{missing}.sub" not in sys.modules  # not before the watched package is imported
    __import__(pkg)
    assert engine.applied_sets() == ("provset",)
    ns: dict = {}
    exec(f"from {missing}.sub import f", ns)
    assert ns["f"]() == "provided"
    assert importlib.util.find_spec(missing) is None and missing not in sys.modules
    with pytest.raises(ImportError):
        __import__(missing)
    (row,) = engine.status(sets=[ps])
    assert row.status == "applied" and f"{missing}.sub provided in sys.modules" in row.reason
    engine.revert()
    assert f"{missing}.sub" not in sys.modules
    with pytest.raises(ImportError):
        exec(f"from {missing}.sub import f", {})


def test_a_before_set_applies_before_the_watched_module_runs_and_a_needless_check_decides(toy):
    """flash_attn_hide's mechanism: `before=True` applies the set right before the watched submodule's body runs
    (the body sees the entry), a Patch.needless_check replaces the "real package installed" rule, a None entry hides
    an installed package (find_spec None, import fails) and revert() removes it."""
    import importlib.util

    hidden = toy({"sub": "X = 1\n"})                      # an installed package the set hides
    pkg = toy({"late": f"import sys\nSEEN = repr(sys.modules.get('{hidden}', 'absent'))\n"})
    verdict = {"needless": ""}
    ps = PatchSet(name="hideset", package=pkg, versions=">=1.0,<2", watch=f"{pkg}.late", before=True, patches=(
        Patch(id="hideset.hide", target=f"{engine.MODULES}:{hidden}", why="toy", upstream_fix="none", fingerprint=(),
              make=lambda original: None, needless_check=lambda: verdict["needless"]),
    ))
    verdict["needless"] = "it loads"
    (row,) = engine.status(sets=[ps])
    assert row.status == "not-applicable" and row.reason == "it loads"
    verdict["needless"] = ""
    engine.activate({}, sets=[ps])
    __import__(pkg)                                       # the package itself is not the trigger
    assert engine.applied_sets() == () and hidden not in sys.modules
    late = __import__(f"{pkg}.late", fromlist=["SEEN"])
    assert late.SEEN == "None"                            # the body ran after the set applied
    assert engine.applied_sets() == ("hideset",)
    assert importlib.util.find_spec(hidden) is None
    with pytest.raises(ImportError):
        __import__(hidden)
    engine.revert()
    assert hidden not in sys.modules and importlib.util.find_spec(hidden) is not None


def test_a_module_watched_before_and_after_fires_both_and_undone_runs_at_revert(toy):
    """One module can trigger a before set and an after set; Patch.undone is called once revert() undid it."""
    hidden, other = toy({}), toy({})
    pkg = toy({"late": f"import sys\nSEEN = repr(sys.modules.get('{hidden}', 'absent'))\n"})
    undone: list = []
    early = PatchSet(name="early", package=pkg, versions=">=1.0,<2", watch=f"{pkg}.late", before=True, patches=(
        Patch(id="early.hide", target=f"{engine.MODULES}:{hidden}", why="toy", upstream_fix="none", fingerprint=(),
              make=lambda original: None, needless_check=lambda: "", undone=lambda: undone.append("early")),
    ))
    late = PatchSet(name="late", package=pkg, versions=">=1.0,<2", watch=f"{pkg}.late", patches=(
        Patch(id="late.give", target=f"{engine.MODULES}:{other}", why="toy", upstream_fix="none", fingerprint=(),
              make=lambda original: "given", needless_check=lambda: ""),
    ))
    engine.activate({}, sets=[early, late])
    late_mod = __import__(f"{pkg}.late", fromlist=["SEEN"])
    assert late_mod.SEEN == "None" and sorted(engine.applied_sets()) == ["early", "late"]
    assert sys.modules[other] == "given"
    engine.revert()
    assert undone == ["early"] and hidden not in sys.modules and other not in sys.modules


def test_apply_named_goes_through_the_same_gate_as_the_hook(toy):
    """flash_attn_hide from transformers 4.54 is applied at a request, not an import: apply_named honours setup()'s
    kill switch and set list, and needs activate()."""
    hidden = toy({})
    pkg = toy({})
    ps = PatchSet(name="hideset", package=pkg, versions=">=1.0,<2", patches=(
        Patch(id="hideset.hide", target=f"{engine.MODULES}:{hidden}", why="toy", upstream_fix="none", fingerprint=(),
              make=lambda original: None, needless_check=lambda: ""),
    ))
    assert engine.apply_named("hideset") is False                       # not activated
    engine.activate({"disable_patches": "hideset.hide"}, sets=[ps])
    assert engine.apply_named("hideset") is False and hidden not in sys.modules
    engine.revert()
    engine.activate({}, sets=[ps])
    assert engine.apply_named("nosuchset") is False
    assert engine.apply_named("hideset") is True and sys.modules[hidden] is None
    assert engine.apply_named("hideset") is True                        # once


def test_a_before_set_whose_module_is_already_imported_applies_at_activation(toy):
    hidden = toy({})
    pkg = toy({"late": "Y = 2\n"})
    __import__(f"{pkg}.late")
    ps = PatchSet(name="hideset", package=pkg, versions=">=1.0,<2", watch=f"{pkg}.late", before=True, patches=(
        Patch(id="hideset.hide", target=f"{engine.MODULES}:{hidden}", why="toy", upstream_fix="none", fingerprint=(),
              make=lambda original: None, needless_check=lambda: ""),
    ))
    engine.activate({}, sets=[ps])
    assert engine.applied_sets() == ("hideset",) and sys.modules[hidden] is None


def test_sys_modules_target_is_not_applicable_where_the_real_package_is_installed(toy):
    import types

    pkg = toy({})
    other = toy({"sub": "REAL = True\n"})  # the "real" package, installed
    ps = _provide_set(pkg, f"{other}.sub", types.ModuleType("provided"))
    (row,) = engine.status(sets=[ps])
    assert row.status == "not-applicable" and f"{other} is installed" in row.reason
    engine.activate({}, sets=[ps])
    __import__(pkg)
    assert engine.applied_sets() == ()
    assert __import__(f"{other}.sub", fromlist=["x"]).REAL is True
    engine.revert()
    with pytest.raises(PatchError, match=f"{other} is installed"):  # asked for by name: the error says why not
        engine.activate({}, explicit={"provset"}, sets=[ps])


def test_sys_modules_target_refuses_an_entry_already_there_and_the_kill_switch_disables_it(toy, monkeypatch):
    import types

    pkg = toy({})
    name = "missingpkg_" + uuid.uuid4().hex[:8] + ".sub"
    ps = _provide_set(pkg, name, types.ModuleType("provided"))
    other = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, other)
    __import__(pkg)
    assert engine.apply_set(ps) is False and "already imported" in engine.refusals()[0].reason
    assert sys.modules[name] is other
    engine.revert()
    monkeypatch.delitem(sys.modules, name)
    monkeypatch.setenv("COMPAT_DISABLE_PATCHES", "provset.sub")
    engine.activate({}, sets=[ps])
    assert engine.applied_sets() == () and name not in sys.modules
    (row,) = engine.status(sets=[ps])
    assert row.status == "disabled"


def test_a_sys_modules_target_takes_no_fingerprint():
    with pytest.raises(ValueError, match="no fingerprint"):
        Patch(id="x.y", target=f"{engine.MODULES}:a.b", why="", upstream_fix="", fingerprint=fp(CHECK),
              make=lambda o: o)


def test_status_for_a_given_vllm_version_without_vllm():
    rows = {r.id: r for r in engine.status("0.7.2+cu124")}
    assert rows["vllm07.parallel_state_world_size"].status == "applies"
    assert rows["vllm082.moe_keep_parameters"].status == "not-applicable"
    rows = {r.id: r for r in engine.status("0.7.3")}
    assert rows["vllm07.pt_weights_no_empty_cache"].status == "not-applicable"
    rows = {r.id: r for r in engine.status("0.8.4")}
    assert rows["vllm082.moe_keep_parameters"].status == "applies"


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "compat", "patches", *args], cwd=ROOT, capture_output=True,
                          text=True, env=env)


def test_cli_json_and_bad_version():
    out = _cli("--vllm", "0.8.3", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["id"]: r for r in json.loads(out.stdout)}
    assert rows["vllm082.moe_keep_parameters"]["status"] == "applies"
    assert set(rows["vllm07.parallel_state_world_size"]) == {"id", "patch_set", "versions", "status", "reason",
                                                              "target"}
    bad = _cli("--vllm", "seven")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "seven" in bad.stderr
    assert bad.stderr.startswith("compat patches: error: "), bad.stderr  # the one CLI-wide error format
    usage = _cli("--no-such-flag")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr and "error:" in usage.stderr
    table = _cli("--vllm", "0.7.1")
    assert table.returncode == 0 and "vllm07.external_launcher_local_rank" in table.stdout


def test_activate_imports_neither_vllm_nor_torch():
    code = ("import sys, compat.patches as p; p.activate({}); p.status(); "
            "heavy = [m for m in ('vllm', 'torch', 'numpy', 'transformers') if m in sys.modules]; "
            "assert not heavy, heavy; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_source_edit_errors_are_clear():
    def f(a):
        return a + 1

    with pytest.raises(SourceEditError, match="not found"):
        source_edit(("return a + 2", "return a"))(f)
    g = source_edit(("return a + 1", "return a + 2"))(f)
    assert g(1) == 3 and f(1) == 2
