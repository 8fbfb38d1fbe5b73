"""The Pareto explorer: any two recorded fields, one point per configuration (its mean over
seeds, with the 95% t-interval where it has several), coloured by method and shaped by
quantization, with each table's Pareto front in the fields' own directions.

The means and intervals are the report's (:func:`harness.report.stats.mean_interval`), the
configurations its groups (:func:`harness.report.aggregate.metric_frame`), the front its
:func:`harness.report.plots.pareto_front`.
"""
from __future__ import annotations

import json
import math

import pandas as pd
import plotly.graph_objects as go

from harness import fields
from harness.dashboard.data import axis_label
from harness.report.plots import pareto_front
from harness.report.stats import mean_interval

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "triangle-down",
           "pentagon", "hexagon")
TABLE = ["task", "model", "label"]
CONFIDENCE = 0.95
POINT_COLUMNS = ["task", "model", "label", "method", "quant", "r", "n", "run_ids", "seeds", "config_json",
                 "x", "x_low", "x_high", "y", "y_low", "y_high"]


def styles(values: list, palette: tuple) -> dict:
    """One style per value, stable for a store (values sorted, as the filters list them)."""
    return {v: palette[i % len(palette)] for i, v in enumerate(sorted({str(v) for v in values}))}


def points(per_run: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """One row per configuration with values of both fields: its table and settings, the runs,
    and per field its mean and interval (NaN bounds for a single run)."""
    fx, fy = fields.get(x), fields.get(y)
    cols = [fx.display_name, fy.display_name]
    needed = list(dict.fromkeys([*TABLE, "method", "quant", "r", "run_id", "seed", "config_json", *cols]))
    known = per_run[needed].dropna(subset=cols)
    rows = []
    for (task, model, label), g in known.groupby(TABLE, sort=True):
        row = {"task": task, "model": model, "label": label, "method": g["method"].iat[0],
               "quant": g["quant"].iat[0], "r": g["r"].iat[0], "n": len(g), "run_ids": g["run_id"].tolist(),
               "seeds": ", ".join(map(str, g["seed"].tolist())), "config_json": g["config_json"].iat[0]}
        for axis, col in (("x", cols[0]), ("y", cols[1])):
            mean, _, low, high = mean_interval(g[col].to_numpy(dtype=float), CONFIDENCE)
            row.update({axis: mean, f"{axis}_low": low, f"{axis}_high": high})
        rows.append(row)
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def fronts(found: pd.DataFrame, x: str, y: str) -> dict[tuple[str, str], list[int]]:
    """Each table's Pareto front (row positions, ordered along x) in both fields' directions."""
    sx = 1 if not fields.higher_is_better(x) else -1  # pareto_front: x lower is better
    out = {}
    for key, g in found.groupby(["task", "model"], sort=True):
        front = pareto_front({i: (sx * r.x, r.y) for i, r in g.iterrows()}, fields.higher_is_better(y))
        out[key] = sorted(front, key=lambda i: found.at[i, "x"])
    return out


def _setting(config_json) -> str:
    try:
        method = json.loads(config_json).get("method", {})
    except (TypeError, ValueError, AttributeError):
        return ""
    return ", ".join(f"{k}={v}" for k, v in sorted(method.items()) if v is not None and k != "name")[:160]


def _value(mean: float, low: float, high: float) -> str:
    if math.isnan(low):
        return f"{mean:.4g}"
    return f"{mean:.4g} [{low:.4g}, {high:.4g}]"


def hover(r) -> str:
    r_text = "" if pd.isna(r.r) else f", r={int(r.r)}"
    return (f"<b>{r.label}</b><br>{r.task} — {r.model}<br>{r.method} ({r.quant}{r_text})<br>"
            f"x: {_value(r.x, r.x_low, r.x_high)}<br>y: {_value(r.y, r.y_low, r.y_high)}<br>"
            f"n = {r.n} (seeds {r.seeds})<br>{_setting(r.config_json)}")


def _errors(g: pd.DataFrame, axis: str) -> dict:
    high, low = (g[f"{axis}_high"] - g[axis]).fillna(0), (g[axis] - g[f"{axis}_low"]).fillna(0)
    return dict(type="data", symmetric=False, array=high.tolist(), arrayminus=low.tolist(),
                thickness=1, width=3)


def figure(per_run: pd.DataFrame, x: str, y: str, methods: list, quants: list) -> go.Figure:
    """The scatter of configurations, their intervals and each table's front."""
    found = points(per_run, x, y)
    if found.empty:  # the selection's runs recorded one of the fields only (an older harness, a CPU run)
        return empty(f"No finished run in this selection has both {axis_label(fields.get(x))} "
                     f"and {axis_label(fields.get(y))}")
    fig = go.Figure()
    colour, symbol = styles(methods, PALETTE), styles(quants, SYMBOLS)
    for (method, quant), g in found.groupby(["method", "quant"], sort=True):
        fig.add_trace(go.Scatter(
            x=g["x"].tolist(), y=g["y"].tolist(), mode="markers", name=f"{method} · {quant}",
            marker=dict(color=colour.get(str(method), "#333"), symbol=symbol.get(str(quant), "circle"), size=10,
                        line=dict(width=1, color="#222")),
            error_x=_errors(g, "x"), error_y=_errors(g, "y"), hovertext=[hover(r) for r in g.itertuples()],
            hoverinfo="text", customdata=[[r.run_ids[0], r.label, r.task, r.model] for r in g.itertuples()]))
    for (task, model), front in fronts(found, x, y).items():
        f = found.loc[front]
        fig.add_trace(go.Scatter(x=f["x"].tolist(), y=f["y"].tolist(), mode="lines+markers",
                                 line=dict(color="black", dash="dash", width=1, shape="hv"),
                                 marker=dict(symbol="circle-open", size=18, color="black"),
                                 name=f"Pareto front: {task} — {model}", hoverinfo="skip",
                                 customdata=[[None, l, task, model] for l in f["label"]]))
    fx, fy = fields.get(x), fields.get(y)
    fig.update_layout(xaxis_title=axis_label(fx), yaxis_title=axis_label(fy), template="plotly_white",
                      margin=dict(l=60, r=20, t=30, b=50), legend=dict(font=dict(size=11)),
                      uirevision=f"{x}/{y}", height=520)
    spread = found["x"][found["x"] > 0] if len(found) else found
    if len(spread) and len(spread) == len(found) and spread.max() >= 100 * spread.min():
        fig.update_xaxes(type="log")
    return fig


def front_labels(per_run: pd.DataFrame, x: str, y: str) -> dict[str, list[str]]:
    """{"task — model": [labels on its front]}, as drawn."""
    found = points(per_run, x, y)
    return {f"{t} — {m}": list(found.loc[front, "label"]) for (t, m), front in fronts(found, x, y).items()}


def empty(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(template="plotly_white", height=520, xaxis_visible=False, yaxis_visible=False)
    return fig


__all__ = ["figure", "points", "fronts", "front_labels", "empty"]
