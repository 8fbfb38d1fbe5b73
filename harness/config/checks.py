"""The checks the schemas' ``__post_init__`` methods (and methods' own schemas) make: each raises
:class:`~harness.errors.ConfigError` with the message it is given.
"""
from __future__ import annotations

import math
from typing import Any

from harness.errors import ConfigError


def check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def positive_int(key: str, value: Any) -> None:
    check(isinstance(value, int) and not isinstance(value, bool) and value > 0,
          f"{key} must be a positive integer, got {value!r}")


def positive_finite(key: str, value: Any) -> None:
    """A rate, a norm: a finite number > 0 (NaN and inf are refused)."""
    check(isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value) and value > 0,
          f"{key} must be a finite number > 0, got {value!r}")
