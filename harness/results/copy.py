"""Copy runs from one results store into another: an SQLite file from a laptop into the shared
PostgreSQL database, or the database's runs into a file to take away.

Each run goes over whole (its row, its curves, its per-example predictions of every split) in
one transaction of the target store; a run whose ``run_id`` the target already has is skipped,
so copying twice, or copying back, duplicates nothing. Claims are not copied: they belong to
runs in progress on the source.
"""
from __future__ import annotations

import math

from harness.fields import FIELDS
from harness.results.store import open_store

_CAST = {"text": str, "integer": int, "real": float, "bool": lambda v: bool(int(v))}


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def stored_row(record: dict) -> dict:
    """A row read back from a store as the Python values ``record`` takes (empty fields left out)."""
    return {name: _CAST[FIELDS[name].type](value) for name, value in record.items()
            if name in FIELDS and not _missing(value)}


def copy_runs(source: str, target: str, status: str | None = None) -> tuple[int, int]:
    """Copy ``source``'s runs (those with ``status``, or all) into ``target``, made if needed.
    Returns (copied, already there)."""
    src, dst = open_store(source, create=False), open_store(target)
    runs = src.runs()
    if status is not None:
        runs = runs[runs["status"] == status]
    have = set(dst.runs()["run_id"])
    todo = [r for r in runs.to_dict("records") if r["run_id"] not in have]
    if not todo:
        return 0, len(runs)
    curves = src.curves()
    by_run = {run_id: part.drop(columns="run_id").to_dict("records")
              for run_id, part in curves.groupby("run_id")}
    ids = [r["run_id"] for r in todo]
    predictions: dict[str, dict] = {}
    for split in src.prediction_splits():
        for run_id, arrays in src.predictions(ids, split=split).items():
            predictions.setdefault(run_id, {})[split] = arrays
    for record in todo:
        rows = [{**c, "value": None if _missing(c["value"]) else float(c["value"]),
                 "epoch": None if _missing(c["epoch"]) else int(c["epoch"])}
                for c in by_run.get(record["run_id"], [])]
        dst.record(stored_row(record), rows, predictions.get(record["run_id"]))
    return len(todo), len(runs) - len(todo)
