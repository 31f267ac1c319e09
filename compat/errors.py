"""Errors raised for bad input. The CLI turns them into one line and exit status 2."""

from __future__ import annotations


class CompatError(Exception):
    """Bad input: the message says what is wrong and what to do about it."""
