"""TOML loading with errors that name the file and say what to do."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any, Dict, Union

from .errors import CompatError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11
    import tomli as tomllib

DATA_DIR = Path(__file__).resolve().parent / "data"


USER_FILE_MAX_BYTES = 1 << 20   # a hardware description or a profile is a few hundred bytes
DATA_FILE_MAX_BYTES = 16 << 20  # compat's own tables


def read_regular(path: Union[str, Path], what: str = "file", limit: int = USER_FILE_MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; CompatError (one line, with a fix) otherwise.

    Checked with stat before opening, and opened non-blocking, so a FIFO, a device (/dev/zero) or a huge file
    can neither hang nor exhaust memory."""
    p = Path(path)
    try:
        st = os.stat(p)
        if stat.S_ISDIR(st.st_mode):
            raise CompatError(f"{what} {p} is a directory; give the path of a file")
        if not stat.S_ISREG(st.st_mode):
            raise CompatError(f"{what} {p} is not a regular file (a FIFO, socket or device); give the path of a file")
        if st.st_size > limit:
            raise CompatError(f"{what} {p} is {st.st_size} bytes, more than the {limit} compat reads; "
                              "give the right file")
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between stat and open
                raise CompatError(f"{what} {p} is not a regular file; give the path of a file")
            chunks, size = [], 0
            while size <= limit:
                chunk = os.read(fd, min(1 << 16, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise CompatError(f"{what} {p} does not exist; check the path") from None
    except OSError as exc:
        raise CompatError(f"cannot read {what} {p}: {exc.strerror or exc}; check the path and its permissions") from None
    if size > limit:
        raise CompatError(f"{what} {p} grew past the {limit} bytes compat reads; give the right file")
    return b"".join(chunks)


def load_toml(path: Union[str, Path], what: str = "TOML file", limit: int = USER_FILE_MAX_BYTES) -> Dict[str, Any]:
    p = Path(path)
    raw = read_regular(p, what, limit)
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise CompatError(f"{what} {p} is not valid TOML ({reason}); fix the file or remove it") from None
    except RecursionError:
        raise CompatError(f"{what} {p} is not valid TOML (nested too deeply); fix the file") from None


_data_cache: Dict[str, Dict[str, Any]] = {}


def load_data(name: str) -> Dict[str, Any]:
    """A knowledge table from compat/data/<name>.toml, parsed once per process."""
    table = _data_cache.get(name)
    if table is None:
        table = _data_cache[name] = load_toml(DATA_DIR / f"{name}.toml", what="compat data table",
                                                    limit=DATA_FILE_MAX_BYTES)
    return table
