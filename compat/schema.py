"""Typed reading of parsed TOML/JSON tables: one line per error, naming the file, the field, the value and a fix.

The schemas themselves live with their input (detect/simulate.py: hardware files, profiles.py: profiles,
detect/cache.py: the detection cache); this module only holds the small checks they share.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Optional, Tuple

from .errors import CompatError

_CC = re.compile(r"([1-9][0-9]?)\.([0-9])")  # NVIDIA compute capabilities: major.minor, minor one digit


class Table:
    """A table of `where` (file and path inside it) that checks each field as it is read."""

    def __init__(self, data: object, where: str, fix: str) -> None:
        if not isinstance(data, dict):
            raise CompatError(f"{where} must be a table, got {_show(data)}; {fix}")
        self.data: Mapping[str, Any] = data
        self.where = where
        self.fix = fix

    def error(self, key: str, value: object, want: str) -> CompatError:
        return CompatError(f"{self.where}: {key} = {_show(value)} is not {want}; {self.fix}")

    def only(self, allowed: Iterable[str]) -> None:
        known = tuple(allowed)
        unknown = sorted(k for k in self.data if k not in known)
        if unknown:
            raise CompatError(f"{self.where}: unknown field {unknown[0]!r} (known: {', '.join(known)}); {self.fix}")

    def has(self, key: str) -> bool:
        return key in self.data

    def _get(self, key: str, required: bool) -> Any:
        if key not in self.data:
            if required:
                raise CompatError(f"{self.where} lacks {key}; {self.fix}")
            return None
        return self.data[key]

    def text(self, key: str, default: Optional[str] = None, *, required: bool = False,
            nonempty: bool = False) -> Any:
        value = self._get(key, required)
        if value is None:
            return default
        if not isinstance(value, str) or (nonempty and not value.strip()):
            raise self.error(key, value, "a non-empty quoted string" if nonempty else "a quoted string")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, value, "true or false (unquoted)")
        return value

    def whole(self, key: str, default: Optional[int] = None, *, required: bool = False, minimum: int = 0) -> Any:
        value = self._get(key, required)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, value, f"a whole number >= {minimum}")
        return value

    def strings(self, key: str, *, choices: Tuple[str, ...] = ()) -> Tuple[str, ...]:
        value = self._get(key, False)
        if value is None:
            return ()
        want = f"a list of strings from {', '.join(choices)}" if choices else "a list of strings"
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise self.error(key, value, f"{want} (e.g. [\"{choices[0] if choices else 'x'}\"])")
        bad = [x for x in value if choices and x not in choices]
        if bad:
            raise self.error(key, value, want)
        return tuple(value)

    def table(self, key: str) -> Table:
        value = self._get(key, False)
        return Table({} if value is None else value, f"{self.where} [{key}]", self.fix)

    def tables(self, key: str) -> Tuple[Table, ...]:
        value = self._get(key, False)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.error(key, value, f"a list of tables ([[{key}]])")
        return tuple(Table(v, f"{self.where} {key}[{n}]", self.fix) for n, v in enumerate(value))


def compute_capability(value: object) -> Optional[Tuple[int, int]]:
    """(major, minor) of a quoted "8.0"-style compute capability; None when it is not one ("8.10", 8.0, "sm_80")."""
    if not isinstance(value, str):
        return None
    m = _CC.fullmatch(value)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
