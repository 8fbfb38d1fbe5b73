"""Errors that reach the user as one line (exit code 2 for bad input)."""
from __future__ import annotations


class ConfigError(ValueError):
    """A bad config value; the message is one line that names the key and the allowed values."""


class UnknownNameError(KeyError):
    """An unknown registry name; ``str()`` is one line naming the known values."""

    def __str__(self) -> str:
        return str(self.args[0])


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line that is not blank (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
