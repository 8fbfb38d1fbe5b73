"""Read the results store: ``harness.results.load()`` returns one row per run as a DataFrame.

A store is named by a URL (``store.url``, ``--store``): a plain path or ``sqlite:///path`` is an
SQLite file; other schemes pick other backends registered in :data:`STORE_BACKENDS`.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from harness.results.store import (SCHEMA_VERSION, STORE_BACKENDS, ResultsStore, StoreError,
                                   check_row, check_store, decode_json_columns, open_store)
from harness.results import backends as _backends  # noqa: F401 - registers the built-in backends

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_STORE = "results/results.sqlite"


def _existing(url: str | os.PathLike) -> ResultsStore:
    """The store at ``url``; StoreError ("no results store at ...") if there is none."""
    return open_store(url, create=False)


def load(url: str | os.PathLike = DEFAULT_STORE, status: str | None = None,
         decode: bool = True) -> pd.DataFrame:
    """All runs in the store (or those with ``status``), oldest first.

    With ``decode``, the JSON columns are also given parsed as ``config``, ``provenance`` and
    ``details`` (dicts).
    """
    df = _existing(url).runs()
    if status is not None:
        df = df[df["status"] == status].reset_index(drop=True)
    return decode_json_columns(df) if decode else df


def load_curves(url: str | os.PathLike = DEFAULT_STORE) -> pd.DataFrame:
    """Per-epoch curves in long form: run_id, epoch, variant, split, metric, value."""
    return _existing(url).curves()


__all__ = ["load", "load_curves", "open_store", "check_store", "check_row", "StoreError",
           "SCHEMA_VERSION", "DEFAULT_STORE", "STORE_BACKENDS", "ResultsStore"]
