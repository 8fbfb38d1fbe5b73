"""Every pairwise comparison in a selection, the reference comparisons and baseline checks.

All pairs of configurations (groups, :mod:`harness.report.aggregate`) within one (task, model) are
tested on every metric; the p-values of one metric form one family for the multiple-comparison
correction (Holm by default), so a difference marked significant in a table, a finding and a claim
all rest on the same number. Accuracy and macro-F1 are tested on the runs' per-example test
predictions where the store kept them (exact McNemar, paired bootstrap, two-level bootstrap), else
at the seed level (paired or Welch t-test); :mod:`harness.report.stats` says which and why.

Before anything is counted, one finished row per ``config_hash`` is kept (the latest): a
configuration computed twice is one result, not two seeds (:func:`~harness.report.select.deduplicate`;
``Analysis.duplicates`` holds the rows left out). Every comparison also records whether the two
groups had the same configuration apart from the method (their keys without ``method.*``), the
same budget (optimizer steps, examples and tokens seen), and whether they mix harness versions.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields as dataclass_fields
from itertools import combinations

import numpy as np
import pandas as pd

from harness.report.aggregate import GROUP, METRICS, aggregate, metric_frame
from harness.report.budget import BudgetCheck, check_budget
# evidence, n_text, is_nan: how comparisons are worded, used from here by tables and findings
from harness.report.evidence import evidence, is_nan, n_text, setting_text  # noqa: F401
from harness.report.family import family as tested_pairs, methods_text  # noqa: F401 - methods_text: used from here
from harness.report.lookup import Lookup
from harness.report.pairing import (baseline_check, budget_difference, compare_groups, example_pairs,
                                    pair_settings, pick_references, plain, side_difference)
from harness.report.select import deduplicate, run_predictions
from harness.report.sides import Side
from harness.report.stats import EXAMPLE_METRICS, RESAMPLES, Comparison, Resampler, holm, significant

CORRECTIONS = ("holm", "none")
_COMPARISON_FIELDS = [f.name for f in dataclass_fields(Comparison)]


@dataclass
class Analysis:
    per_run: pd.DataFrame  # one row per finished run, metrics in report units
    agg: pd.DataFrame  # long: group, metric, n, mean, std, ci_low, ci_high
    pairs: pd.DataFrame  # long: task, model, metric, base, other, diff, test, p, p_adjusted, ...
    baseline: pd.DataFrame  # task, model, label, margin, test, p, above, ci_low, ci_high, n_seeds, ...
    reference: str
    alpha: float
    correction: str
    confidence: float
    references: dict = field(default_factory=dict)  # (task, model, label) -> reference label
    duplicates: pd.DataFrame = field(default_factory=pd.DataFrame)  # finished rows left out (same config_hash)
    with_predictions: set = field(default_factory=set)  # run ids whose test predictions were used
    families: dict = field(default_factory=dict)  # (task, model) -> the pairs tested (family.py)
    _lookup: Lookup | None = field(default=None, init=False, repr=False, compare=False)

    def comparison(self, task: str, model: str, metric: str, base: str, other: str) -> Comparison | None:
        """``other`` minus ``base``, whichever order the pair was tested in."""
        for a, b, sign in ((base, other, 1), (other, base, -1)):
            r = self.lookup.pair(task, model, metric, a, b)
            if r is not None:
                values = {k: r[k] for k in _COMPARISON_FIELDS if k in r}
                if sign == -1:
                    # "+ 0.0" turns a flipped zero (-0.0) into 0.0, so it never prints as "-0.0000"
                    values.update(diff=-r["diff"] + 0.0, ci_low=-r["ci_high"] + 0.0,
                                  ci_high=-r["ci_low"] + 0.0, n_base=r["n_other"], n_other=r["n_base"])
                    # "x vs y" texts read base first
                    sa, sb = self.lookup.side(task, model, base), self.lookup.side(task, model, other)
                    if sa is not None and sb is not None:
                        values["config_diff"] = "; ".join(side_difference(sa, sb))
                        values["budget_diff"] = budget_difference(sa, sb)[1]
                return Comparison(**plain(values))
        return None

    @property
    def lookup(self) -> Lookup:
        """The analysis's frames indexed by table, configuration and metric (made on first use)."""
        if self._lookup is None:
            self._lookup = Lookup(self)
        return self._lookup

    def versus_reference(self, task: str, model: str, label: str, metric: str) -> Comparison | None:
        ref = self.references.get((task, model, label))
        if ref is None or ref == label:
            return None
        return self.comparison(task, model, metric, ref, label)

    def labels(self, task: str, model: str) -> list[str]:
        return list(self.lookup.memo(("labels", task, model), lambda: list(dict.fromkeys(
            self.runs(task, model).sort_values(["method", "quant", "r", "label"], kind="stable")["label"]))))

    def runs(self, task: str, model: str, label: str | None = None) -> pd.DataFrame:
        """The per-run rows of one table (and one of its configurations)."""
        return self.lookup.runs(task, model, label)

    def rates(self, task: str, model: str, label: str) -> "Rates":
        """The learning rates the runs of one configuration trained at."""
        return self.lookup.memo(("rates", task, model, label), lambda: self._rates(task, model, label))

    def _rates(self, task: str, model: str, label: str) -> "Rates":
        if "lr" not in self.per_run.columns:
            return Rates({}, len(self.runs(task, model, label)))
        lr = self.runs(task, model, label)["lr"]
        known = lr.dropna()
        counts = known.value_counts().sort_index()
        return Rates({float(r): int(n) for r, n in counts.items()}, int(lr.isna().sum()))

    def budget(self, task: str, model: str) -> BudgetCheck:
        """Whether the runs of one table had the same budget (see harness.report.budget)."""
        return check_budget(self.runs(task, model))

    def duplicates_of(self, task: str, model: str) -> pd.DataFrame:
        d = self.duplicates
        return d if d.empty else d[(d.task == task) & (d.model == model)]

    def split_methods(self, task: str, model: str) -> dict[tuple, list[str]]:
        """{(method, quant, r): [labels]} where one table holds several configurations of one
        method (other settings): shown apart, never averaged."""
        runs = self.runs(task, model)
        out = {}
        for key, g in runs.groupby(["method", "quant", "r"], dropna=False, sort=True):
            labels = list(dict.fromkeys(g.sort_values("label")["label"]))
            if len(labels) > 1:
                out[key] = labels
        return out

    def versions(self, task: str, model: str) -> list[str]:
        """The harness versions of one table's runs (empty: none recorded)."""
        runs = self.runs(task, model)
        if "harness_version" not in runs.columns:
            return []
        return sorted({str(v) for v in runs["harness_version"] if v is not None and not pd.isna(v)})

    def mixed_version_pairs(self, task: str, model: str) -> list[Comparison]:
        """The comparisons of one table (first metric tested) whose runs mix harness versions."""
        p = self.pairs
        if p.empty or "versions" not in p.columns:
            return []
        hit = p[(p.task == task) & (p.model == model) & (p.versions.fillna("") != "")]
        return list(hit.drop_duplicates(["base", "other"]).itertuples())


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


