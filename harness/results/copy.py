"""Copy runs from one results store into another: an SQLite file from a laptop into the shared
PostgreSQL database, or the database's runs into a file to take away.

Each run goes over whole (its row, its curves, its per-example predictions of every split) in
one transaction of the target store; a run whose ``run_id`` the target already has is skipped,
so copying twice, or copying back, duplicates nothing, and so is a finished run of a
configuration the target already holds finished (its reports would count it twice). Claims are
not copied: they belong to runs in progress on the source.

Each run is checked as an imported one is (:mod:`harness.results.checks`): a row that another
program wrote (a value that is not a number, an infinite metric, an integer past 64 bits,
predictions of the wrong length) is refused and named, not copied. Its config hash is not
recomputed: a store's rows are the harness's own, whose hash it computed when they ran. A
missing value and NaN read back alike from a store: both are copied as missing.
"""
from __future__ import annotations

import math
import sqlite3
import sys
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field

from harness.errors import first_line
from harness.fields import FIELDS
from harness.results.checks import Refused, check_run
from harness.results.store import StoreError, open_store, redact

_CAST = {"text": str, "integer": int, "real": float, "bool": lambda v: bool(int(v))}


def backend_errors() -> tuple[type, ...]:
    """What a backend raises when the database refuses a write (a right, a read-only file)."""
    psycopg = sys.modules.get("psycopg")  # only a store that imported it can raise its errors
    return (sqlite3.Error, OSError) + ((psycopg.Error,) if psycopg else ())


@contextmanager
def writing(url: str):
    """A database's own error (no right to insert, a read-only file) as one StoreError line."""
    try:
        yield
    except backend_errors() as exc:
        raise StoreError(f"cannot write the results store {redact(url)}: "
                         f"{redact(first_line(exc))}") from None


class Target:
    """A store that checked runs are added to: never a run it has, nor a second finished run of a
    configuration it holds finished. A refused write is a StoreError naming the store."""

    def __init__(self, url: str) -> None:
        self.url = url
        with writing(url):
            self.store = open_store(url)
            self.ids = set(self.store.runs()["run_id"])
            self.finished = set(self.store.finished_hashes())

    def add(self, row: dict, curves: list, predictions: dict) -> str:
        """``there`` (its run_id is in the store), ``duplicate`` (a finished run of its
        configuration is) or ``added``."""
        if row["run_id"] in self.ids:
            return "there"
        if row["status"] == "finished" and row["config_hash"] in self.finished:
            return "duplicate"
        with writing(self.url):
            self.store.record(row, curves, predictions)
        self.ids.add(row["run_id"])
        if row["status"] == "finished":
            self.finished.add(row["config_hash"])
        return "added"


@dataclass
class Copied:
    """What a copy did: runs added, there already (by run_id), skipped (a finished run of the
    configuration is there), and one line for each run refused."""

    copied: int = 0
    there: int = 0
    duplicates: int = 0
    refused: list[str] = field(default_factory=list)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def stored_row(record: dict) -> dict:
    """A row read back from a store as the Python values ``record`` takes (empty fields left out);
    Refused naming the field whose value is not of its column's type."""
    out = {}
    for name, value in record.items():
        if name in FIELDS and not _missing(value):
            try:
                out[name] = _CAST[FIELDS[name].type](value)
            except (TypeError, ValueError, OverflowError):
                raise Refused(f"field {name!r} holds {str(value)[:40]!r}, not "
                              f"{FIELDS[name].type}") from None
    return out


def _curve(point: dict) -> dict:
    try:
        return {**point, "value": None if _missing(point["value"]) else float(point["value"]),
                "epoch": None if _missing(point["epoch"]) else int(point["epoch"])}
    except (TypeError, ValueError, OverflowError):
        raise Refused(f"a curve point holds {point['epoch']!r}, {point['value']!r} "
                      f"for its epoch and value") from None


def _predictions(src, ids: list, split: str) -> tuple[dict, set]:
    """``{run_id: arrays}`` of ``split``, and the runs whose kept arrays cannot be read (a blob
    another program wrote): read run by run once the whole split fails, to name them."""
    try:
        return src.predictions(ids, split=split), set()
    except (zlib.error, ValueError, TypeError):
        got, broken = {}, set()
        for run_id in ids:
            try:
                got.update(src.predictions([run_id], split=split))
            except (zlib.error, ValueError, TypeError):
                broken.add(run_id)
        return got, broken


def _read(src, runs) -> tuple[dict, dict, set]:
    """Curves and predictions (every split) of ``runs``, by run_id, and the runs whose
    predictions cannot be read."""
    by_run = {run_id: part.drop(columns="run_id").to_dict("records")
              for run_id, part in src.curves().groupby("run_id")}
    ids = [r["run_id"] for r in runs]
    predictions: dict[str, dict] = {}
    unreadable: set = set()
    for split in src.prediction_splits():
        got, broken = _predictions(src, ids, split)
        unreadable |= broken
        for run_id, arrays in got.items():
            predictions.setdefault(run_id, {})[split] = arrays
    return by_run, predictions, unreadable


def copy_runs(source: str, target: str, status: str | None = None) -> Copied:
    """Copy ``source``'s runs (those with ``status``, or all) into ``target``, made if needed."""
    src, dst = open_store(source, create=False), Target(target)
    runs = src.runs()
    if status is not None:
        runs = runs[runs["status"] == status]
    done = Copied(there=int(runs["run_id"].isin(dst.ids).sum()))
    todo = [r for r in runs.to_dict("records") if r["run_id"] not in dst.ids]
    if not todo:
        return done
    by_run, predictions, unreadable = _read(src, todo)
    for record in todo:
        try:
            if record["run_id"] in unreadable:
                raise Refused("its per-example predictions cannot be read")
            run = check_run(stored_row(record), [_curve(c) for c in by_run.get(record["run_id"], [])],
                            predictions.get(record["run_id"]), verify_hash=False)
        except Refused as exc:
            done.refused.append(f"run {record['run_id']} in {redact(source)}: {exc}; not copied")
            continue
        outcome = dst.add(*run)
        done.copied += outcome == "added"
        done.duplicates += outcome == "duplicate"
        done.there += outcome == "there"
    return done
