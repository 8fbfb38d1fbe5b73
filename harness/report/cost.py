"""The cost view: what each configuration's quality cost in time, energy, memory and money.

One table per (task, model), one row per configuration (the comparison table's rows): the
quality metrics (mean ± std over seeds), training time (``train_s``), wall time (``wall_s``),
energy (``energy_j`` with what measured it, ``energy_kind``; empty where a run could not measure
it, never an estimate), peak memory (and per phase, ``peak_memory_train_bytes`` and
``peak_memory_eval_bytes``, where the runs recorded them) and, with a price per device-hour
(``report.cost``), the money one run cost: ``wall_s / 3600 * price[device_kind]``. A run whose
device kind has no price gets no money figure. :func:`cost_frame` holds the unrounded numbers
(the CSV); :func:`cost_table` the same as text cells (Markdown, LaTeX, HTML, PDF).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.config import CostConfig
from harness.report.aggregate import METRICS, format_value
from harness.report.compare import Analysis, is_nan, stat
from harness.report.model_change import model_change_notes
from harness.report.stats import mean_interval
from harness.report.tables import Cell, Table

MIB = 2**20
MONEY = "money_per_run"


@dataclass(frozen=True)
class Quantity:
    """A cost column, averaged over a configuration's runs: lower is better, but for the share of
    the device's peak the training step used (MFU, higher is better)."""

    name: str  # column of the cost frame (per run: the stored value / scale)
    label: str
    source: str  # column of the runs table (MONEY: computed here)
    scale: float = 1.0
    optional: bool = False  # shown only where some run of the table recorded it
    higher_is_better: bool = False
    ranked: bool = True  # False: described, not ranked (no arrow, no bold): the update's shape

    @property
    def header(self) -> str:
        return f"{self.label} {'↑' if self.higher_is_better else '↓'}" if self.ranked else self.label


QUANTITIES = [
    Quantity("forgetting", "Forgetting", "forgetting", optional=True),  # harness.run.model_change
    Quantity("update_rel_norm_mean", "‖ΔW‖/‖W‖", "update_rel_norm_mean", optional=True, ranked=False),
    Quantity("update_erank_mean", "ΔW erank", "update_erank_mean", optional=True, ranked=False),
    Quantity("train_s", "Train time s", "train_s"),
    Quantity("mfu", "MFU", "mfu", optional=True, higher_is_better=True),
    Quantity("wall_s", "Wall time s", "wall_s"),
    Quantity("energy_j", "Energy J", "energy_j"),
    Quantity("peak_memory_mib", "Peak memory MiB", "peak_memory_bytes", MIB),
    Quantity("peak_memory_train_mib", "Peak train MiB", "peak_memory_train_bytes", MIB, optional=True),
    Quantity("peak_memory_eval_mib", "Peak eval MiB", "peak_memory_eval_bytes", MIB, optional=True),
]


def cost_runs(analysis: Analysis, finished: pd.DataFrame, task: str, model: str,
              cost: CostConfig | None = None) -> pd.DataFrame:
    """One row per run of the table: label, seed, device kind, each quantity in its unit, the
    energy's kind, the price per device-hour and the money (NaN without a price)."""
    prices = (cost or CostConfig()).prices()
    runs = analysis.runs(task, model)[["run_id", "label", "seed", "device_kind"]].reset_index(drop=True)
    raw = finished.set_index("run_id").reindex(runs.run_id)
    for q in QUANTITIES:
        values = raw[q.source] if q.source in raw.columns else pd.Series(np.nan, index=raw.index)
        runs[q.name] = pd.to_numeric(values, errors="coerce").to_numpy() / q.scale
    kinds = raw["energy_kind"] if "energy_kind" in raw.columns else pd.Series(None, index=raw.index)
    runs["energy_kind"] = [k if isinstance(k, str) and k else None for k in kinds]
    runs.loc[runs.energy_j.isna(), "energy_kind"] = None
    runs["price_per_hour"] = [prices.get(k, np.nan) if isinstance(k, str) else np.nan
                              for k in runs.device_kind]
    runs[MONEY] = runs.wall_s / 3600 * runs.price_per_hour
    return runs


def _shown(runs: pd.DataFrame, cost: CostConfig | None) -> list[Quantity]:
    shown = [q for q in QUANTITIES if not q.optional or runs[q.name].notna().any()]
    if cost is not None and cost.prices():
        shown.append(Quantity(MONEY, f"Cost {cost.currency}/run", MONEY))
    return shown


