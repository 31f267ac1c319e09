"""Patch engine: declared, fingerprinted, all-or-nothing, idempotent and revertible patches of vLLM.

A patch is data next to its code (`Patch`); a release-gated group of them is a `PatchSet`. Before anything is
touched, every target of a set is resolved and its source fingerprint compared with the one verified on the
release; a missing or drifted target refuses the whole set (a `Refusal`, reported as a finding), nothing is patched
blindly. Installation swaps `__code__` for source edits (see source.py) or sets the attribute on its owner, and
records exactly what it did so `revert()` restores the original objects. State is per process, under one lock.

Imports nothing heavy: target modules are imported only when a set is applied (after vLLM finished importing) or
when a caller asks `status(verify=True)`.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
import textwrap
import threading
import types
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .. import versions
from .source import SOURCE_EDITS

if TYPE_CHECKING:
    from ..findings import Finding

log = logging.getLogger("compat")

DISABLE_ENV = "COMPAT_DISABLE_PATCHES"
# A Patch whose target is "sys.modules:<dotted.name>" provides an import name that is missing (no code of another
# project is replaced, so it has no fingerprint): make() returns the module, installed as sys.modules[name] (a dotted
# name found there is returned by the import system without importing its parent), revert removes it. It is
# not-applicable where the name's top-level package is installed: the real one serves.
MODULES = "sys.modules"
STATUSES = ("applies", "applied", "not-applicable", "refused", "disabled")


class PatchError(RuntimeError):
    """A patch set the user asked for by name could not be applied (the message says why and what to do)."""


@dataclass(frozen=True)
class Patch:
    id: str
    target: str  # "package.module:Qualified.name"
    why: str
    upstream_fix: str
    fingerprint: Union[str, Tuple[str, ...]]  # one per distinct release source the patch was verified on
    make: Callable[[Any], Any] = field(repr=False, compare=False)  # make(original) -> replacement
    # narrower than the set's range: the releases whose source has this target (transformers renamed the place
    # that checks attn_implementation in 4.54); outside it the patch is not-applicable, the rest of the set applies
    versions: str = ""
    # a sys.modules target's own rule for "not needed here" (returns the reason, "" when needed), instead of the
    # default "the real package is installed" (compat/hf/flash_load.py: installed but does not load)
    needless_check: Optional[Callable[[], str]] = field(default=None, repr=False, compare=False)
    # called after revert() undid this patch (flash_attn_hide: transformers' cached availability answers)
    undone: Optional[Callable[[], None]] = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        module, _, qual = self.target.partition(":")
        if not module or not qual:
            raise ValueError(f"{self.id}: target must look like 'pkg.module:Qualified.name', got {self.target!r}")
        if self.versions:
            versions.spec(self.versions)
        if module == MODULES and self.fingerprints:
            raise ValueError(f"{self.id}: a {MODULES} target provides a missing module; it has no fingerprint")
        for fp in self.fingerprints:
            if not fp.startswith("sha256:") or len(fp) != len("sha256:") + 16:
                raise ValueError(f"{self.id}: fingerprint must be 'sha256:' + 16 hex digits, got {fp!r}")

    @property
    def provides(self) -> str:
        """The import name a sys.modules target provides ("" for attribute targets)."""
        module, _, name = self.target.partition(":")
        return name if module == MODULES else ""

    def needless(self) -> str:
        """Why this patch is not needed here ("" when it is): a provided name whose real package is installed."""
        if not self.provides:
            return ""
        if self.needless_check is not None:
            return self.needless_check()
        import importlib.util

        top = self.provides.partition(".")[0]
        try:
            found = importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            found = False
        return f"{top} is installed: its own {self.provides} serves" if found else ""

    @property
    def fingerprints(self) -> Tuple[str, ...]:
        return (self.fingerprint,) if isinstance(self.fingerprint, str) else tuple(self.fingerprint)

    def fits(self, version: Optional[str]) -> bool:
        """Whether this patch's own release range (if any) holds `version`; the set's range is checked apart."""
        return not self.versions or versions.in_spec(version, self.versions)


@dataclass(frozen=True)
class PatchSet:
    name: str
    package: str  # distribution whose version gates the set; its import name is watched by the hook
    versions: str  # packaging SpecifierSet
    switch: Optional[str] = None  # None: auto-applied; else opt-in via setup(<switch>=...) or COMPAT_<SWITCH>
    ledger: str = ""
    patches: Tuple[Patch, ...] = ()
    # import name whose completion triggers the set; default: the package's top-level module. transformers sets
    # wait for transformers.modeling_utils, so `import transformers` (lazy, no torch) stays as cheap as it was.
    watch: str = ""
    # apply right before the watched module starts executing, not after it finished (the targets must not need it):
    # flash_attn_hide must act before transformers.modeling_flash_attention_utils imports flash_attn
    before: bool = False

    def __post_init__(self) -> None:
        versions.spec(self.versions)  # CompatError on a malformed specifier, at declaration time
        ids = [p.id for p in self.patches]
        if len(ids) != len(set(ids)):
            raise ValueError(f"{self.name}: duplicate patch ids")

    @property
    def module(self) -> str:
        return self.watch or self.package.replace("-", "_")


@dataclass(frozen=True)
class Refusal:
    patch_set: str
    patch_id: str
    reason: str
    explicit: bool = False

    def finding(self) -> Finding:
        from ..findings import Finding

        return Finding(
            id=f"patches.{self.patch_set}.refused",
            severity="error" if self.explicit else "warning",
            message=f"patch set {self.patch_set} not applied: {self.reason}",
            fix=f"upgrade compat, or disable with {DISABLE_ENV}={self.patch_id}",
        )


@dataclass(frozen=True)
class PatchStatus:
    id: str
    patch_set: str
    versions: str
    status: str  # one of STATUSES
    reason: str = ""
    target: str = ""

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------------------------------------
# fingerprints and targets


def source_object(obj: object) -> object:
    """What the fingerprint is taken of: the function behind a staticmethod/classmethod/property."""
    if isinstance(obj, (staticmethod, classmethod)):
        return obj.__func__
    if isinstance(obj, property):
        return obj.fget
    return obj


def fingerprint_source(source: str) -> str:
    import hashlib  # not at module level: activate() runs in every process and never fingerprints

    return "sha256:" + hashlib.sha256(textwrap.dedent(source).encode("utf-8")).hexdigest()[:16]


def fingerprint(obj: object) -> str:
    """sha256 (16 hex) of the dedented source of `obj` (what a Patch declares it expects to replace)."""
    return fingerprint_source(inspect.getsource(source_object(obj)))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Target:
    owner: object  # module or class the attribute lives on
    attr: str
    original: object  # the raw object found (static lookup along the MRO for classes)
    own: bool  # whether `attr` was in owner.__dict__ (else inherited: revert deletes the shadowing attribute)


def resolve(target: str) -> Target:
    """Import the target's module and find the object; ImportError/AttributeError when it is missing."""
    module_name, _, qual = target.partition(":")
    if module_name == MODULES:  # imports nothing: the entry is what is replaced
        return Target(sys.modules, qual, sys.modules.get(qual), qual in sys.modules)
    obj: object = importlib.import_module(module_name)
    parts = qual.split(".")
    for part in parts[:-1]:
        obj = getattr(obj, part)
    name = parts[-1]
    if isinstance(obj, type):
        for klass in obj.__mro__:
            if name in vars(klass):
                return Target(obj, name, vars(klass)[name], name in vars(obj))
        raise AttributeError(f"{target}: class {obj.__qualname__} has no attribute {name!r}")
    return Target(obj, name, getattr(obj, name), True)


