"""Errors that reach the user as one line (exit code 2 for bad input)."""
from __future__ import annotations


class ConfigError(ValueError):
    """A bad config value; the message is one line that names the key and the allowed values."""


class UnknownNameError(KeyError):
    """An unknown registry name; ``str()`` is one line naming the known values."""

    def __str__(self) -> str:
        return str(self.args[0])
