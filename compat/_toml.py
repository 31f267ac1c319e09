"""TOML loading with errors that name the file and say what to do."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Union

from .errors import CompatError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11
    import tomli as tomllib

DATA_DIR = Path(__file__).resolve().parent / "data"


def load_toml(path: Union[str, Path], what: str = "TOML file") -> Dict[str, Any]:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise CompatError(f"{what} {p} does not exist; check the path") from None
    except OSError as exc:
        raise CompatError(f"cannot read {what} {p}: {exc.strerror}; check its permissions") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CompatError(f"{what} {p} is not valid TOML ({exc}); fix the file or remove it") from None


_data_cache: Dict[str, Dict[str, Any]] = {}


def load_data(name: str) -> Dict[str, Any]:
    """A knowledge table from compat/data/<name>.toml, parsed once per process."""
    table = _data_cache.get(name)
    if table is None:
        table = _data_cache[name] = load_toml(DATA_DIR / f"{name}.toml", what="compat data table")
    return table