def check_target(ps: PatchSet, patch: Patch) -> Tuple[Optional[Target], str]:
    """(target, "") when the target exists and matches a verified fingerprint, else (None, refusal reason)."""
    disable = f"upgrade compat or disable with {DISABLE_ENV}={patch.id}"
    if patch.provides:
        target = resolve(patch.target)
        if target.own:
            return None, f"{patch.provides} is already imported ({target.original!r}); {disable}"
        return target, ""
    try:
        target = resolve(patch.target)
    except Exception as exc:  # ImportError, AttributeError, anything a broken module raises
        what = "not found" if isinstance(exc, AttributeError) else "could not be imported"
        return None, (f"{patch.target} {what} ({type(exc).__name__}: {exc}); compat does not patch code it has "
                      f"not verified; {disable}")
    try:
        actual = fingerprint(target.original)
    except (OSError, TypeError) as exc:
        return None, f"{patch.target}: source unavailable ({exc}); compat does not patch code it has not verified"
    if actual not in patch.fingerprints:
        expected = " or ".join(patch.fingerprints)
        return None, (f"{patch.target} changed since the {ps.package}{ps.versions} code it was verified on "
                      f"(fingerprint {actual}, expected {expected}); compat does not patch code it has not "
                      f"verified; {disable}")
    return target, ""


