"""The Dash app over one store: its page (:mod:`harness.dashboard.layout`) and what the page does
(:mod:`harness.dashboard.callbacks`, :mod:`~harness.dashboard.live`, :mod:`~harness.dashboard.export`).

Dash serves its own scripts and styles from the installed package (``serve_locally``), the page
asks for nothing from elsewhere, its MCP endpoint stays off, and there are no dev tools: the
browser talks to this process only. The app's assets are ``static/``: plotly.js's basic bundle
(scatter and bar traces, the only ones the dashboard draws; ``static/README.md``), which
``dcc.Graph`` then uses in place of the full bundle the plotly package ships, a quarter of the
code for the browser to compile when the page opens.
"""
from __future__ import annotations

import inspect
from pathlib import Path

from dash import Dash

from harness.config import ReportConfig
from harness.dashboard import callbacks, export, layout, live
from harness.dashboard.data import StoreView
from harness.dashboard.worker import Worker

TITLE = "peft-harness dashboard"
STATIC = Path(__file__).resolve().parent / "static"
PLOTLY_BASIC_VERSION = "4.1.1"  # static/plotly-basic.min.js (static/README.md)


def create_app(view: StoreView, options: ReportConfig | None = None, refresh_s: float = 3.0,
               worker: Worker | None = None) -> Dash:
    """The app over ``view``'s store, refreshed every ``refresh_s`` seconds while open; the
    findings and the report's exports are computed by ``worker`` (one is made if none is given)."""
    options, worker = options or ReportConfig(), worker or Worker(view.url)
    quiet = {"enable_mcp": False} if "enable_mcp" in inspect.signature(Dash).parameters else {}
    app = Dash(__name__, title=TITLE, update_title=None, serve_locally=True, assets_folder=str(STATIC),
               suppress_callback_exceptions=False, **quiet)
    app.index_string = layout.INDEX

    def page():
        snap, down = view.read(refresh_claims=True)
        return layout.page(snap, view.label, refresh_s, live.token(snap), live.counts(snap),
                           live.stamp(snap, down), live.panel(snap))

    app.layout = page
    _, x, y = layout.axis_choices(view.snapshot())
    callbacks.explore(view, {"stage": "final"}, x, y)  # kept: the first page's view is ready
    live.register(app, view)
    callbacks.register_explore(app, view)
    callbacks.register_findings(app, worker, options)
    callbacks.register_pages(app, view)
    callbacks.register_navigation(app, view)
    export.register(app, view, worker, options)
    return app
