"""Per-configuration aggregates over seeds: mean, standard deviation, n and a 95% t-interval.

A *group* is one whole configuration, seeds apart (:mod:`harness.report.groups`: the resolved
config without seed and unhashed keys, plus the data, model, device kind and harness version);
runs of one method with other settings are other groups, never averaged together. Every metric
the tables show is listed in :data:`METRICS` with its label, scale and direction, built from the
field declarations (:mod:`harness.fields`, ``report=...``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness import fields
from harness.fields import LiveList, LiveMapping
# GROUP and group_labels are used from here too (search, compare): re-exported
from harness.report.groups import GROUP, IDENTITY, blank, group_keys, group_labels  # noqa: F401
from harness.report.stats import mean_interval

# A run's training budget and data sizes: the report checks that compared runs share them.
BUDGET = ["optimizer_steps", "train_examples_seen", "train_tokens"]
DATA_SIZES = ["n_train", "n_validation", "n_test"]
# Carried into the per-run frame as they are (never aggregated): the learning rate the run
# trained at, its protocol stage and search, its budget.
RUN_COLUMNS = ["lr", "stage", "search_id", "select_metric", "select_value", *BUDGET, *DATA_SIZES,
               *IDENTITY, "baseline", "train_flops", "flops_budget",
               "train_s", "time_budget_s", "device"]
_TEXT_COLUMNS = ("stage", "search_id", "select_metric", *IDENTITY, "baseline", "device")
# Baselines that train no network (harness.methods.tfidf, zero_shot): outside the training budget.
UNTRAINED = ("classical", "untrained")


@dataclass(frozen=True)
class Metric:
    name: str  # column in the aggregated frame
    label: str  # column header
    source: str  # column in the runs table
    scale: float = 1.0  # divides the stored value (bytes -> MiB)
    digits: int = 4  # significant digits when printed
    quality: bool = False

    @property
    def higher_is_better(self) -> bool:
        return fields.higher_is_better(self.source)

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    @classmethod
    def of(cls, field: fields.Field) -> "Metric":
        return cls(field.display_name, field.report or field.name, field.name, field.report_scale,
                   field.digits, field.quality)


# Follow harness.fields: a field declared with report=... is a column here, in table order.
METRICS: LiveList = LiveList(lambda: [Metric.of(f) for f in fields.report_metrics()])
METRIC_BY_NAME: LiveMapping = LiveMapping(lambda: {m.name: m for m in METRICS})
# Every column aggregated over seeds: the report metrics, then the other fields declared with
# aggregate="mean" (the majority-class accuracy).
AGGREGATED: LiveList = LiveList(lambda: [Metric.of(f) for f in fields.aggregated_fields()])


def metric_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: the group axes, seed, its group (``group``: the key of
    :func:`config_key` as JSON), label, every metric in report units and, as stored, the
    :data:`RUN_COLUMNS` (learning rate, stage, budget, identity; empty where the store predates
    them)."""
    out = runs[GROUP + ["seed", "run_id"]].copy().reset_index(drop=True)
    runs = runs.reset_index(drop=True)
    out["r"] = out["r"].astype("Int64")
    for m in AGGREGATED:
        values = runs[m.source] if m.source in runs.columns else pd.Series(np.nan, index=runs.index)
        out[m.name] = pd.to_numeric(values, errors="coerce") / m.scale
    for col in RUN_COLUMNS:
        if col in out.columns:  # a report metric of the same name is already there
            continue
        values = runs[col] if col in runs.columns else pd.Series(None, index=runs.index, dtype=object)
        if col in _TEXT_COLUMNS:
            out[col] = [blank(v) for v in values.astype(object)]
        else:
            out[col] = pd.to_numeric(values, errors="coerce")
    configs = runs["config_json"] if "config_json" in runs.columns else pd.Series(None, index=runs.index)
    out["group"] = group_keys(configs, runs)
    out["label"] = group_labels(out)
    out["family"] = [_family(c) for c in configs]
    return out


def _family(config_json) -> str:
    """The method's settings apart from its name and base precision: lora and qlora (its 4-bit
    twin) share a family, so the quantization plot can set them side by side."""
    try:
        method = dict(json.loads(config_json).get("method", {}))
    except (TypeError, ValueError):
        return ""
    for key in ("name", "quant"):
        method.pop(key, None)
    return json.dumps(method, sort_keys=True)


def aggregate(per_run: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Long form: one row per (group, metric) with n, mean, std, ci_low, ci_high and seeds."""
    rows = []
    # a label names one group within a table (group_labels), so it is the group here
    names = [m.name for m in AGGREGATED]
    for key, runs in per_run.groupby(GROUP + ["label"], dropna=False, sort=True):
        base = dict(zip(GROUP + ["label"], key))
        seeds = [str(s) for s in runs["seed"].tolist()]
        for metric in names:  # numpy, not a pandas selection per metric: ~500 groups x 14 metrics
            column = runs[metric].to_numpy(dtype=float, na_value=np.nan)
            known = ~np.isnan(column)
            if not known.any():
                continue
            mean, std, low, high = mean_interval(column[known], confidence)
            rows.append({**base, "metric": metric, "n": int(known.sum()), "mean": mean, "std": std,
                         "ci_low": low, "ci_high": high,
                         "seeds": ",".join(s for s, k in zip(seeds, known) if k)})
    return pd.DataFrame(rows)


def wide_means(agg: pd.DataFrame, stat: str = "mean") -> pd.DataFrame:
    """One row per group, one column per metric holding ``stat``."""
    if agg.empty:
        return pd.DataFrame()
    out = agg.pivot_table(index=GROUP + ["label"], columns="metric", values=stat, dropna=False)
    return out.reset_index()


def format_value(value: float, digits: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    if value == 0:
        return "0"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}"
