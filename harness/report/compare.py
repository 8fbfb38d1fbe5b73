"""Every pairwise comparison in a selection, the reference comparisons and baseline checks.

All pairs of configurations within one (task, model) are tested on every metric; the p-values of
one metric form one family for the multiple-comparison correction (Holm by default), so a
difference marked significant in a table, a finding and a claim all rest on the same number.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from harness.report.aggregate import GROUP, METRICS, aggregate, metric_frame
from harness.report.budget import BudgetCheck, check_budget
from harness.report.stats import Comparison, above_majority, compare, holm

CORRECTIONS = ("holm", "none")


@dataclass
class Analysis:
    per_run: pd.DataFrame  # one row per finished run, metrics in report units
    agg: pd.DataFrame  # long: group, metric, n, mean, std, ci_low, ci_high
    pairs: pd.DataFrame  # long: task, model, metric, base, other, diff, test, p, p_adjusted, ...
    baseline: pd.DataFrame  # task, model, label, margin, test, p, above
    reference: str
    alpha: float
    correction: str
    confidence: float
    references: dict = field(default_factory=dict)  # (task, model, label) -> reference label

    def comparison(self, task: str, model: str, metric: str, base: str, other: str) -> Comparison | None:
        """``other`` minus ``base``, whichever order the pair was tested in."""
        p = self.pairs
        hit = p[(p.task == task) & (p.model == model) & (p.metric == metric)]
        for a, b, sign in ((base, other, 1), (other, base, -1)):
            row = hit[(hit.base == a) & (hit.other == b)]
            if len(row):
                r = row.iloc[0]
                low, high = (r.ci_low, r.ci_high) if sign == 1 else (-r.ci_high, -r.ci_low)
                # "+ 0.0" turns a flipped zero (-0.0) into 0.0, so it never prints as "-0.0000"
                return Comparison(sign * r["diff"] + 0.0, r.test, r.p, low + 0.0, high + 0.0,
                                  *((r.n_base, r.n_other) if sign == 1 else (r.n_other, r.n_base)),
                                  p_adjusted=r.p_adjusted)
        return None

    def versus_reference(self, task: str, model: str, label: str, metric: str) -> Comparison | None:
        ref = self.references.get((task, model, label))
        if ref is None or ref == label:
            return None
        return self.comparison(task, model, metric, ref, label)

    def labels(self, task: str, model: str) -> list[str]:
        runs = self.runs(task, model)
        return list(dict.fromkeys(runs.sort_values(["method", "quant", "r"])["label"]))

    def runs(self, task: str, model: str, label: str | None = None) -> pd.DataFrame:
        """The per-run rows of one table (and one of its configurations)."""
        p = self.per_run
        keep = (p.task == task) & (p.model == model)
        if label is not None:
            keep &= p.label == label
        return p[keep]

    def rates(self, task: str, model: str, label: str) -> "Rates":
        """The learning rates the runs of one configuration trained at."""
        if "lr" not in self.per_run.columns:
            return Rates({}, len(self.runs(task, model, label)))
        lr = self.runs(task, model, label)["lr"]
        known = lr.dropna()
        counts = known.value_counts().sort_index()
        return Rates({float(r): int(n) for r, n in counts.items()}, int(lr.isna().sum()))

    def budget(self, task: str, model: str) -> BudgetCheck:
        """Whether the runs of one table had the same budget (see harness.report.budget)."""
        return check_budget(self.runs(task, model))


@dataclass
class Rates:
    """The learning rates of one configuration's runs: {rate: runs} and how many runs have none."""

    counts: dict[float, int]
    unknown: int = 0

    @property
    def mixed(self) -> bool:
        """The runs do not share one learning rate (their mean averages over rates)."""
        return len(self.counts) + (1 if self.unknown and self.counts else 0) > 1

    @property
    def single(self) -> float | None:
        return next(iter(self.counts)) if len(self.counts) == 1 and not self.unknown else None

    def text(self, runs: bool = False) -> str:
        """'0.002', or every rate (with its run count when ``runs``), 'unknown' for none recorded."""
        def n_runs(n: int) -> str:
            return f" ({n} run{'s' * (n != 1)})" if runs else ""

        parts = [rate_text(r) + n_runs(n) for r, n in self.counts.items()]
        if self.unknown:
            parts.append("unknown" + (n_runs(self.unknown) if self.counts else ""))
        return ", ".join(parts)


