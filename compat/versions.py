"""Version helpers: parse once, compare with packaging (never as strings), clear errors on bad input."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Optional, Tuple

from .errors import CompatError

if TYPE_CHECKING:  # packaging is imported on first use: setup() on a machine without vLLM never needs it
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version


@lru_cache(maxsize=256)
def parse(text: str, what: str = "version") -> Version:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text)
    except InvalidVersion:
        raise CompatError(f"{what} {text!r} is not a valid version (expected e.g. 0.7.2)") from None


def release(text: str) -> Version:
    """The public release of a version: 0.7.2+cu124 -> 0.7.2, 2.5.1+cu124 -> 2.5.1."""
    return parse(parse(text).public)


@lru_cache(maxsize=256)
def spec(text: str) -> SpecifierSet:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        raise CompatError(f"{text!r} is not a valid version specifier (expected e.g. >=0.7.0,<0.7.3)") from None


def in_spec(version: Optional[str], specifier: str) -> bool:
    """Whether a release satisfies a specifier; local tags ignored and pre-releases admitted."""
    if version is None:
        return False
    return spec(specifier).contains(release(version), prereleases=True)


def driver_tuple(version: str) -> Tuple[int, ...]:
    """NVIDIA driver versions are dotted integers (535.104.05); compare them as tuples."""
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        raise CompatError(f"driver version {version!r} is not dotted numbers like 535.104.05") from None
