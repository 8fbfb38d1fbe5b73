"""The page: a header with the store (its password hidden) and its live counts, four views
(Explore, Run, Compare, Live) switched by tabs, and the downloads. Built afresh on each page
load, so its choices are the store's at that moment; the live refresh keeps them current."""
from __future__ import annotations

from dash import dash_table, dcc, html

from harness.dashboard.data import FILTERS, Snapshot, axis_fields, axis_label, choices
from harness.dashboard.table import PAGE_SIZE

DEFAULT_X, DEFAULT_Y = "peak_memory_bytes", "accuracy"
FILTER_NAMES = {"sweep": "sweep", "task": "task", "model": "model", "method": "method", "quant": "quantization",
                "r": "rank", "seed": "seed", "harness_version": "harness version", "status": "status"}
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{display:flex;gap:24px;align-items:baseline;padding:10px 18px;background:#24323f;color:#fff}
header h1{font-size:18px;margin:0} header .muted{color:#cfd8dc}
.counts-live b{margin-right:4px}.counts-live span{margin-right:14px}
.explore{display:grid;grid-template-columns:230px minmax(0,1fr) 380px;gap:14px;padding:12px}
.filters label{font-size:12px;font-weight:600;display:block;margin-top:8px}
.findings{max-height:1100px;overflow:auto;font-size:13px;background:#fff;padding:8px;border:1px solid #ddd}
.findings h3{font-size:15px;margin:10px 0 4px}.findings h4{font-size:14px;margin:8px 0 2px}
.bullets{white-space:pre-wrap;margin:2px 0 6px 4px}.findings summary{font-weight:600;cursor:pointer;margin-top:6px}
.view{padding:12px 18px}.muted{color:#666}.note{color:#8a6d3b;font-size:12px}
.kv th{text-align:left;padding:2px 12px 2px 0;font-weight:600;vertical-align:top}.kv td{padding:2px 0}
.code{background:#f4f4f4;padding:8px;max-height:360px;overflow:auto;font-size:12px}
.error{background:#fdecea;color:#8a1c1c;padding:10px;white-space:pre-wrap}
.counts{display:flex;gap:10px;margin:10px 0}
.count-box{background:#fff;border:1px solid #ccc;padding:8px 14px;text-align:center}
.count{font-size:22px;font-weight:700}.count-label{font-size:12px;color:#555}
.report-table{border-collapse:collapse;font-size:12px}
.report-table td,.report-table th{border:1px solid #ddd;padding:2px 4px}
.toolbar{display:flex;gap:8px;align-items:center;flex-wrap:wrap;margin:6px 0}
button{padding:5px 10px;border:1px solid #888;background:#fff;cursor:pointer;border-radius:3px}
"""
INDEX = ("<!DOCTYPE html><html><head>{%metas%}<title>{%title%}</title>{%css%}<style>" + CSS
         + "</style></head><body>{%app_entry%}<footer>{%config%}{%scripts%}{%renderer%}</footer></body></html>")


def _dropdown(id_: str, options: list, value=None, multi: bool = True, **extra) -> dcc.Dropdown:
    opts = [{"label": str(o), "value": o} for o in options]
    return dcc.Dropdown(id=id_, options=opts, value=value, multi=multi, **{"clearable": True, **extra})


def filters(snap: Snapshot) -> html.Div:
    found = choices(snap.runs)
    parts = [html.H4("Filters")]
    for name in FILTERS:
        parts += [html.Label(FILTER_NAMES[name], htmlFor=f"f-{name}"),
                  _dropdown(f"f-{name}", found[name], placeholder="all")]
    parts += [html.Label("protocol stage", htmlFor="f-stage"),
              _dropdown("f-stage", found["stage"], "final", multi=False, clearable=False)]
    return html.Div(parts, className="filters")


def axis_choices(snap: Snapshot) -> tuple[list[dict], str, str]:
    """(the axis fields the store has values of, the default x, the default y)."""
    present = [f for f in axis_fields() if f.display_name in snap.per_run.columns
               and snap.per_run[f.display_name].notna().any()] or axis_fields()
    names = [f.name for f in present]
    x = DEFAULT_X if DEFAULT_X in names else names[0]
    y = DEFAULT_Y if DEFAULT_Y in names else names[-1]
    return [{"label": axis_label(f), "value": f.name} for f in present], x, y


def axes(snap: Snapshot) -> html.Div:
    options, x, y = axis_choices(snap)
    return html.Div([html.Label("x", htmlFor="x-field"), dcc.Dropdown(id="x-field", options=options, value=x,
                                                                      clearable=False, style={"width": "340px"}),
                     html.Label("y", htmlFor="y-field"), dcc.Dropdown(id="y-field", options=options, value=y,
                                                                      clearable=False, style={"width": "340px"})],
                    className="toolbar")


def runs_table() -> dash_table.DataTable:
    return dash_table.DataTable(id="runs-table", data=[], columns=[], page_size=PAGE_SIZE, page_current=0,
                                page_action="custom", sort_action="custom", sort_mode="single", sort_by=[],
                                row_selectable="multi", selected_row_ids=[],
                                style_table={"overflowX": "auto"},
                                style_cell={"textAlign": "left", "fontSize": "12px", "maxWidth": "320px",
                                            "overflow": "hidden", "textOverflow": "ellipsis"},
                                style_data_conditional=[{"if": {"filter_query": '{status} = "failed"'},
                                                         "backgroundColor": "#fdecea"}])


def explore(snap: Snapshot) -> html.Div:
    """The Explore view; its figure, table and pickers come from the Explore callback."""
    main = html.Div([
        axes(snap),
        dcc.Graph(id="pareto", config={"displaylogo": False}),
        html.Div(id="selection-summary", className="muted"),
        html.Div([html.Button("Export CSV", id="export-csv"), html.Button("Report PDF", id="export-pdf"),
                  html.Button("Report folder (.zip: HTML, Markdown, CSV, PDF)", id="export-zip"),
                  html.Button("Compare the two ticked runs", id="compare-ticked"),
                  dcc.Loading(html.Span(id="export-status", className="muted"))], className="toolbar"),
        runs_table()])
    side = html.Div([html.H4("Findings (the report's)"),
                     dcc.Dropdown(id="findings-table", clearable=False),
                     dcc.Loading(html.Div(id="findings"))], className="findings")
    return html.Div([filters(snap), main, side], className="explore", id="view-explore")


def page(snap: Snapshot, label: str, refresh_s: float, mark: str, counts: list, stamp: str = "",
         live: list | None = None) -> html.Div:
    """``mark``: the store's state the page is built from; ``counts``, ``stamp`` and ``live``: its
    live counts, when it was read and the Live view, as the refresh callback shows them later (so
    that nothing waits for that callback when the page opens)."""
    picker = {"style": {"width": "48%"}}
    others = (("run", html.Div([dcc.Dropdown(id="run-id", placeholder="a run"),
                                dcc.Loading(html.Div(id="run-page"))], id="view-run", className="view")),
              ("compare", html.Div([html.Div([dcc.Dropdown(id="compare-a", placeholder="run A", **picker),
                                              dcc.Dropdown(id="compare-b", placeholder="run B", **picker)],
                                             style={"display": "flex", "gap": "12px"}),
                                    dcc.Loading(html.Div(id="compare-page"))], id="view-compare", className="view")),
              ("live", html.Div(html.Div(live or [], id="live-panel"), id="view-live", className="view")))
    return html.Div([
        dcc.Interval(id="tick", interval=int(refresh_s * 1000)), dcc.Store(id="mark", data=mark),
        dcc.Download(id="download"),
        html.Header([html.H1("peft-harness dashboard"), html.Span(label, id="store-label", className="muted"),
                     html.Span(counts, id="counts", className="counts-live"),
                     html.Span(stamp, id="updated", className="muted")]),
        # The Run, Compare and Live views are their tabs' content: the browser draws one when its
        # tab is picked (the Explore view, below, stays drawn, its figure kept while hidden).
        dcc.Tabs(id="tabs", value="explore", children=[dcc.Tab(label=v.capitalize(), value=v, children=content)
                                                        for v, content in (("explore", None), *others)]),
        explore(snap)])
