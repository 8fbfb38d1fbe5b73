"""Figures for a report, drawn with matplotlib for print: one colour and marker per configuration,
error bars that are 95% t-intervals over seeds (none where n=1), and axes that say their units."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness import fields  # noqa: E402
from harness.report.aggregate import METRIC_BY_NAME  # noqa: E402
from harness.report.compare import Analysis, is_nan, stat  # noqa: E402
# pareto_front and capped_note are used from here too (findings, cost, build)
from harness.report.shown import capped_note, figure_labels, pareto_front  # noqa: E402,F401

MARKERS = "osD^vP*Xph<>"
plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 100,
                     "savefig.dpi": 200, "savefig.bbox": "tight"})


def styles(labels: list[str]) -> dict[str, dict]:
    cmap = plt.get_cmap("tab10")
    return {l: {"color": cmap(i % 10), "marker": MARKERS[i % len(MARKERS)]} for i, l in enumerate(labels)}


def _point(analysis, task, model, label, metric) -> tuple[float, float]:
    """(mean, half-width of the interval or NaN)."""
    s = stat(analysis, task, model, label, metric)
    if s is None:
        return float("nan"), float("nan")
    half = (s["ci_high"] - s["ci_low"]) / 2 if not is_nan(s["ci_low"]) else float("nan")
    return s["mean"], half


def quality_vs_cost(analysis: Analysis, task: str, model: str, cost: str, quality: str, path: Path,
                    log_x: bool | str = False) -> Path | None:
    """``quality`` against ``cost``, one marker per configuration, with the Pareto front;
    ``log_x="auto"``: a log scale where the costs span ten times or more."""
    found = {l: (_point(analysis, task, model, l, cost), _point(analysis, task, model, l, quality))
             for l in analysis.labels(task, model)}
    points = {l: (x, y) for l, ((x, _), (y, _)) in found.items() if not (is_nan(x) or is_nan(y))}
    if not points:
        return None
    front = pareto_front(points)  # of every configuration; the figure draws a few (shown.py)
    labels = figure_labels(analysis, task, model, front)
    style, fig = styles(labels), plt.figure(figsize=(6, 4))
    for l in (l for l in labels if l in points):
        (x, xe), (y, ye) = found[l]
        plt.errorbar(x, y, xerr=None if is_nan(xe) else xe, yerr=None if is_nan(ye) else ye,
                     linestyle="none", capsize=3, markersize=7, label=l, **style[l])
    plt.step([points[l][0] for l in front], [points[l][1] for l in front], where="post",
             color="black", linestyle="--", linewidth=1, label="Pareto front")
    xs = [x for x, _ in points.values()]
    if log_x == "auto":
        log_x = min(xs) > 0 and max(xs) >= 10 * min(xs)
    if log_x:
        plt.xscale("log")
    c, q = METRIC_BY_NAME[cost], METRIC_BY_NAME[quality]
    plt.xlabel(f"{c.label} ({c.arrow} better)")
    plt.ylabel(f"{q.label} ({q.arrow} better)")
    plt.title(f"{q.label} vs {c.label} — {task}")
    _legend_outside()
    return _save(fig, path)


def cost_bars(analysis: Analysis, task: str, model: str, metrics: list[str], path: Path) -> Path | None:
    labels = figure_labels(analysis, task, model)
    style = styles(labels)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.4))
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        means, halves = zip(*[_point(analysis, task, model, l, metric) for l in labels])
        ax.bar(range(len(labels)), means, yerr=[0 if is_nan(h) else h for h in halves], capsize=4,
               color=[style[l]["color"] for l in labels], edgecolor="black", linewidth=0.5)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        m = METRIC_BY_NAME[metric]
        ax.set_title(f"{m.label} ({m.arrow} better)", fontsize=9)
    fig.suptitle(f"Cost per method — {task} (error bars: 95% CI over seeds)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def learning_curves(analysis: Analysis, curves: pd.DataFrame, task: str, model: str, metric: str,
                    path: Path) -> Path | None:
    runs = analysis.per_run[(analysis.per_run.task == task) & (analysis.per_run.model == model)]
    c = curves[(curves.split == "validation") & (curves.metric == metric)
               & (curves.variant.fillna("") == "")].merge(runs[["run_id", "label"]], on="run_id")
    if c.empty or c.epoch.nunique() < 2:
        return None
    labels = figure_labels(analysis, task, model)
    style, by_label = styles(labels), dict(iter(c.groupby("label", sort=False)))
    fig = plt.figure(figsize=(6, 4))
    for l in (l for l in labels if l in by_label):
        per_epoch = by_label[l].groupby("epoch")["value"]
        if per_epoch.ngroups == 0:
            continue
        mean, std = per_epoch.mean(), per_epoch.std(ddof=1).fillna(0)
        peak = list(mean.index).index(mean.idxmax())
        plt.plot(mean.index, mean.values, color=style[l]["color"], label=l, linewidth=1.5,
                 marker=style[l]["marker"], markevery=[peak], markersize=9, markeredgecolor="black")
        plt.fill_between(mean.index, mean - std, mean + std, color=style[l]["color"], alpha=0.15)
    plt.xlabel("epoch")
    plt.ylabel(f"validation {METRIC_BY_NAME[metric].label.lower()}")
    plt.xticks(sorted(c.epoch.unique()))
    plt.title(f"Learning curves — {task} (mean ± std over seeds; marker: peak)")
    _legend_outside()
    return _save(fig, path)


def rank_sweep(analysis: Analysis, task: str, model: str, metrics: list[str], path: Path) -> Path | None:
    runs = analysis.per_run[(analysis.per_run.task == task) & (analysis.per_run.model == model)]
    swept = [g for g, r in runs.dropna(subset=["r"]).groupby(["method", "quant"]) if r.r.nunique() > 1]
    if not swept:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.4))
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        for i, (method, quant) in enumerate(swept):
            sub = runs[(runs.method == method) & (runs.quant == quant)]
            ranks = sorted(sub.r.dropna().unique())
            pts = [_point(analysis, task, model, sub[sub.r == r].label.iloc[0], metric) for r in ranks]
            ax.errorbar(ranks, [p[0] for p in pts], yerr=[0 if is_nan(p[1]) else p[1] for p in pts],
                        marker=MARKERS[i], capsize=3, label=method if quant == "none" else f"{method} {quant}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("rank r")
        m = METRIC_BY_NAME[metric]
        ax.set_title(f"{m.label} ({m.arrow} better)", fontsize=9)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.suptitle(f"Rank sweep — {task}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def quantization(analysis: Analysis, task: str, model: str, metrics: list[str], path: Path) -> Path | None:
    runs = analysis.per_run[(analysis.per_run.task == task) & (analysis.per_run.model == model)]
    pairs = []
    for _, fam in (runs.groupby("family") if (runs.quant != "none").any() else []):  # no 4-bit: none
        plain, quant = fam[fam.quant == "none"], fam[fam.quant != "none"]
        for q in quant.label.unique():
            if len(plain):
                pairs.append((plain.label.iloc[0], q))
    if not pairs:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.4))
    x = np.arange(len(pairs))
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        for k, (side, name) in enumerate(((0, "full precision"), (1, "4-bit"))):
            pts = [_point(analysis, task, model, p[side], metric) for p in pairs]
            ax.bar(x + (k - 0.5) * 0.38, [p[0] for p in pts], 0.38, label=name,
                   yerr=[0 if is_nan(p[1]) else p[1] for p in pts], capsize=3,
                   color="#bbbbbb" if side == 0 else "#444444", edgecolor="black", linewidth=0.5)
        ax.set_xticks(x, [f"{a}\nvs {b}" for a, b in pairs], fontsize=7)
        ax.set_xlim(-1, len(pairs))
        m = METRIC_BY_NAME[metric]
        ax.set_title(f"{m.label} ({m.arrow} better)", fontsize=9)
    handles, names = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=7, loc="upper right", ncol=2)
    fig.suptitle(f"Same method with and without a 4-bit base — {task}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def lr_search(searches: list, task: str, model: str, path: Path) -> Path | None:
    """Validation value against learning rate (log axis), one line per configuration's search,
    the chosen rate marked with a star; one panel per validation metric. None without searches."""
    mine = [s for s in searches if (s.task, s.model) == (task, model) and len(s.points)]
    if not mine:
        return None
    metrics = list(dict.fromkeys(s.metric for s in mine))
    style = styles(list(dict.fromkeys(s.name for s in mine)))
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 if len(metrics) == 1 else 3.6 * len(metrics), 4),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        chosen_shown = False
        for s in (s for s in mine if s.metric == metric):
            st = style[s.name]
            ax.plot(s.points.lr, s.points.value, color=st["color"], marker=st["marker"], markersize=5,
                    linewidth=1.5, label=s.name)
            value = s.chosen_value
            if value is not None:
                ax.plot([s.chosen], [value], linestyle="none", marker="*", markersize=16,
                        color=st["color"], markeredgecolor="black", zorder=5)
                chosen_shown = True
            elif s.chosen is not None:  # a final rate that was not among the searched ones
                ax.axvline(s.chosen, color=st["color"], linestyle=":", linewidth=1)
        if chosen_shown:  # one legend entry for every line's star
            ax.plot([], [], linestyle="none", marker="*", markersize=12, color="white",
                    markeredgecolor="black", label="chosen rate")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log scale)")
        try:
            direction = f" ({'↑' if fields.higher_is_better(metric) else '↓'} better)"
        except (KeyError, ValueError):
            direction = ""
        ax.set_ylabel(f"validation {metric}{direction}")
        ax.legend(fontsize=7)
    fig.suptitle(f"Learning-rate search — {task} ({model}); star: the chosen rate", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _legend_outside() -> None:
    plt.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
