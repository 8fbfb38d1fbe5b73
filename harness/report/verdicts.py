"""A verdict on each published claim (:mod:`harness.report.claimfile`) from the runs that bear on it.

For every compared table (task, model) holding runs of all the claim's methods (of its task and
stage, where it names them), the claim is tested with the report's own tests
(:func:`harness.report.pairing.compare_groups`: McNemar or the paired bootstrap on test examples,
else the paired or Welch t-test over seeds) and judged:

- ``better``: **supported** when the first method is significantly better (in the metric's
  direction), **contradicted** when significantly worse, else **not settled**;
- ``equivalent``: supported when the 95% interval of the difference lies inside ±``margin``,
  contradicted when it lies wholly outside, else not settled;
- ``ranking``: every neighbour judged as ``better``; supported when all are, contradicted when any
  is contradicted;
- ``within``: every pair judged as ``equivalent``;
- ``sooner``: per seed, the validation epoch at which each method first reaches the second
  method's final validation value; an exact sign test over the seeds where they differ.

Each claim is one hypothesis stated before the runs, so its p-value is not adjusted with the
table's family. A claim with no runs that bear on it names the command that would make them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.fields import higher_is_better
from harness.report.aggregate import METRICS
from harness.report.claimcurves import sooner
from harness.report.claimfile import (CONTRADICTED, NO_RUNS, SUPPORTED, UNSETTLED, Judged,
                                       PublishedClaim)
from harness.report.evidence import evidence
from harness.report.example_tests import Resampler
from harness.report.pairing import compare_groups
from harness.report.sides import Side

@dataclass
class Verdict:
    claim: PublishedClaim
    table: str  # "task — model", or "" when no runs bear on the claim
    verdict: str  # SUPPORTED | CONTRADICTED | UNSETTLED | NO_RUNS
    effect: str = ""  # the difference and its interval, first minus second, in the metric's units
    evidence: str = ""  # the test, n (seeds x examples) and the settings behind it
    here: str = ""  # the runs' setting beside the source's
    notes: tuple[str, ...] = ()


def judge_claims(claims: list[PublishedClaim], per_run: pd.DataFrame, preds: dict, curves: pd.DataFrame,
                 alpha: float = 0.05, confidence: float = 0.95) -> list[Verdict]:
    """One verdict per claim and table that bears on it (one ``NO_RUNS`` verdict where none does)."""
    out = []
    for claim in claims:
        tables = _tables(claim, per_run)
        if not tables:
            out.append(Verdict(claim, "", NO_RUNS, notes=(f"no runs bear on it; run: {claim.command}",)))
        for (task, model), sides in tables:
            ctx = _Context(claim, sides, preds, curves, alpha, confidence)
            judged = TESTS[claim.test](ctx)
            out.append(Verdict(claim, f"{task} — {model}", judged.verdict, judged.effect, judged.evidence,
                               here_text(claim, sides), judged.notes + _params_note(claim, sides)))
    return out


def _tables(claim: PublishedClaim, per_run: pd.DataFrame) -> list[tuple[tuple[str, str], list[Side]]]:
    """The (task, model) tables holding runs of every method of the claim, with a side each."""
    runs = per_run
    if claim.task:
        runs = runs[runs.task == claim.task]
    if claim.stage:
        runs = runs[runs.get("stage", pd.Series(index=runs.index, dtype=object)) == claim.stage]
    found = []
    for key, table in runs.groupby(["task", "model"], sort=True):
        sides = [_side(table, m) for m in claim.methods]
        if all(s is not None for s in sides):
            found.append((key, sides))
    return found


def _side(table: pd.DataFrame, method: str) -> Side | None:
    """The runs labelled ``method``, else those of that method when they are one configuration."""
    runs = table[table.label == method]
    if runs.empty and "method" in table.columns:
        runs = table[table.method == method]
        if runs.label.nunique() != 1:
            return None
    return Side.of(runs) if len(runs) else None


@dataclass
class _Context:
    claim: PublishedClaim
    sides: list[Side]
    preds: dict
    curves: pd.DataFrame
    alpha: float
    confidence: float

    @property
    def column(self) -> str | None:
        """The per-run column of the claim's metric (report units), if the report shows it."""
        return next((m.name for m in METRICS if m.source == self.claim.metric), None)

    def compare(self, first: Side, second: Side):
        """``first`` minus ``second`` on the claim's metric (None where no run records it)."""
        col = self.column
        if col is None or not (first.has(col) and second.has(col)):
            return None
        return compare_groups(second, first, col, self.preds, Resampler(), self.confidence)


def _signed(c, metric: str) -> tuple[float, float, float]:
    """(advantage, low, high): the difference turned so that positive is better."""
    sign = 1.0 if higher_is_better(metric) else -1.0
    lo, hi = sorted((sign * c.ci_low, sign * c.ci_high))
    return sign * c.diff, lo, hi


def _effect(c, confidence: float) -> str:
    ci = "" if np.isnan(c.ci_low) else f", {confidence:.0%} CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}]"
    return f"{c.diff:+.4f}{ci}"


def _better(ctx: _Context, first: Side, second: Side) -> Judged:
    c = ctx.compare(first, second)
    if c is None:
        return Judged(UNSETTLED, "", "", (f"no run of {first.label} or {second.label} records {ctx.claim.metric}",))
    adv, _, _ = _signed(c, ctx.claim.metric)
    verdict = (SUPPORTED if adv > 0 else CONTRADICTED) if c.significant(ctx.alpha) and adv != 0 else UNSETTLED
    return Judged(verdict, f"{first.label} − {second.label}: {_effect(c, ctx.confidence)}",
                  evidence(c, ctx.confidence, interval=False), _reported_note(ctx, c))


