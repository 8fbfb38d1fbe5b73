"""What the page does: the Explore view redrawn from the filters and axes (figure, runs table,
summary), the findings beside it, the run and compare pages, moving between views, downloads.

Every callback reads the store's snapshot (:class:`harness.dashboard.data.StoreView`), so a
store that changed is read once and every view follows it.
"""
from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import CancelledError

import pandas as pd
from dash import Input, Output, State, ctx, html, no_update

from harness.config import ReportConfig
from harness.dashboard import compare, findings, pareto, runpage, table
from harness.dashboard.data import FILTERS, StoreView, choices
from harness.dashboard.findings import findings_sections
from harness.dashboard.worker import Worker
from harness.errors import first_line
from harness.results.store import StoreError, redact

KEPT = 8  # Explore views kept (filters and axes seen last, while the store is unchanged)
_shown: OrderedDict = OrderedDict()
FILTER_INPUTS = {name: Input(f"f-{name}", "value") for name in (*FILTERS, "stage")}


def register_explore(app, view: StoreView) -> None:
    outputs = dict(figure=Output("pareto", "figure"), rows=Output("runs-table", "data"),
                   columns=Output("runs-table", "columns"), pages=Output("runs-table", "page_count"),
                   page=Output("runs-table", "page_current"), summary=Output("selection-summary", "children"),
                   tables=Output("findings-table", "options"), table=Output("findings-table", "value"),
                   runs=Output("run-id", "options"), a=Output("compare-a", "options"), b=Output("compare-b", "options"))

    @app.callback(output=outputs, inputs=dict(mark=Input("mark", "data"), filters=FILTER_INPUTS,
                                              x=Input("x-field", "value"), y=Input("y-field", "value")),
                  state=dict(current=State("findings-table", "value"), sort_by=State("runs-table", "sort_by"),
                             page=State("runs-table", "page_current")))
    def redraw(mark, filters, x, y, current, sort_by, page):
        shown = explore(view, filters, x, y, current, sort_by)
        return {**shown, "page": 0 if page else no_update}  # a new selection starts at its first page

    @app.callback(output=[Output("runs-table", "data", allow_duplicate=True),
                          Output("runs-table", "page_count", allow_duplicate=True)],
                  inputs=dict(number=Input("runs-table", "page_current"), sort_by=Input("runs-table", "sort_by")),
                  state=dict(x=State("x-field", "value"), y=State("y-field", "value"),
                             filters={k: State(v.component_id, "value") for k, v in FILTER_INPUTS.items()}),
                  prevent_initial_call=True)
    def turn(number, sort_by, x, y, filters):
        return table.page(view.pick(filters), x, y, number, sort_by)


def explore(view: StoreView, filters: dict, x: str, y: str, current: str | None = None,
            sort_by: list | None = None) -> dict:
    """What the Explore view shows for these filters and axes (the benchmark times this); the
    last few are kept while the store is unchanged."""
    snap = view.snapshot()
    key = (snap.mark, tuple(sorted((k, repr(v)) for k, v in filters.items() if v)), x, y, repr(sort_by or None))
    if snap.mark is not None and key in _shown:
        shown = _shown[key]
        keys = shown["tables"]
        return {**shown, "table": current if current in keys else (keys[0] if keys else None)}
    shown = _explore(snap, view.pick(filters), filters, x, y, current, sort_by)
    _shown[key] = shown
    while len(_shown) > KEPT:
        _shown.popitem(last=False)
    return shown


def _explore(snap, chosen, filters: dict, x: str, y: str, current: str | None, sort_by) -> dict:
    per_run = snap.per_run[snap.per_run["run_id"].isin(chosen["run_id"])]
    found = choices(snap.runs)
    figure = (pareto.figure(per_run, x, y, found["method"], found["quant"]) if len(per_run)
              else pareto.empty("No finished runs in this selection"))
    rows, pages = table.page(chosen, x, y, 0, sort_by)
    keys = findings.table_keys(chosen)
    options = table.run_options(chosen)
    return dict(figure=figure, rows=rows, columns=table.columns(x, y), pages=pages, summary=table.summary(
        chosen, snap.per_run), tables=keys, table=current if current in keys else (keys[0] if keys else None),
                runs=options, a=options, b=options)


