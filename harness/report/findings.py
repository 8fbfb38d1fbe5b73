"""Sentences a reader can act on, generated from the analysis (never written by hand).

For each task: what the data rests on (duplicate rows left out, configurations of one method
shown apart, harness versions mixed, which tests the predictions allowed), the learning rate of
each configuration (and how a tuned protocol's search chose it), whether the compared runs had
the same budget, which differences from the reference are significant, which configurations are
not clearly above the majority class, which one to pick under each memory budget (the Pareto
front), which "X beats Y" claims the data supports or contradicts, and where validation quality
peaks. Every comparison printed names its test, n (seeds and test examples), the effect's 95%
interval, and whether the two rows had the same configuration apart from the method and the
same budget (:func:`harness.report.compare.evidence`).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.report.aggregate import METRIC_BY_NAME, METRICS, UNTRAINED, format_value
from harness.report.compare import Analysis, evidence, is_nan, stat
from harness.report.evidence import integrity_findings
from harness.report.stats import EXACT
from harness.report.plots import pareto_front
from harness.report.tables import signed


@dataclass
class Claim:
    """``winner`` beats ``loser`` on ``metric`` (in the metric's better direction)."""

    winner: str
    loser: str
    metric: str

    @classmethod
    def parse(cls, text: str) -> list["Claim"]:
        """'dora>lora' (every quality metric) or 'dora>lora:accuracy'."""
        body, _, metric = text.partition(":")
        winner, sep, loser = body.partition(">")
        if not sep or not winner.strip() or not loser.strip():
            raise ValueError(f"claim {text!r} must look like 'dora>lora' or 'dora>lora:accuracy'")
        if metric and metric not in METRIC_BY_NAME:
            raise ValueError(f"claim metric {metric!r} unknown; allowed: {', '.join(METRIC_BY_NAME)}")
        metrics = [metric] if metric else [m.name for m in METRICS if m.quality]
        return [cls(winner.strip(), loser.strip(), m) for m in metrics]


def _p(c) -> str:
    return evidence(c)


def reference_findings(a: Analysis, task: str, model: str) -> list[str]:
    out = []
    for m in (m for m in METRICS if m.quality):
        for label in a.labels(task, model):
            c = a.versus_reference(task, model, label, m.name)
            if c is None:
                continue
            ref = a.references[(task, model, label)]
            if is_nan(c.p) and c.test != EXACT:
                out.append(f"{label} vs {ref} on {m.label.lower()}: {c.diff:+.4f}, not tested ({_p(c)}).")
                continue
            verdict = "significant" if c.significant(a.alpha) else "NOT significant"
            ci = "" if is_nan(c.ci_low) else f", {a.confidence:.0%} CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}]"
            out.append(f"{label} vs {ref} on {m.label.lower()}: {c.diff:+.4f}{ci} — {verdict} "
                       f"({evidence(c, a.confidence, interval=False)}).")
    return out


def baseline_findings(a: Analysis, task: str, model: str) -> list[str]:
    """One line per configuration: its accuracy margin over the majority class, with the test."""
    b = a.baseline[(a.baseline.task == task) & (a.baseline.model == model)]
    out = []
    for r in b.itertuples():
        verdict = ("is significantly above the majority class" if r.above else
                   "is NOT shown to beat the majority class")
        ci = "" if is_nan(r.ci_low) else f", {a.confidence:.0%} CI [{r.ci_low:+.4f}, {r.ci_high:+.4f}]"
        out.append(f"{r.label} {verdict}: accuracy margin {r.margin:+.4f}{ci} "
                   f"({evidence(r, a.confidence, interval=False)}; alpha={a.alpha}).")
    weak = [s for s in out if "is NOT shown" in s]
    return weak + [s for s in out if s not in weak]


def budget_findings(a: Analysis, task: str, model: str, quality: str = "accuracy",
                    cost: str = "peak_memory_mib") -> list[str]:
    points = {}
    for l in a.labels(task, model):
        q, c = stat(a, task, model, l, quality), stat(a, task, model, l, cost)
        if q and c:
            points[l] = (c["mean"], q["mean"])
    if not points:
        return []
    front = pareto_front(points)
    out = [f"Pareto front ({METRIC_BY_NAME[quality].label.lower()} vs {METRIC_BY_NAME[cost].label}): "
           + ", ".join(front) + ". Off the front (another configuration is at least as good for less): "
           + (", ".join(l for l in points if l not in front) or "none") + "."]
    out.append(f"Below {format_value(points[front[0]][0], 4)} MiB nothing in this selection fits.")
    for prev, l in zip([None] + front[:-1], front):
        x, y = points[l]
        text = f"With a budget of at least {format_value(x, 4)} MiB: {l} ({quality} {y:.4f})"
        if prev is not None:
            c = a.comparison(task, model, quality, prev, l)
            if c is not None and not c.significant(a.alpha):
                text += f"; its gain over {prev} ({c.diff:+.4f}) is NOT significant ({_p(c)})"
        out.append(text + ".")
    return out


def claim_findings(a: Analysis, task: str, model: str, claims: list[Claim]) -> list[str]:
    labels, out = a.labels(task, model), []
    for cl in claims:
        if cl.winner not in labels or cl.loser not in labels:
            continue
        c = a.comparison(task, model, cl.metric, cl.loser, cl.winner)
        if c is None:
            continue
        m = METRIC_BY_NAME[cl.metric]
        better = c.diff > 0 if m.higher_is_better else c.diff < 0
        claim = f"\"{cl.winner} beats {cl.loser} on {m.label if not m.quality else m.label.lower()}\""
        d = f"{cl.winner} − {cl.loser} = {signed(c.diff)}"
        if is_nan(c.p) and c.test != EXACT:
            verdict = f"cannot be judged ({_p(c)})"
        elif c.test == EXACT and c.diff == 0:
            verdict = f"is NOT supported: no difference ({_p(c)})"
        elif not c.significant(a.alpha):
            verdict = f"is NOT supported: {d} is within noise ({_p(c)})"
        elif better:
            verdict = f"is SUPPORTED: {d} ({_p(c)})"
        else:
            verdict = f"is CONTRADICTED: {cl.loser} is significantly better, {d} ({_p(c)})"
        out.append(f"{claim} {verdict}.")
    return out


def default_claims(a: Analysis) -> list[Claim]:
    """The claim a method's write-up usually makes: it beats the reference."""
    out = []
    for (task, model, label), ref in a.references.items():
        if ref and label != ref:
            out += [Claim(label, ref, m.name) for m in METRICS if m.quality]
    return list({(c.winner, c.loser, c.metric): c for c in out}.values())


def peak_findings(a: Analysis, curves: pd.DataFrame, task: str, model: str,
                  metric: str = "accuracy") -> list[str]:
    runs = a.per_run[(a.per_run.task == task) & (a.per_run.model == model)]
    c = curves[(curves.split == "validation") & (curves.metric == metric)
               & (curves.variant.fillna("") == "")].merge(runs[["run_id", "label", "seed"]], on="run_id")
    if c.empty or c.epoch.nunique() < 2:
        return []
    # each run's peak: its first epoch with the highest value (one groupby, not one per label)
    by_epoch = c.sort_values("epoch", kind="stable")
    best = by_epoch.loc[by_epoch.groupby("run_id")["value"].idxmax()]
    peaks = {label: g.set_index("run_id")["epoch"].astype(int).sort_index()
             for label, g in best.groupby("label")}
    order = sorted(peaks, key=lambda l: peaks[l].mean())
    name = f"Validation {METRIC_BY_NAME[metric].label.lower()}"
    detail = "; ".join(f"{l} {peaks[l].mean():.2g} (per run: {', '.join(map(str, peaks[l].tolist()))})"
                       for l in order)
    first, last = peaks[order[0]].mean(), peaks[order[-1]].mean()
    if first == last:
        return [f"{name} peaks at the same mean epoch ({first:.2g}) for every method; per method: {detail}."]
    return [f"{name} peaks earliest for {order[0]} (mean epoch {first:.2g}) and latest for {order[-1]} "
            f"(mean epoch {last:.2g}); per method: {detail}."]


def rate_findings(a: Analysis, task: str, model: str, searches: list | None = None) -> list[str]:
    """Each configuration's learning rate, how it was chosen (a tuned protocol's search), and a
    loud line where one row's runs did not share one rate."""
    mine = [s for s in searches or [] if (s.task, s.model) == (task, model)]
    out = []
    for label in a.labels(task, model):
        rates, n = a.rates(task, model, label), len(a.runs(task, model, label))
        if rates.mixed:
            out.append(f"{label}: MIXED learning rates — its {n} runs trained at "
                       f"{rates.text(runs=True)}; its row averages over rates and is not one "
                       f"configuration's result (report one stage, e.g. --stage final, or one rate).")
            continue
        untrained = a.runs(task, model, label).get("baseline", pd.Series(dtype=object)).isin(UNTRAINED).any()
        text = (f"{label}: lr {rates.text()} (all {n} run{'s' * (n != 1)})" if rates.counts else
                f"{label}: no learning rate (a baseline that trains no network)" if untrained else
                f"{label}: learning rate not recorded (a store from before the lr column)")
        found = [s for s in mine if s.label == label]
        for s in found:
            text += ("; " if len(found) == 1 else f"; {s.name}: ") + s.sentence()
        out.append(text + ".")
    shown = set(a.labels(task, model))
    for s in mine:
        if s.label not in shown:
            out.append(f"{s.name} (no runs of it in the tables): {s.sentence()}.")
    return out


def equal_budget_findings(a: Analysis, task: str, model: str) -> list[str]:
    return [a.budget(task, model).sentence] if len(a.runs(task, model)) else []


def findings(a: Analysis, curves: pd.DataFrame, task: str, model: str,
             claims: list[Claim], searches: list | None = None) -> dict[str, list[str]]:
    return {
        "Data integrity": integrity_findings(a, task, model),
        "Learning rates": rate_findings(a, task, model, searches),
        "Equal budgets": equal_budget_findings(a, task, model),
        "Differences from the reference": reference_findings(a, task, model),
        "Against the majority class": baseline_findings(a, task, model),
        "Best choice under a memory budget": budget_findings(a, task, model),
        "Claims checked": claim_findings(a, task, model, claims),
        "Learning curves": peak_findings(a, curves, task, model),
    }
