"""Post-import hook: run a callback right after a watched module finishes importing (or right before it starts).

Watched names are top-level packages (vllm) or submodules (transformers.modeling_utils: the transformers sets wait
for it, because `import transformers` itself is lazy and must stay free of torch; a submodule's spec is found with
its parent's __path__, exactly as for a package).

The finder sits in `sys.meta_path` of every process that called `compat.setup()`, so `find_spec` is one set
lookup for every other import. For a watched name it asks the remaining finders for the real spec and wraps only
its loader; the wrapper puts the real loader back on the module and spec before executing it (nothing keeps a
reference to the wrapper afterwards), then calls the callback once the package body has completed, so the
callback may import the package's submodules safely. The hook removes itself once every watched name has fired.
Nothing heavy is imported here.
"""

from __future__ import annotations

import sys
import threading
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any, Callable, Iterable, Optional, Sequence, cast

Callback = Callable[[str], object]


class _Loader:
    """Delegates to the real loader; after exec_module completes, fires the hook's callback."""

    def __init__(self, finder: PostImportFinder, real: object, name: str) -> None:
        self._finder = finder
        self._real = real
        self._name = name

    def create_module(self, spec: ModuleSpec) -> Optional[ModuleType]:  # importlib protocol
        create = getattr(self._real, "create_module", None)
        return cast(Optional[ModuleType], create(spec)) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self._real
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._real
        if self._name in self._finder.before:
            self._finder._before_callback(self._name)  # before the body: the callback must not need the module
        self._real.exec_module(module)  # type: ignore[attr-defined]
        self._finder._fired(self._name)

    def __getattr__(self, item: str) -> Any:  # get_resource_reader, is_package, get_code ...
        return getattr(self._real, item)


class PostImportFinder:
    """A meta path finder that never finds anything itself; it only wraps the loader of watched packages."""

    def __init__(self, names: Iterable[str], callback: Callback, before: Iterable[str] = (),
                 before_callback: Optional[Callback] = None) -> None:
        self.before = frozenset(before)
        self.after = frozenset(names)      # a name may be in both: both callbacks fire, around the body
        self.names = self.after | self.before
        self._pending = set(self.names)
        self._callback = callback
        self._before_callback = before_callback or callback
        self._local = threading.local()
        self._lock = threading.Lock()

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[ModuleType] = None) -> Optional[ModuleSpec]:
        if fullname not in self._pending or getattr(self._local, "busy", False):
            return None
        self._local.busy = True
        try:
            for finder in list(sys.meta_path):
                if finder is self:
                    continue
                find = getattr(finder, "find_spec", None)
                if find is None:
                    continue
                spec: Optional[ModuleSpec] = find(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._local.busy = False
        assert spec is not None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec  # namespace package or legacy loader: nothing to wrap; the caller's fallback covers it
        spec.loader = _Loader(self, spec.loader, fullname)  # type: ignore[assignment]
        return spec

    def _fired(self, name: str) -> None:
        with self._lock:
            self._pending.discard(name)
            done = not self._pending
        if done:
            uninstall_import_hook(self)
        if name in self.after:
            self._callback(name)


def install_import_hook(callback: Callback, names: Iterable[str] = ("vllm",), before: Iterable[str] = (),
                        before_callback: Optional[Callback] = None) -> PostImportFinder:
    """Install a finder that calls `callback(name)` after each watched module finishes importing, and
    `before_callback(name)` right before each module of `before` starts executing (its parent package is
    imported by then; the module itself is not)."""
    finder = PostImportFinder(names, callback, before, before_callback)
    sys.meta_path.insert(0, finder)
    return finder


def uninstall_import_hook(finder: Optional[PostImportFinder]) -> None:
    if finder is None:
        return
    try:
        sys.meta_path.remove(finder)
    except ValueError:
        pass
