"""A run's page: what it is, its error if it failed, its metrics, its per-epoch curves, its memory
and time per phase, its provenance and its whole resolved config, all as the store holds them."""
from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html

from harness.fields import FIELDS, MIB

IDENTITY = ("run_id", "status", "task", "model", "method", "quant", "r", "seed", "lr", "stage", "sweep",
            "created_at", "config_hash", "harness_version", "device_kind", "data_fingerprint",
            "model_fingerprint", "git_commit", "git_dirty", "device", "run_dir")
PHASE_TIME = (("setup_s", "setup"), ("train_s", "training"), ("eval_s", "evaluation, test, latency"),
              ("wall_s", "whole run"))
PHASE_MEMORY = (("peak_memory_train_bytes", "training"), ("peak_memory_eval_bytes", "evaluation"),
                ("peak_memory_bytes", "whole run"), ("baseline_cpu_rss_bytes", "CPU RSS before"),
                ("peak_cpu_rss_bytes", "peak CPU RSS"), ("peak_cuda_allocated_bytes", "CUDA allocated"),
                ("peak_cuda_reserved_bytes", "CUDA reserved"))


def _known(value) -> bool:
    return value is not None and not (isinstance(value, float) and pd.isna(value)) and value != ""


def shown(name: str, value) -> str:
    """A stored value as the page shows it (a field's unit where it has one)."""
    if not _known(value):
        return "—"
    field = FIELDS.get(name)
    if field is not None and field.unit == "bytes":
        return f"{float(value) / MIB:.6g} MiB"
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return text + (f" {field.unit}" if field is not None and field.unit else "")


def _kv(pairs) -> html.Table:
    return html.Table([html.Tr([html.Th(k), html.Td(v)]) for k, v in pairs], className="kv")


def _bars(row: dict, phases, scale: float, title: str, unit: str) -> dcc.Graph | None:
    known = [(label, float(row[name]) / scale) for name, label in phases if _known(row.get(name))]
    if not known:
        return None
    fig = go.Figure(go.Bar(x=[v for _, v in known], y=[l for l, _ in known], orientation="h",
                           text=[f"{v:.4g}" for _, v in known], textposition="auto"))
    fig.update_layout(title=title, xaxis_title=unit, template="plotly_white", height=260,
                      margin=dict(l=160, r=20, t=40, b=40))
    return dcc.Graph(figure=fig, config={"displaylogo": False}, id=f"run-{'time' if unit == 's' else 'memory'}")


def curves_figure(curves: pd.DataFrame) -> go.Figure:
    """One line per (split, metric, variant) over epochs."""
    fig = go.Figure()
    for (split, metric, variant), g in curves.groupby(["split", "metric", "variant"], dropna=False, sort=True):
        name = f"{split} {metric}" + (f" [{variant}]" if isinstance(variant, str) and variant else "")
        g = g.sort_values("epoch")
        fig.add_trace(go.Scatter(x=g["epoch"], y=g["value"], mode="lines+markers", name=name))
    fig.update_layout(title="Per-epoch curves", xaxis_title="epoch", template="plotly_white", height=340,
                      margin=dict(l=60, r=20, t=40, b=40))
    return fig


def metrics(row: dict) -> list[tuple[str, str]]:
    return [(f.report or f.name, shown(f.name, row.get(f.name))) for f in FIELDS.values()
            if f.higher_is_better is not None and _known(row.get(f.name))]


def _json(text) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True)
    except (TypeError, ValueError):
        return "—"


def _column(*parts) -> html.Div:
    return html.Div([p for p in parts if p is not None], style={"minWidth": 0})


def page(row: dict | None, curves: pd.DataFrame) -> list:
    if row is None:
        return [html.P("Pick a run: click a point of the Pareto view, a row of the runs table, or "
                       "choose one above.")]
    title = [html.H3(f"{row['method']} on {row['task']} — {row['model']}, seed {row['seed']}", id="run-title"),
             html.P(f"status: {row['status']}", id="run-status", className=f"status-{row['status']}")]
    if row["status"] != "finished":
        title.append(html.Pre(str(row.get("error") or "no error recorded"), id="run-error", className="error"))
    left = _column(html.H4("What it is"), _kv([(k, shown(k, row.get(k))) for k in IDENTITY]),
                   *([html.H4("Metrics"), html.Div(_kv(metrics(row)), id="run-metrics")] if metrics(row) else []))
    right = _column(dcc.Graph(figure=curves_figure(curves), id="run-curves", config={"displaylogo": False})
                    if len(curves) else html.P("No per-epoch curves stored for this run."),
                    _bars(row, PHASE_TIME, 1.0, "Time per phase", "s"),
                    _bars(row, PHASE_MEMORY, MIB, f"Peak memory per phase ({row.get('memory_kind') or '?'})", "MiB"))
    below = [_column(html.H4(name), html.Pre(_json(row.get(column)), className="code", id=f"run-{key}"))
             for name, column, key in (("Provenance", "provenance_json", "provenance"),
                                       ("Details", "details_json", "details"),
                                       ("Config (resolved)", "config_json", "config"))]
    grid = {"display": "grid", "gap": "18px"}
    return [*title, html.Div([left, right], style={**grid, "gridTemplateColumns": "minmax(0,2fr) minmax(0,3fr)"}),
            html.Div(below, style={**grid, "gridTemplateColumns": "repeat(3, minmax(0,1fr))"})]
