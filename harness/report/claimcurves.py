"""The ``sooner`` test of a published claim (:mod:`harness.report.verdicts`): does the first method
reach the second's final validation quality in fewer epochs?

Per seed both methods ran: the target is the second method's validation value at its last epoch;
each method's time to it is the first epoch whose validation value is at least as good (never:
later than any). The seeds where one method is sooner are counted, and an exact two-sided sign
test (scipy's ``binomtest``) over them gives the verdict. Validation runs after each epoch, so the
resolution is an epoch: a run of two epochs can show little.
"""
from __future__ import annotations

import math

import pandas as pd
from scipy.stats import binomtest

from harness.fields import higher_is_better
from harness.report.claimfile import CONTRADICTED, SUPPORTED, UNSETTLED, Judged


def first_epoch(curve: pd.DataFrame, target: float, higher: bool) -> float:
    """The first epoch whose value is at least as good as ``target``; inf where none is."""
    good = curve[curve.value >= target] if higher else curve[curve.value <= target]
    return float(good.epoch.min()) if len(good) else math.inf


def sooner(ctx):
    first, second = ctx.sides
    metric, higher = ctx.claim.metric, higher_is_better(ctx.claim.metric)
    val = ctx.curves[(ctx.curves.split == "validation") & (ctx.curves.metric == metric)]
    runs_a, runs_b = dict(zip(first.seeds, first.run_ids)), dict(zip(second.seeds, second.run_ids))
    outcomes = []
    for seed in sorted(set(runs_a) & set(runs_b)):
        ca, cb = (val[val.run_id == runs[seed]].sort_values("epoch") for runs in (runs_a, runs_b))
        if ca.empty or cb.empty:
            continue
        target = float(cb.value.iloc[-1])
        outcomes.append((first_epoch(ca, target, higher), first_epoch(cb, target, higher)))
    if not outcomes:
        return Judged(UNSETTLED, "", "", (f"no validation curves of {metric} on a seed both ran",))
    wins, losses = sum(a < b for a, b in outcomes), sum(a > b for a, b in outcomes)
    p = binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else 1.0
    verdict = (SUPPORTED if wins > losses else CONTRADICTED) if p < ctx.alpha else UNSETTLED
    effect = (f"{first.label} reached {second.label}'s final validation {metric} sooner on {wins} of "
              f"{len(outcomes)} seeds, later on {losses}")
    return Judged(verdict, effect, f"exact sign test, p={p:.3g}; n = {len(outcomes)} seeds "
                                   "(validation after each epoch)")