# ----------------------------------------------------------------------------------------------------------------
# install / undo


@dataclass(frozen=True)
class _Undo:
    patch_id: str
    mode: str  # "code": __code__ swapped on `func`; "attr": owner.attr replaced; "item": sys.modules[attr] set
    owner: object = None
    attr: str = ""
    original: object = None
    own: bool = True
    func: Optional[types.FunctionType] = None
    code: Optional[types.CodeType] = None
    replacement: object = None
    after: Optional[Callable[[], None]] = None  # Patch.undone


def _swappable(original: object, replacement: object) -> Optional[types.FunctionType]:
    """The function whose __code__ can take the replacement's code, or None (then the attribute is replaced)."""
    if not isinstance(replacement, types.FunctionType) or replacement not in SOURCE_EDITS:
        return None
    fn = inspect.unwrap(source_object(original))  # type: ignore[arg-type]
    if not isinstance(fn, types.FunctionType):
        return None
    a, b = fn.__code__, replacement.__code__
    same = (a.co_freevars == b.co_freevars and a.co_argcount == b.co_argcount
            and a.co_posonlyargcount == b.co_posonlyargcount and a.co_kwonlyargcount == b.co_kwonlyargcount
            and a.co_varnames[: a.co_argcount + a.co_kwonlyargcount]
            == b.co_varnames[: b.co_argcount + b.co_kwonlyargcount]
            and (a.co_flags & 0x0C) == (b.co_flags & 0x0C))  # *args / **kwargs
    return fn if same else None


def _install(patch: Patch, target: Target, replacement: object) -> _Undo:
    if patch.provides:  # check_target refused a name already in sys.modules: revert only removes the entry
        sys.modules[target.attr] = replacement  # type: ignore[assignment]
        return _Undo(patch.id, "item", owner=sys.modules, attr=target.attr, replacement=replacement,
                     after=patch.undone)
    fn = _swappable(target.original, replacement)
    if fn is not None:
        undo = _Undo(patch.id, "code", func=fn, code=fn.__code__, replacement=replacement)
        fn.__code__ = replacement.__code__  # type: ignore[attr-defined]
        return undo
    if replacement in SOURCE_EDITS:
        raw = source_object(target.original)
        if inspect.unwrap(raw) is not raw:  # type: ignore[arg-type]
            raise PatchError(f"{patch.target} is decorated and its closure changed; cannot re-apply decorators")
        if isinstance(target.original, (staticmethod, classmethod)):
            replacement = type(target.original)(replacement)  # type: ignore[arg-type]
    setattr(target.owner, target.attr, replacement)
    return _Undo(patch.id, "attr", owner=target.owner, attr=target.attr, original=target.original,
                 own=target.own, replacement=replacement)


def _undo(u: _Undo) -> None:
    if u.mode == "code":
        u.func.__code__ = u.code  # type: ignore[union-attr,misc]
    elif u.mode == "item":
        if u.attr in sys.modules and sys.modules[u.attr] is u.replacement:  # the replacement may be None (a hide)
            del sys.modules[u.attr]
        if u.after is not None:
            u.after()
    elif u.own:
        setattr(u.owner, u.attr, u.original)
    else:
        delattr(u.owner, u.attr)


