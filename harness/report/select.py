"""Choose which runs a report covers, by any axis of the sweep and by protocol stage.

Failed runs never enter an aggregate: :func:`select_runs` hands them back separately so the report
can list them apart. Under ``protocol=tuned`` a grid point has search trials (``stage=search``)
and final runs (``stage=final``); a report covers the final runs and every ``protocol=fixed`` run
(empty stage) unless ``Selection.stage`` says otherwise, so that search trials never enter an
aggregate, a table or a test by default. :func:`search_runs` hands the search trials back apart
for the learning-rate search figure.

A configuration is one run: ``force=true`` or two sweeps over the same grid can store several
finished rows with one ``config_hash``, and they are not independent seeds (the same config,
seed included, computed again). :func:`deduplicate` keeps the latest of them (by ``created_at``)
and hands the others back, so the report can say how many it left out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import json

import numpy as np
import pandas as pd

from harness.report.example_tests import Predictions
from harness.results import StoreError, open_store

# Axes a selection can filter on, as they are named in the runs table.
AXES = ("sweep", "task", "model", "method", "quant", "r", "seed")
# Selection.stage: "final" (default) keeps the final runs of tuned grid points and every fixed-
# protocol run (empty stage); "search" only the search trials; "all" every run.
STAGES = ("final", "search", "all")


@dataclass
class Selection:
    """Keep a run when, for every axis given, its value is one of those listed.

    ``since`` / ``until`` bound ``created_at`` (ISO dates or times, inclusive; a bare date in
    ``until`` covers the whole day). ``stage`` is one of :data:`STAGES` (default ``final``: final
    runs and fixed-protocol runs, never search trials). ``config_hashes``: only runs of these
    configurations (a sweep's grid, whichever command trained each point).
    """

    values: dict[str, list] = field(default_factory=dict)
    since: str | None = None
    until: str | None = None
    stage: str = "final"
    config_hashes: list[str] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.values) - set(AXES)
        if unknown:
            raise ValueError(f"unknown selection axis {sorted(unknown)}; allowed: {', '.join(AXES)}")
        self.stage = self.stage or "final"
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}; got {self.stage!r}")

    def describe(self) -> str:
        parts = [f"{k}={','.join(map(str, v))}" for k, v in self.values.items() if v]
        if self.since:
            parts.append(f"since {self.since}")
        if self.until:
            parts.append(f"until {self.until}")
        if self.stage != "final":  # the default (final and fixed-protocol runs) is not spelled out
            parts.append(f"stage={self.stage}")
        if self.config_hashes is not None:
            parts.append(f"the {len(set(self.config_hashes))} configurations of the sweep's grid")
        return "; ".join(parts) or "all runs"


def _matches(column: pd.Series, wanted: list) -> pd.Series:
    if pd.api.types.is_numeric_dtype(column) or column.isna().all():
        numbers = [float(w) for w in wanted]
        return column.astype(float).isin(numbers)
    return column.astype(str).isin([str(w) for w in wanted])


def stages(runs: pd.DataFrame) -> pd.Series:
    """Each run's protocol stage: "search", "final", or "" (protocol=fixed, or an older store)."""
    if "stage" not in runs.columns:
        return pd.Series("", index=runs.index, dtype=object)
    return runs["stage"].astype(object).where(runs["stage"].notna(), "").astype(str)


def _stage_mask(runs: pd.DataFrame, stage: str) -> pd.Series:
    s = stages(runs)
    if stage == "all":
        return pd.Series(True, index=runs.index)
    return s == "search" if stage == "search" else s != "search"


def _axes_mask(runs: pd.DataFrame, selection: Selection) -> pd.Series:
    keep = pd.Series(True, index=runs.index)
    for axis, wanted in selection.values.items():
        if wanted:
            keep &= _matches(runs[axis], list(wanted))
    if selection.config_hashes is not None:
        keep &= runs["config_hash"].isin(list(selection.config_hashes))
    created = runs["created_at"].astype(str)
    if selection.since:
        keep &= created >= selection.since
    if selection.until:
        bound = selection.until + ("T99" if "T" not in selection.until else "")
        keep &= created <= bound
    return keep


def select_runs(runs: pd.DataFrame, selection: Selection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(finished, failed) runs that fit ``selection``, its stage included; runs of one task name
    on different data are labelled apart (:func:`harness.report.data_notes.split_by_data`)."""
    from harness.report.data_notes import split_by_data

    chosen = split_by_data(runs[_axes_mask(runs, selection) & _stage_mask(runs, selection.stage)])
    finished = chosen[chosen["status"] == "finished"].reset_index(drop=True)
    failed = chosen[chosen["status"] != "finished"].reset_index(drop=True)
    return finished, failed


def search_runs(runs: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """The search trials (finished and failed) that fit ``selection``'s axes and dates, whatever
    its stage: the runs the learning-rate search figure and findings are drawn from."""
    return runs[_axes_mask(runs, selection) & _stage_mask(runs, "search")].reset_index(drop=True)


def latest_sweep(runs: pd.DataFrame) -> str | None:
    """The sweep label of the most recent run that has one."""
    labelled = runs.dropna(subset=["sweep"])
    return None if labelled.empty else str(labelled.sort_values("created_at")["sweep"].iloc[-1])


def deduplicate(finished: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, left out): one finished row per ``config_hash``, the latest by ``created_at`` (a
    tie: the row stored last). Rows without a hash are all kept. Order of ``kept`` as given."""
    if finished.empty or "config_hash" not in finished.columns:
        return finished, finished.iloc[:0]
    order = finished.assign(_pos=range(len(finished))).sort_values(["created_at", "_pos"], kind="stable")
    hashed = order["config_hash"].notna() & (order["config_hash"].astype(str) != "")
    dropped = order[hashed & order.duplicated("config_hash", keep="last")]
    keep = ~finished.index.isin(dropped.index)
    return (finished[keep].reset_index(drop=True),
            dropped.drop(columns="_pos").sort_values(["created_at"], kind="stable").reset_index(drop=True))


def _n_classes(details_json) -> int | None:
    try:
        names = json.loads(details_json).get("label_names")
    except (TypeError, ValueError, AttributeError):
        return None
    return len(names) if isinstance(names, list) and names else None


def run_predictions(finished: pd.DataFrame, predictions: dict | None) -> dict[str, Predictions]:
    """{run_id: Predictions} for the finished runs the store kept test predictions of. The label
    count of a single-label task (for macro-F1) is its label names', or the largest class seen
    in any of its runs, so every run of a task is scored over the same classes."""
    if not predictions:
        return {}
    out, width = {}, {}
    details = finished.get("details_json", pd.Series(None, index=finished.index))
    for run_id, task, d in zip(finished.run_id, finished.task, details):
        arrays = predictions.get(run_id) or {}
        if "labels" not in arrays or "predictions" not in arrays:
            continue
        y, q = np.asarray(arrays["labels"]), np.asarray(arrays["predictions"])
        if y.shape != q.shape or not len(y):
            continue
        out[run_id] = (task, y, q, arrays.get("majority"), _n_classes(d))
        if y.ndim == 1:
            width[task] = max(width.get(task, 0), _n_classes(d) or 0, int(y.max()) + 1, int(q.max()) + 1)
    return {r: Predictions(y, q, None if m is None else np.asarray(m), width.get(t, k), r)
            for r, (t, y, q, m, k) in out.items()}


def load_predictions(store, finished: pd.DataFrame) -> dict:
    """The finished runs' per-example test predictions, {} where the store keeps none."""
    if finished.empty:
        return {}
    try:
        reader = getattr(open_store(store, create=False), "predictions", None)
        return reader(run_ids=list(finished.run_id), split="test") if reader else {}
    except StoreError:
        return {}
