"""Source edits: build a patched function by editing the original's source text, never by retyping it.

A "remove this statement" / "replace this line" patch written as a copy of the whole function silently drops
whatever else the release changed. Here the replacement is the release's own source with one exact snippet edited;
the snippet must be present exactly once or the edit is refused. The edited text is compiled with the original's
module globals, filename, line numbers, future flags and closure cells, and never executed as a `def` (so
decorators, defaults and annotations are not re-evaluated). The engine then swaps `__code__` on the original
function object, so references copied elsewhere (`from x import f`) see the fix too.
"""

from __future__ import annotations
import __future__

import inspect
import textwrap
import types
import weakref
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, List, Sequence, Tuple, Union

_FUTURE_FLAGS = 0
for _name in __future__.all_feature_names:
    _FUTURE_FLAGS |= getattr(__future__, _name).compiler_flag

#: functions produced here; the engine swaps their code into the original instead of replacing the object
SOURCE_EDITS: weakref.WeakSet[types.FunctionType] = weakref.WeakSet()


class SourceEditError(ValueError):
    """The release source does not contain what the edit expects (or cannot be recompiled)."""


@dataclass(frozen=True)
class Edit:
    """Replace `old` (one of several accepted spellings, indentation-agnostic) by `new`.

    `old` is matched line by line after dedenting, at any common indentation; `new` is re-indented to where `old`
    was. A shorter `new` is padded with blank lines so every later line keeps its line number.
    """

    old: Union[str, Tuple[str, ...]]
    new: str = ""
    optional: bool = False  # absent is fine (a block only some verified releases have); twice never is

    @property
    def alternatives(self) -> Tuple[str, ...]:
        return (self.old,) if isinstance(self.old, str) else tuple(self.old)


EditLike = Union[Edit, Tuple[object, str]]


def _as_edit(e: EditLike) -> Edit:
    return e if isinstance(e, Edit) else Edit(*e)  # type: ignore[arg-type]


def _lines(text: str) -> List[str]:
    return textwrap.dedent(text).strip("\n").splitlines()


def _find(src: List[str], snippet: List[str]) -> List[Tuple[int, str]]:
    """Every (line index, indentation) where `snippet` occurs as whole lines at one common indentation."""
    hits = []
    n = len(snippet)
    for i in range(len(src) - n + 1):
        first = src[i]
        indent = first[: len(first) - len(first.lstrip())]
        ok = True
        for k, want in enumerate(snippet):
            have = src[i + k]
            if want.strip() == "":
                ok = have.strip() == ""
            else:
                ok = have == indent + want
            if not ok:
                break
        if ok:
            hits.append((i, indent))
    return hits


def apply_edits(source: str, edits: Iterable[EditLike]) -> str:
    """The edited source text; raises SourceEditError unless each edit matches exactly once."""
    src = source.splitlines()
    for e in map(_as_edit, edits):
        found = []
        for alt in e.alternatives:
            snippet = _lines(alt)
            if not snippet:
                raise SourceEditError("empty snippet")
            found += [(i, ind, len(snippet)) for i, ind in _find(src, snippet)]
        if not found and e.optional:
            continue
        if len(found) != 1:
            first = _lines(e.alternatives[0])[0].strip()
            where = "not found" if not found else f"found {len(found)} times"
            raise SourceEditError(f"expected snippet {first!r}... {where} in the release source")
        i, indent, n = found[0]
        new = [(indent + line) if line.strip() else "" for line in _lines(e.new)] if e.new.strip() else []
        new += [""] * (n - len(new))
        src[i : i + n] = new
    return "\n".join(src) + "\n"


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    yield from code.co_varnames
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from _code_names(c)


def _plain_function(obj: object) -> types.FunctionType:
    """The innermost plain function behind a staticmethod/classmethod/property/functools.wraps chain."""
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    elif isinstance(obj, property):
        obj = obj.fget
    obj = inspect.unwrap(obj)  # type: ignore[arg-type]
    if not isinstance(obj, types.FunctionType):
        raise SourceEditError(f"{obj!r} is not a Python function; source edits need one")
    return obj


def _find_code(code: types.CodeType, name: str) -> types.CodeType:
    for c in code.co_consts:
        if isinstance(c, types.CodeType) and c.co_name == name:
            return c
    raise SourceEditError(f"compiled edit has no code object named {name!r}")


def _shift_lines(code: types.CodeType, delta: int) -> types.CodeType:
    consts = tuple(_shift_lines(c, delta) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_firstlineno=code.co_firstlineno + delta, co_consts=consts)


def edit_function(original: object, edits: Sequence[EditLike]) -> types.FunctionType:
    """A new function whose code is the original's source with `edits` applied.

    Same globals, filename, first line, closure cells (matched by name), defaults, name and qualname. The result is
    registered in SOURCE_EDITS so the engine installs it by swapping `__code__` into the original when possible.
    """
    fn = _plain_function(original)
    code = fn.__code__
    qualname = fn.__qualname__
    parts = qualname.split(".")
    if len(parts) > 1 and parts[-2] != "<locals>":
        prefix = "_" + parts[-2].lstrip("_") + "__"
        if any(n.startswith(prefix) for n in _code_names(code)):
            raise SourceEditError(f"{qualname} uses private name mangling; source edits do not support it")
    source = textwrap.dedent(inspect.getsource(fn))
    edited = apply_edits(source, edits)
    # Wrap in a factory taking the original's free variables as parameters: the inner function then has the same
    # closure layout (super() keeps its __class__ cell). The header sits on the line just above the original's
    # first line so line numbers in tracebacks match the release file.
    header = "def __compat_factory__(%s):" % ", ".join(code.co_freevars)
    text = "\n" * max(code.co_firstlineno - 2, 0) + header + "\n" + textwrap.indent(edited, "    ")
    try:
        module = compile(text, code.co_filename, "exec", flags=code.co_flags & _FUTURE_FLAGS, dont_inherit=True)
    except SyntaxError as exc:
        raise SourceEditError(f"edited source of {qualname} does not compile: {exc}") from None
    inner = _find_code(_find_code(module, "__compat_factory__"), code.co_name)
    if inner.co_firstlineno != code.co_firstlineno:  # only a function on line 1 leaves no room for the header
        inner = _shift_lines(inner, code.co_firstlineno - inner.co_firstlineno)
    if hasattr(inner, "co_qualname"):
        inner = inner.replace(co_qualname=code.co_qualname)  # type: ignore[attr-defined]
    cells = dict(zip(code.co_freevars, fn.__closure__ or ()))
    closure = tuple(cells[name] for name in inner.co_freevars) or None
    new = types.FunctionType(inner, fn.__globals__, fn.__name__, fn.__defaults__, closure)
    new.__kwdefaults__ = dict(fn.__kwdefaults__) if fn.__kwdefaults__ else None
    new.__qualname__ = fn.__qualname__
    new.__module__ = fn.__module__
    new.__doc__ = fn.__doc__
    new.__annotations__ = dict(fn.__annotations__)
    SOURCE_EDITS.add(new)
    return new


def source_edit(*edits: EditLike) -> Callable[[object], types.FunctionType]:
    """A `make` for Patch: `make=source_edit(Edit(old, new), ...)`."""

    def make(original: object) -> types.FunctionType:
        return edit_function(original, edits)

    make.edits = edits  # type: ignore[attr-defined]
    return make