def analyze(finished: pd.DataFrame, reference: str = "lora", alpha: float = 0.05,
            correction: str = "holm", confidence: float = 0.95, predictions: dict | None = None,
            resamples: int = RESAMPLES, claims: list = ()) -> Analysis:
    """Aggregate and test the finished runs. ``predictions``: the store's per-example test
    predictions, ``{run_id: {"labels", "predictions", "majority"}}``
    (``open_store(url, create=False).predictions()``); without them every test is seed-level.
    ``claims``: the claims to be checked (:class:`~harness.report.findings.Claim`), whose pairs a
    table with many configurations tests too (:mod:`harness.report.family`)."""
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    finished, duplicates = deduplicate(finished)
    per_run = metric_frame(finished) if len(finished) else pd.DataFrame(columns=GROUP + ["label", "seed", "run_id"])
    agg = aggregate(per_run, confidence) if len(per_run) else pd.DataFrame()
    preds = run_predictions(finished, predictions)
    resampler = Resampler(resamples)
    resampler.prepare([q for p in preds.values()
                       for q in ([p, p.against_majority()] if p.majority is not None
                                 and np.shape(p.majority) == np.shape(p.labels) else [p])])
    pairs, baseline, references, families = [], [], {}, {}
    for (task, model), runs in per_run.groupby(["task", "model"], sort=True):
        groups = runs.groupby("label", sort=True)
        first = runs.drop_duplicates("label")[["label", "method", "quant", "r", "group", "lr"]]
        sizes = groups.size().rename("n").reset_index().merge(first, on="label")
        mine = pick_references(sizes, reference)
        references.update({(task, model, label): ref for label, ref in mine.items()})
        fam = families[(task, model)] = tested_pairs(list(mine), mine, _front_points(agg, runs, task, model), claims)
        table = [(label, Side.of(g)) for label, g in groups]
        settings, examples = {}, {}
        for metric in [m.name for m in METRICS]:
            family = []
            for (la, a), (lb, b) in combinations(table, 2):
                if not (fam.tests(la, lb) and a.has(metric) and b.has(metric)):
                    continue
                if (la, lb) not in settings:
                    settings[(la, lb)] = pair_settings(a, b)
                if metric in EXAMPLE_METRICS and (la, lb) not in examples:
                    examples[(la, lb)] = example_pairs(a, b, preds)
                c = compare_groups(a, b, metric, preds, resampler, confidence, settings[(la, lb)],
                                   examples.get((la, lb)))
                family.append({"task": task, "model": model, "metric": metric, "base": la,
                               "other": lb, **vars(c)})
            resampler.forget_draws()  # the resampled means of this metric's configurations
            adjusted = holm([f["p"] for f in family]) if correction == "holm" else [f["p"] for f in family]
            for f, p in zip(family, adjusted):
                f["p_adjusted"] = p
                f["significant"] = significant(f["test"], f["diff"], f["p"], p, alpha)
            pairs += family
        for label, g in groups:
            check = baseline_check(g, preds, alpha, confidence, resampler)
            baseline.append({"task": task, "model": model, "label": label, **vars(check)})
    return Analysis(per_run, agg, _frame(pairs), pd.DataFrame(baseline), reference, alpha,
                    correction, confidence, references, duplicates,
                    {r for r in per_run.run_id if r in preds}, families)