# ----------------------------------------------------------------------------------------------------------------
# process state

_lock = threading.RLock()
_applied: Dict[str, List[_Undo]] = {}  # set name -> undo records in application order (dict keeps set order)
_refusals: Dict[str, Refusal] = {}
_config: Optional[_Config] = None
_hook = None


@dataclass(frozen=True)
class _Config:
    switches: Mapping[str, object]
    explicit: FrozenSet[str]
    sets: Optional[Tuple[PatchSet, ...]]  # None: the registry in compat.patches.sets


def registry() -> Tuple[PatchSet, ...]:
    from .sets import all_sets

    return all_sets()


def known_ids(sets: Optional[Sequence[PatchSet]] = None) -> Dict[str, Tuple[str, ...]]:
    """Set name -> its patch ids: what COMPAT_DISABLE_PATCHES may name."""
    return {ps.name: tuple(p.id for p in ps.patches) for ps in (registry() if sets is None else sets)}


def disabled_ids(switches: Optional[Mapping[str, object]] = None,
                 sets: Optional[Sequence[PatchSet]] = None) -> FrozenSet[str]:
    """Patch ids / set names switched off by COMPAT_DISABLE_PATCHES (comma or space separated, or `all`, any case)
    plus a `disable_patches` entry of `switches`. CompatError naming the valid ones on an unknown token."""
    from ..switches import Switches

    known = known_ids(sets)
    tokens = Switches.parse(os.environ).disabled(known)
    extra = (switches or {}).get("disable_patches")
    if extra:
        tokens |= Switches.parse({}, disable_patches=extra).disabled(known)
    return tokens


def is_disabled(ps: PatchSet, patch: Patch, disabled: FrozenSet[str]) -> bool:
    return "all" in disabled or ps.name.lower() in disabled or patch.id.lower() in disabled


def switch_on(ps: PatchSet, switches: Optional[Mapping[str, object]] = None) -> bool:
    """Auto sets are always on; opt-in sets when setup(<switch>=...) or COMPAT_<SWITCH> says so (compat.switches
    reads both, with one vocabulary)."""
    if ps.switch is None:
        return True
    from .. import switches as sw

    given = switches or {}
    if ps.switch in given:
        value = given[ps.switch]
        if value is None:
            return False
        if ps.switch == "fp8":
            return sw.parse_fp8(ps.switch, value) is not None
        if ps.switch == "hidden_states":
            return sw.parse_hidden(ps.switch, value)[0]
        return sw.parse_bool(ps.switch, value)
    return sw.current().opt_in(ps.switch)


def decide(ps: PatchSet, version: Optional[str], switches: Mapping[str, object], explicit: bool,
           disabled: FrozenSet[str]) -> Tuple[str, str]:
    """The one answer to "does this set apply here": ("applies", "") or (status, why not) with a status of
    STATUSES. Shared by activation (_wanted) and status(), so what doctor shows is what the hook does."""
    if version is None:
        return "not-applicable", f"{ps.package} is not installed"
    if not versions.in_spec(version, ps.versions):
        return "not-applicable", f"{ps.package} {version} is outside {ps.versions}"
    if ps.switch is not None and not explicit and not switch_on(ps, switches):
        return "disabled", f"opt-in: enable with compat.setup({ps.switch}=...) or COMPAT_{ps.switch.upper()}=1"
    live = [p for p in ps.patches if p.fits(version)]
    if ps.patches and not live:
        return "not-applicable", f"no patch of {ps.name} is for {ps.package} {version}"
    needed = [p for p in live if not p.needless()]
    if live and not needed:
        return "not-applicable", live[0].needless()
    live = needed
    if live and all(is_disabled(ps, p, disabled) for p in live):
        return "disabled", f"{DISABLE_ENV}={os.environ.get(DISABLE_ENV, '') or 'set by setup()'}"
    return "applies", ""


def installed_version(package: str) -> Optional[str]:
    """The installed distribution's version (no import of the package), or None.

    Read through compat.detect.software.installed_version, the one lookup the whole project uses, so the engine
    gates sets on the same version doctor reports.
    """
    from ..detect import software  # looked up at call time: tests and detection share one function

    return software.installed_version(package)


