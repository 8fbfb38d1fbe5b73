"""Choose which runs a report covers, by any axis of the sweep and by protocol stage.

Failed runs never enter an aggregate: :func:`select_runs` hands them back separately so the report
can list them apart. Under ``protocol=tuned`` a grid point has search trials (``stage=search``)
and final runs (``stage=final``); a report covers the final runs and every ``protocol=fixed`` run
(empty stage) unless ``Selection.stage`` says otherwise, so that search trials never enter an
aggregate, a table or a test by default. :func:`search_runs` hands the search trials back apart
for the learning-rate search figure.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

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
    runs and fixed-protocol runs, never search trials).
    """

    values: dict[str, list] = field(default_factory=dict)
    since: str | None = None
    until: str | None = None
    stage: str = "final"

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
    created = runs["created_at"].astype(str)
    if selection.since:
        keep &= created >= selection.since
    if selection.until:
        bound = selection.until + ("T99" if "T" not in selection.until else "")
        keep &= created <= bound
    return keep


def select_runs(runs: pd.DataFrame, selection: Selection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(finished, failed) runs that fit ``selection``, its stage included."""
    chosen = runs[_axes_mask(runs, selection) & _stage_mask(runs, selection.stage)]
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
