"""Live: every few seconds (``--refresh``) the page asks whether the store changed (its runs'
count and latest start) and reads its claims, the configurations being trained now; a changed
store is read again and every view that shows it redraws, without reloading the page."""
from __future__ import annotations

import time

import pandas as pd
from dash import Input, Output, State, html, no_update

from harness.dashboard.data import FILTERS, Snapshot, StoreView, choices
from harness.errors import first_line
from harness.results.store import StoreError, redact

LATEST = 12  # the most recent runs the Live view lists


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def counts(snap: Snapshot) -> list:
    c = snap.counts()
    return [html.Span([html.B(str(c[k]), id=f"count-{k}"), k]) for k in ("finished", "failed", "running")]


def claims_table(claims: pd.DataFrame) -> html.Div:
    if claims.empty:
        return html.P("No configuration is being trained now (the store holds no claim).", id="no-claims")
    now = time.time()
    head = html.Tr([html.Th(h) for h in ("state", "run", "configuration", "owner", "claimed", "lease ends in")])
    rows = [html.Tr([html.Td(c.state), html.Td(c.run_id), html.Td(c.known or f"config {c.config_hash} (new)"),
                     html.Td(c.owner), html.Td(f"{_ago(now - float(c.claimed_at))} ago"),
                     html.Td(_ago(float(c.expires_at) - now))], className=f"claim-row claim-{c.state}")
            for c in claims.itertuples()]
    return html.Table([head, *rows], className="report-table", id="running-table")


def latest(snap: Snapshot) -> html.Table:
    cols = ("created_at", "status", "task", "model", "method", "quant", "r", "seed", "run_id", "error")
    recent = snap.runs.tail(LATEST).iloc[::-1]
    rows = [html.Tr([html.Td("" if pd.isna(v) else str(v)) for v in r], className=f"latest-{r[1]}")
            for r in recent[list(cols)].itertuples(index=False)]
    return html.Table([html.Tr([html.Th(c) for c in cols]), *rows], className="report-table", id="latest-table")


def panel(snap: Snapshot) -> list:
    return [html.H3("Being trained now"), claims_table(snap.claims),
            html.P("A claim is taken by a run before it trains and removed when its row is recorded; "
                   "a stale claim's lease ran out (or its process on this host is gone).", className="muted"),
            html.H3(f"Latest runs recorded ({len(snap.runs)} in the store)"), latest(snap)]


def stamp(snap: Snapshot, down: str | None = None) -> str:
    """When the page last read the store's claims (or why it cannot read the store now)."""
    return down or f"read {time.strftime('%H:%M:%S', time.localtime(snap.loaded_at))}"


def token(snap: Snapshot) -> str:
    """What the page keeps of the store's state: it changes when the store does (with a backend
    that cannot say, each time the runs are read again)."""
    return str(snap.mark) if snap.mark is not None else f"read at {snap.loaded_at}"


def register(app, view: StoreView) -> None:
    outputs = [Output("mark", "data"), Output("counts", "children"), Output("updated", "children"),
               Output("live-panel", "children"), *[Output(f"f-{name}", "options") for name in FILTERS]]

    # Not at the page's opening: the page is built with what this shows (harness.dashboard.app),
    # and the Explore view, whose input the mark is, would wait for it.
    @app.callback(*outputs, Input("tick", "n_intervals"), State("mark", "data"), prevent_initial_call=True)
    def refresh(_, mark):
        try:
            snap, down = view.read(refresh_claims=True)  # a look at the store: tried even while down
        except StoreError as exc:  # never read (the page is built from a read): say so
            down = f"store unreachable: {redact(first_line(exc))}"
        if down:  # the server went away: say so, keep what is shown (the views use the last read)
            return (no_update, no_update, down, no_update, *[no_update] * len(FILTERS))
        new = token(snap) if token(snap) != mark else no_update
        options = ([[{"label": str(v), "value": v} for v in choices(snap.runs)[name]] for name in FILTERS]
                   if new is not no_update else [no_update] * len(FILTERS))
        return (new, counts(snap), stamp(snap), panel(snap), *options)