def applied_sets() -> Tuple[str, ...]:
    with _lock:
        return tuple(_applied)


def refusals() -> Tuple[Refusal, ...]:
    with _lock:
        return tuple(_refusals.values())


def findings() -> List[Finding]:
    """compat.findings.Finding for every refused set in this process (for doctor)."""
    return [r.finding() for r in refusals()]


def apply_set(ps: PatchSet, *, explicit: bool = False, disabled: Optional[FrozenSet[str]] = None) -> bool:
    """Apply `ps` now (importing its targets), all-or-nothing and once per process. True when applied.

    Failures roll back what this call installed; they raise PatchError when `explicit` (the user named the set),
    else log a warning and record a Refusal.
    """
    disabled = disabled_ids(sets=[ps]) if disabled is None else disabled
    with _lock:
        if ps.name in _applied:
            return True
        if ps.name in _refusals and not explicit:
            return False
        version = installed_version(ps.package)
        todo = [p for p in ps.patches if not is_disabled(ps, p, disabled) and p.fits(version) and not p.needless()]
        if not todo:
            return False
        failed: Optional[Patch] = None
        reason = ""
        targets: List[Target] = []
        for patch in todo:  # verify every target before touching any
            target, reason = check_target(ps, patch)
            if target is None:
                failed = patch
                break
            targets.append(target)
        undos: List[_Undo] = []
        if failed is None:
            for patch, target in zip(todo, targets):
                try:
                    undos.append(_install(patch, target, patch.make(target.original)))
                except Exception as exc:
                    failed = patch
                    reason = f"{patch.id} failed while applying ({type(exc).__name__}: {exc}); set rolled back"
                    for u in reversed(undos):
                        try:
                            _undo(u)
                        except Exception:  # pragma: no cover - leave a trace, keep undoing the rest
                            log.exception("compat: rollback of %s failed", u.patch_id)
                    break
        if failed is not None:
            refusal = Refusal(ps.name, failed.id, reason, explicit)
            _refusals[ps.name] = refusal
            if explicit:
                raise PatchError(f"patch set {ps.name}: {reason}")
            log.warning("compat: patch set %s not applied: %s", ps.name, reason)
            return False
        _applied[ps.name] = undos
        _refusals.pop(ps.name, None)
        log.info("compat: applied patch set %s (%s)", ps.name, ", ".join(u.patch_id for u in undos))
        return True


def _wanted(ps: PatchSet, cfg: _Config, disabled: FrozenSet[str]) -> bool:
    """Whether `ps` should be applied under `cfg` to the installed release; PatchError for explicit misfits."""
    explicit = ps.name in cfg.explicit
    version = installed_version(ps.package)
    state, reason = decide(ps, version, cfg.switches, explicit, disabled)
    if state == "not-applicable" and explicit:
        raise PatchError(f"patch set {ps.name} is for {ps.package}{ps.versions}; installed: {version} ({reason})")
    if state == "disabled" and explicit:
        log.warning("compat: patch set %s was asked for but %s disables it", ps.name, DISABLE_ENV)
    return state == "applies"


def apply_for(module: str) -> List[str]:
    """Apply the activated sets gated on the package imported as `module` (the hook's callback)."""
    # Finish (or wait for another thread finishing) the package import *before* taking the lock: a thread that
    # imports vllm runs the hook under vllm's module lock and then needs ours, so holding ours while waiting for
    # vllm's would deadlock. In the hook's own thread this returns the just-executed module at once.
    try:
        importlib.import_module(module)
    except Exception as exc:
        log.warning("compat: %s failed to import (%s); its patch sets were not applied", module, exc)
        return []
    return _apply_watching(module, before_only=False)