def register_findings(app, worker: Worker, options: ReportConfig) -> None:
    """The findings of the chosen table, computed in the worker process (seconds on a big store)."""
    @app.callback(Output("findings", "children"),
                  inputs=dict(key=Input("findings-table", "value"), filters=FILTER_INPUTS),
                  state=dict(mark=State("mark", "data")))
    def show(key, filters, mark):
        if not key:
            return findings.panel(None)
        try:
            return findings.panel(worker.run("findings", findings_sections, filters, key, options))
        except CancelledError:  # a newer request replaced this one
            return no_update
        except StoreError as exc:  # the store went away while the report's analysis read it
            return unreadable("The findings need the store", exc)
        except RuntimeError as exc:  # the worker process stopped (and could not start again)
            return [html.P(f"The findings could not be computed: {redact(first_line(exc))}", className="error")]


def unreadable(what: str, exc: BaseException) -> list:
    """A view's place when the store cannot be read now: one line, the password hidden."""
    return [html.P(f"{what}, which cannot be read now: {redact(first_line(exc))}. Once the header shows "
                   "the store read again, the next change reads it.", className="error store-unreachable")]


def _row(view: StoreView, run_id: str | None) -> dict | None:
    if not run_id:
        return None
    raw = view.snapshot().raw
    hit = raw[raw["run_id"] == run_id]
    return None if hit.empty else hit.iloc[0].to_dict()


def register_pages(app, view: StoreView) -> None:
    @app.callback(Output("run-page", "children"), Input("run-id", "value"), Input("mark", "data"))
    def run(run_id, _):
        row = _row(view, run_id)
        try:
            curves = view.curves([run_id]) if row else pd.DataFrame()
        except StoreError as exc:  # the curves are read when a run is first opened
            return unreadable("The run's curves are in the store", exc)
        return runpage.page(row, curves)

    @app.callback(Output("compare-page", "children"), Input("compare-a", "value"), Input("compare-b", "value"))
    def two(a, b):
        row_a, row_b = _row(view, a), _row(view, b)
        try:
            arrays = view.predictions([a, b]) if row_a and row_b and a != b else {}
        except StoreError as exc:
            return unreadable("The two runs' predictions are in the store", exc)
        return compare.page(row_a, row_b, arrays)


def _with(options: list[dict] | None, view: StoreView, run_ids: list[str]) -> list[dict]:
    """A picker's options with these runs among them (a run picked may be older than those listed)."""
    options = list(options or [])
    have = {o["value"] for o in options}
    runs = view.snapshot().runs
    missing = runs[runs["run_id"].isin([r for r in run_ids if r not in have])]
    return table.run_options(missing, None) + options if len(missing) else options


def register_navigation(app, view: StoreView) -> None:
    @app.callback(Output("view-explore", "style"), Input("tabs", "value"))
    def show(tab):  # the other views are their tabs' content (harness.dashboard.layout)
        return {} if tab == "explore" else {"display": "none"}

    pickers = ("run-id", "compare-a", "compare-b")

    @app.callback(Output("tabs", "value"), Output("runs-table", "active_cell"),
                  *[Output(p, "value") for p in pickers],
                  *[Output(p, "options", allow_duplicate=True) for p in pickers],
                  Input("pareto", "clickData"), Input("runs-table", "active_cell"), Input("compare-ticked", "n_clicks"),
                  State("runs-table", "selected_row_ids"), *[State(p, "options") for p in pickers],
                  prevent_initial_call=True)
    def go(click, cell, _, ticked, run_options_, a_options, b_options):
        trigger, nothing = ctx.triggered_id, [no_update] * 3
        run_id = ((click or {}).get("points") or [{}])[0].get("customdata", [None])[0]
        if trigger == "runs-table" and cell and cell.get("row_id"):
            run_id = cell["row_id"]
        if trigger in ("pareto", "runs-table") and run_id:
            return ("run", None if trigger == "runs-table" else no_update, run_id, no_update, no_update,
                    _with(run_options_, view, [run_id]), no_update, no_update)
        if trigger == "compare-ticked" and ticked and len(ticked) >= 2:
            return ("compare", no_update, no_update, ticked[0], ticked[1], no_update,
                    _with(a_options, view, ticked[:2]), _with(b_options, view, ticked[:2]))
        return (no_update, no_update, *nothing, *nothing)
