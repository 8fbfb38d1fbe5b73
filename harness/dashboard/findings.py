"""The report's findings beside the figures, from the report's own code: the selected runs of one
table go through the report's selection and analysis (:func:`harness.report.build.section_context`),
and its Findings and Published claims sections (and "what fits your budget" where ``--plan`` is
given) are built by the same section functions the PDF is built from, then shown as they read.
Nothing here computes a statistic.
"""
from __future__ import annotations

import tempfile
from collections import OrderedDict
from pathlib import Path

import pandas as pd
from dash import html

from harness.config import ReportConfig
from harness.dashboard.data import Snapshot, pick, report_selection
from harness.dashboard.worker import worker_view
from harness.report.build import Selected, section_context
from harness.report.sections import claims_section, findings_section, fits_items
from harness.report.select import search_runs, select_runs

CACHED = 16  # findings kept for the last selections seen
OPEN_UP_TO = 8  # a heading with at most this many sentences is shown unfolded
_cache: OrderedDict = OrderedDict()


def table_keys(chosen: pd.DataFrame) -> list[str]:
    """"task — model" of each table with finished runs in the selection."""
    done = chosen[chosen["status"] == "finished"]
    return [f"{t} — {m}" for t, m in sorted(set(zip(done["task"], done["model"])))]


def _narrowed(snap: Snapshot, chosen: pd.DataFrame, filters: dict, key: str):
    """The report's selection of one table of the chosen runs (by its stored task name)."""
    task, model = key.split(" — ", 1)
    mine = chosen[(chosen["task"] == task) & (chosen["model"] == model)]
    raw_tasks = snap.raw.set_index("run_id").loc[list(mine["run_id"]), "task"]
    s = report_selection(snap.runs, chosen, filters)
    s.values = {**s.values, "task": sorted(set(raw_tasks)), "model": [model]}
    return s


def sections(store: str, snap: Snapshot, chosen: pd.DataFrame, filters: dict, key: str,
             options: ReportConfig) -> list[tuple[str, list]]:
    """[(title, items)] of the report's Findings and Published claims for one table."""
    cache_key = (snap.mark, repr(sorted((k, repr(v)) for k, v in filters.items())), key, repr(options))
    if cache_key in _cache and snap.mark is not None:
        _cache.move_to_end(cache_key)
        return _cache[cache_key]
    selection = _narrowed(snap, chosen, filters, key)
    finished, failed = select_runs(snap.raw, selection)
    selected = Selected(snap.raw, finished, failed, search_runs(snap.raw, selection))
    with tempfile.TemporaryDirectory(prefix="harness-dashboard-") as out:
        context = section_context(store, Path(out), selection, options, selected)
        built = [findings_section(context), claims_section(context)]
        fits = fits_items(context)
        if fits:
            built.append(("What fits your budget", fits[1:]))
    _cache[cache_key] = built
    while len(_cache) > CACHED:
        _cache.popitem(last=False)
    return built


def findings_sections(filters: dict, key: str, options: ReportConfig) -> list:
    """:func:`sections` of one table of the selection, run in the worker process
    (:mod:`harness.dashboard.worker`) with its own view of the store."""
    view = worker_view()
    snap = view.snapshot()
    return sections(view.url, snap, pick(snap.runs, filters), filters, key, options)


def _plain(text) -> str:
    return str(text).replace("**", "")


def _table(table) -> html.Div:
    head = html.Tr([html.Th(h) for h in table.headers])
    rows = [html.Tr([html.Td(c.text() if hasattr(c, "text") else str(c)) for c in row]) for row in table.rows]
    return html.Div([html.B(table.title), html.Table([head, *rows], className="report-table"),
                     html.P(" ".join(table.notes), className="note")])


def render(items: list) -> list:
    """The report's items (:mod:`harness.report.sections`) as page elements, a heading's
    sentences folded under it as one block of text (a table's findings run to hundreds of
    sentences: one element each would slow every redraw of the page)."""
    out, heading = [], None
    for item in items:
        kind, content = (item if isinstance(item, tuple) else ("text", item))
        if kind == "h2":
            out.append(html.H4(content))
        elif kind == "h3":
            heading = content
        elif kind == "bullets":
            text = "\n".join(f"• {_plain(s)}" for s in content)
            summary = html.Summary(f"{heading} ({len(content)})" if heading else f"{len(content)} items")
            out.append(html.Details([summary, html.Div(text, className="bullets")], open=len(content) <= OPEN_UP_TO))
            heading = None
        elif kind == "kv":
            out.append(html.Div("\n".join(f"{k}: {v}" for k, v in content), className="bullets"))
        elif kind == "table":
            out.append(_table(content))
        elif kind == "text" and content != "pagebreak":
            out.append(html.P(_plain(content)))
    return out


def panel(built: list[tuple[str, list]] | None) -> list:
    """The findings panel: the sections :func:`sections` built (None: no finished run selected)."""
    if built is None:
        return [html.P("No finished runs in the selection: nothing to find.")]
    return [part for title, items in built for part in (html.H3(title), *render(items))]