def rate_text(lr: float) -> str:
    return f"{lr:.3g}"


def _by_seed(runs: pd.DataFrame, metric: str) -> dict[int, float]:
    values = runs[["seed", metric]].dropna()
    if values["seed"].duplicated().any():  # the same seed twice: no pairing, keep every run
        return {i: v for i, v in enumerate(values[metric])}
    return dict(zip(values["seed"].astype(int), values[metric].astype(float)))


def _pick_reference(groups: pd.DataFrame, reference: str, row: pd.Series) -> str | None:
    refs = groups[groups.method == reference]
    if refs.empty:
        return None
    same_r = (refs.r == row.r).fillna(False).astype(bool)
    score = (same_r.astype(int) * 4 + (refs.quant == "none").astype(int) * 2
             + refs.n / (refs.n.max() + 1))
    return str(refs.loc[score.idxmax(), "label"])


def analyze(finished: pd.DataFrame, reference: str = "lora", alpha: float = 0.05,
            correction: str = "holm", confidence: float = 0.95) -> Analysis:
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    per_run = metric_frame(finished) if len(finished) else pd.DataFrame(columns=GROUP + ["label", "seed"])
    agg = aggregate(per_run, confidence) if len(per_run) else pd.DataFrame()
    pairs, baseline, references = [], [], {}
    for (task, model), runs in per_run.groupby(["task", "model"], sort=True):
        groups = runs.groupby("label", sort=True)
        sizes = groups.size().rename("n").reset_index().merge(
            runs.drop_duplicates("label")[["label", "method", "quant", "r"]], on="label")
        for _, row in sizes.iterrows():
            references[(task, model, row.label)] = _pick_reference(sizes, reference, row)
        for metric in [m.name for m in METRICS]:
            family = []
            for (la, a), (lb, b) in combinations(groups, 2):
                c = compare(_by_seed(a, metric), _by_seed(b, metric), confidence) \
                    if a[metric].notna().any() and b[metric].notna().any() else None
                if c is not None:
                    family.append({"task": task, "model": model, "metric": metric, "base": la,
                                   "other": lb, **vars(c)})
            adjusted = holm([f["p"] for f in family]) if correction == "holm" else [f["p"] for f in family]
            for f, p in zip(family, adjusted):
                f["p_adjusted"] = p
                f["significant"] = Comparison(**{k: f[k] for k in (
                    "diff", "test", "p", "ci_low", "ci_high", "n_base", "n_other", "p_adjusted")}
                ).significant(alpha)
            pairs += family
        for label, g in groups:
            check = above_majority(g["accuracy"].to_numpy(), g["majority_accuracy"].to_numpy(), alpha)
            baseline.append({"task": task, "model": model, "label": label, **vars(check)})
    return Analysis(per_run, agg, pd.DataFrame(pairs), pd.DataFrame(baseline), reference, alpha,
                    correction, confidence, references)


def stat(analysis: Analysis, task: str, model: str, label: str, metric: str) -> dict | None:
    """The aggregate row (n, mean, std, ci_low, ci_high) of one group and metric."""
    a = analysis.agg
    if a.empty:
        return None
    hit = a[(a.task == task) & (a.model == model) & (a.label == label) & (a.metric == metric)]
    return None if hit.empty else hit.iloc[0].to_dict()


def is_nan(x) -> bool:
    return x is None or (isinstance(x, float) and np.isnan(x))