def apply_before(module: str) -> List[str]:
    """The import hook's callback for `before` sets: `module` is about to execute (so it is not imported here)."""
    cfg = _config
    try:  # needless checks that import (flash_attn) run first, outside our lock (cached there); not for sets off
        disabled = disabled_ids(cfg.switches, cfg.sets) if cfg is not None else frozenset()
        for ps in (cfg.sets if cfg.sets is not None else registry()) if cfg is not None else ():
            if not (ps.before and ps.module == module):
                continue
            version = installed_version(ps.package)
            for p in ps.patches:
                if versions.in_spec(version, ps.versions) and p.fits(version) and not is_disabled(ps, p, disabled):
                    p.needless()
    except Exception:  # pragma: no cover - decided again under the lock, where it is reported
        pass
    return _apply_watching(module, before_only=True)


def apply_named(name: str) -> bool:
    """Apply the set called `name` now, if activate()'s config wants it (its kill switch, sets, switches and
    explicit names, the set's version range and needless checks: the same gate as the import hook). For sets whose
    trigger is not an import (flash_attn_hide from transformers 4.54: a flash_attention_2 request)."""
    with _lock:
        cfg = _config
        if cfg is None or name in _applied:
            return name in _applied
        try:
            disabled = disabled_ids(cfg.switches, cfg.sets)
        except Exception as exc:  # never fail the user's model load
            log.error("compat: %s; no patch set applied", exc)
            return False
        for ps in cfg.sets if cfg.sets is not None else registry():
            if ps.name == name and _wanted(ps, cfg, disabled):
                return apply_set(ps, explicit=ps.name in cfg.explicit, disabled=disabled)
        return False


def _apply_watching(module: str, before_only: bool) -> List[str]:
    with _lock:
        cfg = _config
        if cfg is None:
            return []
        try:
            disabled = disabled_ids(cfg.switches, cfg.sets)
        except Exception as exc:  # changed since activate() checked it; never fail the user's import
            log.error("compat: %s; no patch set applied", exc)
            return []
        return [ps.name for ps in (cfg.sets if cfg.sets is not None else registry())
                if ps.module == module and (ps.before or not before_only) and _wanted(ps, cfg, disabled)
                and apply_set(ps, explicit=ps.name in cfg.explicit, disabled=disabled)]


def activate(switches: Optional[Mapping[str, object]] = None, explicit: Iterable[str] = frozenset(), *,
             sets: Optional[Sequence[PatchSet]] = None) -> None:
    """Apply enabled sets when their package finishes importing, or at once if it already has. Never imports vLLM.

    switches: setup() keywords (opt-in set switches like fp8=True; `disable_patches` adds to the kill switch).
    explicit: set names the user asked for by name: failures raise PatchError instead of logging.
    sets: override the registry (tests).
    """
    global _config, _hook
    from .hooks import install_import_hook, uninstall_import_hook

    known = sets if sets is not None else registry()
    unknown = sorted(set(explicit).difference(ps.name for ps in known))
    if unknown:
        from ..errors import CompatError

        raise CompatError(f"unknown patch set(s) {', '.join(unknown)}; known: {', '.join(ps.name for ps in known)}")
    disabled_ids(switches, known)  # CompatError now, at setup(), for a kill switch naming nothing known
    with _lock:
        _config = _Config(dict(switches or {}), frozenset(explicit), tuple(sets) if sets is not None else None)
        modules = {ps.module for ps in known}
        early = {ps.module for ps in known if ps.before}
        late = {ps.module for ps in known if not ps.before}
        now = sorted(m for m in modules if m in sys.modules)
        later = modules.difference(now)
        if _hook is not None and not (later.issubset(_hook.names) and early & later <= _hook.before
                                      and late & later <= _hook.after):
            uninstall_import_hook(_hook)
            _hook = None
        if later and (_hook is None or _hook not in sys.meta_path):
            _hook = install_import_hook(apply_for, late & later, before=early & later, before_callback=apply_before)
    for module in now:  # outside the lock: see apply_for
        apply_for(module)


def revert() -> None:
    """Undo every applied set (reverse order), forget refusals and remove the import hook."""
    global _config, _hook
    from .hooks import uninstall_import_hook

    with _lock:
        for name in reversed(list(_applied)):
            for u in reversed(_applied[name]):
                _undo(u)
        _applied.clear()
        _refusals.clear()
        uninstall_import_hook(_hook)
        _hook = None
        _config = None


