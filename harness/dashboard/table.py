"""The runs table and the run pickers: the selected runs a page at a time, sorted on the server
(so a sort covers the whole selection, and a store of thousands of runs sends the browser one
page), both axis fields in the units shown; the pickers offer the newest runs of the selection."""
from __future__ import annotations

import math

import pandas as pd

from harness import fields

TABLE_COLUMNS = ("run", "status", "task", "model", "method", "quant", "r", "seed", "stage", "lr")
PAGE_SIZE = 15
OPTIONS = 100  # the runs the run and compare pickers list (a run clicked or ticked is added)
PICKER_COLUMNS = ["run_id", "method", "quant", "r", "seed", "task", "model", "status"]


def _value(v):
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return None
    return float(f"{v:.6g}") if isinstance(v, float) else v


def columns(x: str, y: str) -> list[dict]:
    shown = [fields.get(f).display_name for f in dict.fromkeys([x, y])]
    return [{"name": c, "id": c} for c in (*TABLE_COLUMNS, *shown, "created_at", "error")]


def _source(column: str, x: str, y: str) -> str:
    """The runs' column behind a table column (an axis field is shown scaled, sorted as stored)."""
    by_shown = {fields.get(f).display_name: f for f in (x, y)}
    return "run_id" if column == "run" else by_shown.get(column, column)


def page(chosen: pd.DataFrame, x: str, y: str, number: int = 0, sort_by: list | None = None
         ) -> tuple[list[dict], int]:
    """(the rows of page ``number``, the page count): newest first, or as ``sort_by`` says
    (the table's ``sort_by``: its first column, ascending or descending; empty values last)."""
    extra = list(dict.fromkeys([x, y]))
    frame = chosen[list(dict.fromkeys(["run_id", *TABLE_COLUMNS[1:], *extra, "created_at", "error"]))]
    if sort_by:
        source = _source(sort_by[0]["column_id"], x, y)
        frame = frame.sort_values(source, ascending=sort_by[0].get("direction") != "desc", na_position="last",
                                  kind="stable")
    else:
        frame = frame.iloc[::-1]
    count = max(1, math.ceil(len(frame) / PAGE_SIZE))
    number = min(max(0, int(number or 0)), count - 1)
    rows = []
    for r in frame.iloc[number * PAGE_SIZE:(number + 1) * PAGE_SIZE].to_dict("records"):
        row = {c: _value(r.get(c)) for c in TABLE_COLUMNS[1:]} | {"id": r["run_id"], "run": r["run_id"][:12]}
        for f in extra:
            field, value = fields.get(f), r.get(f)
            known = value is not None and not pd.isna(value)
            row[field.display_name] = _value(float(value) / field.report_scale) if known else None
        rows.append(row | {"created_at": r["created_at"], "error": _value(r.get("error")) or ""})
    return rows, count


def run_options(chosen: pd.DataFrame, limit: int | None = OPTIONS) -> list[dict]:
    """Picker options of the newest ``limit`` runs (all with None), newest first."""
    listed = chosen[PICKER_COLUMNS] if limit is None else chosen[PICKER_COLUMNS].tail(limit)
    out = []
    for r in listed.iloc[::-1].itertuples():
        rank = "" if pd.isna(r.r) else f" r={int(r.r)}"
        out.append({"label": f"{r.method} ({r.quant}{rank}) seed {r.seed} · {r.task} / {r.model} · {r.status} · "
                             f"{r.run_id[:8]}", "value": r.run_id})
    return out


def summary(chosen: pd.DataFrame, per_run: pd.DataFrame) -> str:
    done = int((chosen["status"] == "finished").sum())
    mine = per_run[per_run["run_id"].isin(chosen["run_id"])]
    configs = len(mine.drop_duplicates(["task", "model", "label"]))
    return (f"{len(chosen)} runs selected: {done} finished, {len(chosen) - done} failed; "
            f"{configs} configurations in {mine.groupby(['task', 'model']).ngroups} tables.")