def _reported_note(ctx: _Context, c) -> tuple[str, ...]:
    rep = ctx.claim.reported
    if rep is None or np.isnan(c.ci_low):
        return ()
    where = ("inside" if c.ci_low <= rep <= c.ci_high else "above" if rep > c.ci_high else "below")
    return (f"the source reports {rep:+.4f}: {where} this interval",)


def _equivalent(ctx: _Context, first: Side, second: Side) -> Judged:
    c, m = ctx.compare(first, second), float(ctx.claim.margin)
    if c is None:
        return Judged(UNSETTLED, "", "", (f"no run of {first.label} or {second.label} records {ctx.claim.metric}",))
    if np.isnan(c.ci_low):
        verdict = UNSETTLED  # no interval (one seed and no test examples to pair): nothing to bound
    elif -m <= c.ci_low and c.ci_high <= m:
        verdict = SUPPORTED
    elif c.ci_low > m or c.ci_high < -m:
        verdict = CONTRADICTED
    else:
        verdict = UNSETTLED
    return Judged(verdict, f"{first.label} − {second.label}: {_effect(c, ctx.confidence)} (margin ±{m:g})",
                  evidence(c, ctx.confidence, interval=False), _reported_note(ctx, c))


def _combined(parts: list[Judged]) -> Judged:
    verdicts = {p.verdict for p in parts}
    verdict = (CONTRADICTED if CONTRADICTED in verdicts else SUPPORTED if verdicts == {SUPPORTED} else UNSETTLED)
    return Judged(verdict, "; ".join(p.effect for p in parts if p.effect),
                  " | ".join(p.evidence for p in parts if p.evidence), tuple(n for p in parts for n in p.notes))


def _ranking(ctx: _Context) -> Judged:
    return _combined([_better(ctx, a, b) for a, b in zip(ctx.sides, ctx.sides[1:])])


def _within(ctx: _Context) -> Judged:
    s = ctx.sides
    return _combined([_equivalent(ctx, s[i], s[j]) for i in range(len(s)) for j in range(i + 1, len(s))])


TESTS = {"better": lambda ctx: _better(ctx, *ctx.sides), "equivalent": lambda ctx: _equivalent(ctx, *ctx.sides),
         "ranking": _ranking, "within": _within, "sooner": sooner}


def here_text(claim: PublishedClaim, sides: list[Side]) -> str:
    """The runs' setting, beside the source's (the claim's ``settings``)."""
    runs = pd.concat([s.runs for s in sides])
    seeds = sorted({int(s) for s in runs.seed.dropna()})
    steps = runs.get("optimizer_steps", pd.Series(dtype=float)).dropna()
    n_train = runs.get("n_train", pd.Series(dtype=float)).dropna()
    stage = runs.get("stage", pd.Series(dtype=object))
    tuned = "learning rate tuned per method" if (stage == "final").any() else "each method at its configured learning rate"
    here = (f"here: {', '.join(sorted(runs.model.astype(str).unique()))} on {', '.join(sorted(runs.task.astype(str).unique()))}"
            + (f" ({int(n_train.max()):,} training examples)" if len(n_train) else "")
            + (f", {int(steps.min())}–{int(steps.max())} optimizer steps" if len(steps) and steps.min() != steps.max()
               else f", {int(steps.min())} optimizer steps" if len(steps) else "")
            + f", {len(seeds)} seed{'s' * (len(seeds) != 1)}, {tuned}")
    source = "; ".join(f"{k}: {v}" for k, v in claim.settings.items())
    return f"source: {source or 'not stated'} — {here}"


def _params_note(claim: PublishedClaim, sides: list[Side]) -> tuple[str, ...]:
    if claim.params_ratio is None or len(sides) != 2:
        return ()
    col = next((m.name for m in METRICS if m.source == "trainable_params"), None)
    if col is None or col not in sides[0].runs.columns:
        return ()
    first, second = (float(s.runs[col].median()) for s in sides)
    if not first:
        return ()
    return (f"trainable parameters: {sides[1].label} / {sides[0].label} = {second / first:.1f}x here "
            f"(the source: about {claim.params_ratio:g}x)",)


INTRO = ("Each claim (a file in conf/claims, or in a folder of report.claims_dirs) is tested on the "
         "runs that bear on it with the report's own tests, one hypothesis each (p not adjusted): "
         "supported or contradicted where the test is significant, not settled where it is not; "
         "equivalence claims where the 95% interval lies inside (or wholly outside) their margin.")


def claim_items(verdicts: list[Verdict]) -> list:
    """The report section's items: a paragraph, then per claim its heading and its evidence."""
    items: list = [INTRO]
    for v in verdicts:
        c = v.claim
        where = f" on {v.table}" if v.table else ""
        lines = [f"Verdict{where}: **{v.verdict}**" + (f" — {v.effect}" if v.effect else "")]
        lines += [f"Test: {v.evidence}"] if v.evidence else []
        lines += list(v.notes) + ([v.here] if v.here else [])
        lines.append(f"Source: {c.source}" + (f" ({c.url})" if c.url else ""))
        items += [("h3", f"{c.says} [{c.name}]"), ("bullets", lines)]
    return items


def verdict_lines(verdicts: list[Verdict]) -> list[str]:
    """Plain text for the terminal (``python -m harness.report --claims``)."""
    out = []
    for v in verdicts:
        out.append(f"{v.claim.says} [{v.claim.name}]")
        for key, text in (("verdict", v.verdict + (f" on {v.table}" if v.table else "")), ("effect", v.effect),
                          ("test", v.evidence), *(("note", n) for n in v.notes), ("setting", v.here),
                          ("source", v.claim.source)):
            if text:
                out.append(f"  {key}: {text}")
    return out