def _front_points(agg: pd.DataFrame, runs: pd.DataFrame, task: str, model: str) -> dict:
    """{label: (mean peak memory, mean accuracy)} in table order: the points of the budget
    findings' Pareto front (harness.report.findings.budget_findings)."""
    sub = agg[(agg.task == task) & (agg.model == model)]
    mean = {m: dict(zip(g.label, g["mean"])) for m, g in sub.groupby("metric")}
    cost, quality = mean.get("peak_memory_mib", {}), mean.get("accuracy", {})
    order = dict.fromkeys(runs.sort_values(["method", "quant", "r", "label"], kind="stable")["label"])
    return {l: (cost[l], quality[l]) for l in order if l in cost and l in quality}


def _frame(rows: list[dict]) -> pd.DataFrame:
    """``pd.DataFrame(rows)`` for rows with the same keys, built column by column (200,000 pairs
    of a week of sweeps: seconds faster than from the list of dicts)."""
    return pd.DataFrame({k: [r[k] for r in rows] for k in rows[0]}) if rows else pd.DataFrame()


def stat(analysis: Analysis, task: str, model: str, label: str, metric: str) -> dict | None:
    """The aggregate row (n, mean, std, ci_low, ci_high) of one group and metric."""
    return analysis.lookup.stat(task, model, label, metric)
