"""argparse with compat's error contract: bad usage is one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
from typing import NoReturn

from .errors import CompatError


class ArgumentParser(argparse.ArgumentParser):
    """Raises CompatError instead of printing the usage block; compat.cli prints it as one line (exit 2)."""

    def error(self, message: str) -> NoReturn:
        raise CompatError(f"{message} (see `{self.prog} --help`)")