def cost_frame(analysis: Analysis, finished: pd.DataFrame, task: str, model: str,
               cost: CostConfig | None = None) -> pd.DataFrame:
    """One row per configuration, unrounded: n, the quality means and stds, each quantity's
    mean, std and n (runs that have it), the energy kind(s), device kind, price and currency."""
    return _frame(analysis, cost_runs(analysis, finished, task, model, cost), task, model, cost)


def _frame(analysis: Analysis, runs: pd.DataFrame, task: str, model: str, cost: CostConfig | None):
    rows = []
    for label in analysis.labels(task, model):
        mine = runs[runs.label == label]
        row = {"task": task, "model": model, "label": label, "n": len(mine)}
        for m in (m for m in METRICS if m.quality):
            s = stat(analysis, task, model, label, m.name) or {}
            row.update({m.name: s.get("mean", np.nan), f"{m.name}_std": s.get("std", np.nan),
                        f"{m.name}_n": s.get("n", 0)})
        for q in _shown(runs, cost):
            values = mine[q.name].dropna().to_numpy()
            mean, std, _, _ = mean_interval(values) if len(values) else (np.nan,) * 4
            row.update({q.name: mean, f"{q.name}_std": std, f"{q.name}_n": len(values)})
        row["energy_kind"] = ", ".join(sorted(set(mine.energy_kind.dropna()))) or None
        row["device_kind"] = ", ".join(sorted(set(mine.device_kind.dropna()))) or None
        row["price_per_hour"] = mine.price_per_hour.iloc[0] if len(mine) else np.nan
        row["currency"] = cost.currency if cost is not None and cost.prices() else None
        rows.append(row)
    return pd.DataFrame(rows)


def money_text(value: float) -> str:
    """A sum of money: two decimals from 1 on, else three significant digits (0.000181)."""
    if is_nan(value):
        return "—"
    return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


def _cell(row: pd.Series, name: str, digits: int, money: bool = False) -> Cell:
    mean, std, n = row[name], row[f"{name}_std"], int(row[f"{name}_n"])
    if is_nan(mean):
        return Cell("—")
    text = money_text if money else (lambda v: format_value(v, digits))
    spread = "(n=1)" if n < 2 else f"± {text(std)}"
    return Cell(text(mean), spread + (f" ({n} of {row.n} runs)" if n < row.n else ""))


def cost_table(analysis: Analysis, finished: pd.DataFrame, task: str, model: str,
               cost: CostConfig | None = None) -> Table:
    """The cost view of one (task, model) as text cells; best of each column in bold."""
    runs = cost_runs(analysis, finished, task, model, cost)
    frame = _frame(analysis, runs, task, model, cost)
    shown = {q.name: q for q in _shown(runs, cost)}
    # (header, frame column, digits, higher is better); None: a text column
    columns = [(f"{m.label} {m.arrow}", m.name, m.digits, m.higher_is_better) for m in METRICS if m.quality]
    columns += [(q.header, q.name, 4 if n != "mfu" else 3, q.higher_is_better) for n, q in shown.items()
                if not n.startswith("peak") and n != MONEY]
    columns += [("Energy measured as", "energy_kind", 0, None)]
    columns += [(q.header, q.name, 4, False) for n, q in shown.items() if n.startswith("peak")]
    columns += [(q.header, q.name, 4, False) for n, q in shown.items() if n == MONEY]
    rows = [[Cell(r.label), Cell(str(r.n))]
            + [Cell(r.energy_kind if isinstance(r.energy_kind, str) else "not measured") if higher is None else _cell(r, name, digits, name == MONEY)
               for _, name, digits, higher in columns] for _, r in frame.iterrows()]
    for col, (_, name, _, higher) in enumerate(columns, start=2):
        values = frame[name].dropna() if higher is not None else pd.Series(dtype=float)
        if (name in shown and not shown[name].ranked) or (
                name == "energy_j" and frame.energy_kind.dropna().nunique() > 1):
            continue  # described, not ranked; or the whole CPU package against the whole GPU
        if len(values) > 1:
            best = values.max() if higher else values.min()
            for i in values.index[values == best]:
                rows[i][col].best = True
    return Table(f"{task} — {model}: cost", ["Method", "n"] + [c[0] for c in columns], rows,
                 _notes(runs, cost))