# ----------------------------------------------------------------------------------------------------------------
# status


def status(vllm_version: Optional[str] = None, switches: Optional[Mapping[str, object]] = None, *,
           verify: bool = False, sets: Optional[Sequence[PatchSet]] = None) -> List[PatchStatus]:
    """Every patch with its set, specifier and status for the installed (or given) vLLM version.

    applies: would apply (vLLM not imported yet, or not checked); applied: applied in this process; refused: the
    target is missing or drifted (known once vLLM is imported, or with verify=True, which imports the targets of the
    installed release); disabled: kill switch, or an opt-in set whose switch is off; not-applicable: other release.
    Raises compat.errors.CompatError on a malformed `vllm_version`.
    """
    if vllm_version is not None:
        versions.parse(vllm_version, "vLLM version")
    cfg = _config
    switches = dict(cfg.switches if cfg and switches is None else switches or {})
    explicit = cfg.explicit if cfg else frozenset()
    chosen = sets if sets is not None else (cfg.sets if cfg and cfg.sets is not None else registry())
    disabled = disabled_ids(switches, chosen)
    out: List[PatchStatus] = []
    for ps in chosen:
        installed = installed_version(ps.package)
        given = vllm_version if (vllm_version is not None and ps.package == "vllm") else None
        version = given or installed
        # the given release is this process's when they are the same release: 0.7.2 is 0.7.2+cu118
        here = given is None or (installed is not None and versions.release(given) == versions.release(installed))
        with _lock:
            undos = {u.patch_id: u for u in _applied.get(ps.name, ())} if here else {}
            refusal = _refusals.get(ps.name) if here else None
        state, why = decide(ps, version, switches, ps.name in explicit, disabled)
        for p in ps.patches:
            def row(state: str, reason: str = "", p: Patch = p) -> PatchStatus:
                return PatchStatus(p.id, ps.name, p.versions or ps.versions, state, reason, p.target)

            if p.id in undos:
                item = f"{p.provides} hidden (None in sys.modules)" if undos[p.id].replacement is None \
                    else f"{p.provides} provided in sys.modules"
                how = {"code": "code swapped in place", "item": item}.get(undos[p.id].mode, "attribute replaced")
                out.append(row("applied", f"applied in this process ({how})"))
            elif is_disabled(ps, p, disabled):
                out.append(row("disabled", f"{DISABLE_ENV}={os.environ.get(DISABLE_ENV, '') or 'set by setup()'}"))
            elif state != "applies":
                out.append(row(state, why))
            elif not p.fits(version):
                out.append(row("not-applicable", f"{ps.package} {version} is outside this patch's {p.versions}"))
            elif needless := p.needless():
                out.append(row("not-applicable", needless))
            elif refusal is not None:
                out.append(row("refused", refusal.reason))
            else:
                reason = ""
                if here and (verify or p.target.partition(":")[0] in sys.modules):
                    target, reason = check_target(ps, p)
                    if target is None:
                        out.append(row("refused", reason))
                        continue
                    reason = (f"{p.provides} is not imported: provided when {ps.module} is imported" if p.provides
                              else "target verified (fingerprint matches)")  # a sys.modules target has no fingerprint
                elif given is not None and not here:
                    reason = f"would apply to {ps.package} {given}"
                else:
                    reason = f"applies when {ps.module} is imported"
                out.append(row("applies", reason))
    return out


patch_status = status


def status_dicts(statuses: Iterable[PatchStatus]) -> List[Dict[str, Any]]:
    return [s.as_dict() for s in statuses]


def format_status_table(statuses: Sequence[PatchStatus]) -> str:
    """A plain text table: patch, set, versions, status, reason."""
    head = ("patch", "set", "versions", "status", "reason")
    rows = [head] + [(s.id, s.patch_set, s.versions, s.status, s.reason) for s in statuses]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for r in rows:
        lines.append("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4])
    if not statuses:
        lines.append("(no patches declared)")
    return "\n".join(line.rstrip() for line in lines)
