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


def load_answers(url: str | os.PathLike = DEFAULT_STORE, run_ids=None) -> pd.DataFrame:
    """What generation runs wrote for each test example, beside its reference: run_id, example
    (its index in the test split), reference, generated, and match: the two texts equal as written
    (a run's ``accuracy`` may score only their final answers, ``task.answer_pattern``)."""
    import pandas as pd

    frames = []
    for run_id, arrays in _existing(url).predictions(run_ids, split="test").items():
        if "generated" in arrays and "reference" in arrays:
            generated, reference = [str(v) for v in arrays["generated"]], [str(v) for v in arrays["reference"]]
            frames.append(pd.DataFrame({"run_id": run_id, "example": range(len(generated)),
                                        "reference": reference, "generated": generated,
                                        "match": [g == r for g, r in zip(generated, reference)]}))
    columns = ["run_id", "example", "reference", "generated", "match"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


__all__ = ["load", "load_curves", "load_answers", "open_store", "check_store", "check_row", "StoreError",
           "SCHEMA_VERSION", "DEFAULT_STORE", "STORE_BACKENDS", "ResultsStore"]