def _notes(runs: pd.DataFrame, cost: CostConfig | None) -> list[str]:
    notes = ["Mean ± standard deviation over seeds; n = runs; bold: best in its column. Quality as in "
             "the comparison table (its significance marks are there). Train time: the training "
             "loop (train_s); wall time: the whole run, loading and evaluation included (wall_s)."]
    if "mfu" in runs and runs.mfu.notna().any():
        notes.append("MFU: the model FLOPs of a training step (torch's FLOP counter on the run's model "
                     "and batch, the method's own work included) times the run's training tokens per "
                     "second, over the device's peak (the datasheet's bf16 peak of a known GPU, else a "
                     "matmul peak measured on the device); higher is better.")
    kinds = sorted(set(runs.energy_kind.dropna()))
    notes.append("Energy: " + ("what the device used during the run, measured as " + ", ".join(
        f"{k} ({ENERGY_KINDS.get(k, k)})" for k in kinds) + "; " if kinds else "")
                 + "— where the run could not measure it (no readable RAPL or NVML counter): never "
                   "an estimate." + (" Energies of different kinds are not compared (no bold)."
                                     if len(kinds) > 1 else ""))
    notes += model_change_notes(runs)
    prices = cost.prices() if cost is not None else {}
    if prices:
        unpriced = sorted({k if isinstance(k, str) else "unknown" for k in runs.device_kind} - set(prices))
        notes.append(f"Cost {cost.currency}/run: wall time / 3600 × the price per device-hour ("
                     + ", ".join(f"{k} {v:g} {cost.currency}" for k, v in sorted(prices.items())) + ")"
                     + (f"; — for runs on a device kind without a price ({', '.join(unpriced)})"
                        if unpriced else "") + ".")
    else:
        notes.append("No money shown: no price per device-hour is set (report.cost.per_device_hour, "
                     "or --price cpu=0.05 with python -m harness.report).")
    return notes


def cost_figure(analysis: Analysis, finished: pd.DataFrame, task: str, model: str,
                path: Path) -> Path | None:
    """The first quality metric against training time and, where some run measured it, energy:
    one marker per configuration (its mean, error bars the interval over seeds), with the Pareto
    front. None when no configuration has both."""
    from harness.report.plots import figure_labels, pareto_front, plt, styles

    quality = next((m for m in METRICS if m.quality), None)
    runs = cost_runs(analysis, finished, task, model)
    kinds = sorted(set(runs.energy_kind.dropna()))
    panels = [("train_s", "Training time s")] + ([("energy_j", f"Energy J ({', '.join(kinds)})")] if kinds else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 1.6, 4), squeeze=False)
    drawn, by_label = False, dict(iter(runs.groupby("label", sort=False)))
    for ax, (column, name) in zip(axes[0], panels):
        points, bars = _cost_points(analysis, by_label, task, model, column, quality)
        front = pareto_front(points) if points and not (column == "energy_j" and len(kinds) > 1) else []
        labels = figure_labels(analysis, task, model, front)  # a few of many (harness.report.shown)
        style = styles(labels)
        for label in (l for l in labels if l in points):
            ax.errorbar(*points[label], xerr=bars[label][0], yerr=bars[label][1], linestyle="none",
                        capsize=3, markersize=7, label=label, **style[label])
        drawn = drawn or bool(points)
        if front:  # one scale only: no front over energies of different kinds
            ax.step([points[l][0] for l in front], [points[l][1] for l in front], where="post",
                    color="black", linestyle="--", linewidth=1, label="Pareto front")
        ax.set_xlabel(f"{name} (↓ better)")
        ax.set_ylabel(f"{quality.label} (↑ better)" if quality else "")
        ax.set_title(f"{quality.label if quality else ''} vs {name} — {task}", fontsize=9)
    if not drawn:
        plt.close(fig)
        return None
    legend = {n: h for ax in axes[0] for h, n in zip(*ax.get_legend_handles_labels())}
    axes[0][-1].legend(legend.values(), legend.keys(), fontsize=7, loc="center left",
                       bbox_to_anchor=(1.01, 0.5))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _cost_points(analysis: Analysis, by_label: dict, task: str, model: str, column: str,
                 quality) -> tuple[dict, dict]:
    """({label: (mean cost, mean quality)}, {label: (x error, y error)}) of every configuration
    with both (error bars: half the 95% intervals; None where there is none)."""
    points, bars = {}, {}
    for label in analysis.labels(task, model):
        x = by_label[label][column].dropna().to_numpy() if label in by_label else np.array([])
        s = stat(analysis, task, model, label, quality.name) if quality else None
        if not len(x) or s is None or is_nan(s["mean"]):
            continue
        mean, _, low, high = mean_interval(x, analysis.confidence)
        points[label] = (mean, s["mean"])
        bars[label] = (None if is_nan(low) else (high - low) / 2,
                       None if is_nan(s["ci_low"]) else (s["ci_high"] - s["ci_low"]) / 2)
    return points, bars


ENERGY_KINDS = {"rapl_package": "the whole CPU package(s), every process on them",
                "nvml_gpu": "the whole GPU, every process on it"}
