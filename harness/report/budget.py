"""Did the runs a table compares have the same training budget? Checked, never assumed.

A comparison is at equal budget when every run took the same number of optimizer steps, saw the
same training examples and tokens, and trained, selected and tested on data of the same sizes
(:data:`~harness.report.aggregate.BUDGET`, :data:`~harness.report.aggregate.DATA_SIZES`). The
seed draws the data split, so the tokens a run sees can vary from seed to seed; the budget is
then still matched when every configuration had the same budget on each seed. A store written
before the budget columns existed reads back empty there: the budget is then *unknown*, and the
report says so rather than claim equality.

Runs with a FLOPs budget (``trainer.flops_budget``) or a time budget (``trainer.time_budget_s``)
are compared at equal compute instead: their steps differ by design, and the check is that they had
one budget and each spent it to within its last step (``train_flops``, ``train_s``), the seconds on
one device.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from harness.report.aggregate import BUDGET, DATA_SIZES, UNTRAINED

EQUAL = "equal"  # every run: the same value of every column
PER_SEED = "equal per seed"  # some columns vary with the seed, but never between runs of one seed
DIFFER = "differ"  # runs of one configuration differ from another's (or cannot be matched)
UNKNOWN = "unknown"  # a budget column is empty for some run (a store from before the columns)

# (column, how one value reads in a sentence, its name)
WORDS = {
    "optimizer_steps": ("{} optimizer steps", "optimizer steps"),
    "train_examples_seen": ("{} examples", "training examples seen"),
    "train_tokens": ("{} tokens", "training tokens"),
    "n_train": ("{} train", "training-set sizes"),
    "n_validation": ("{} validation", "validation-set sizes"),
    "n_test": ("{} test", "test-set sizes"),
}


@dataclass
class BudgetCheck:
    status: str  # EQUAL | PER_SEED | DIFFER | UNKNOWN
    sentence: str  # what the report prints under the table and among the findings
    n_runs: int
    columns: dict = field(default_factory=dict)  # column -> its status (EQUAL/PER_SEED/DIFFER/UNKNOWN)

    @property
    def equal(self) -> bool:
        """Whether equal budgets are confirmed (all runs, or every configuration on each seed)."""
        return self.status in (EQUAL, PER_SEED)


def _n(value) -> str:
    return f"{int(value):,}"


def _span(values: pd.Series) -> str:
    lo, hi = values.min(), values.max()
    return _n(lo) if lo == hi else f"{_n(lo)} to {_n(hi)}"


def _label_values(runs: pd.DataFrame, col: str) -> str:
    """'dora 12; adalora, lora 24': the configurations grouped by their value (or range)."""
    by_value: dict[str, list[str]] = {}
    for label, g in runs.groupby("label", sort=True):
        by_value.setdefault(_span(g[col]), []).append(str(label))
    ordered = sorted(by_value.items(), key=lambda kv: (len(kv[1]), kv[0]))  # the odd ones first
    return "; ".join(f"{', '.join(labels)} {value}" for value, labels in ordered)


def _column(runs: pd.DataFrame, col: str) -> tuple[str, str]:
    """(status, what differs) of one column over ``runs``."""
    values = runs[col] if col in runs.columns else pd.Series(float("nan"), index=runs.index)
    if values.isna().any():
        return UNKNOWN, ""
    if values.nunique() == 1:
        return EQUAL, ""
    differ = f"{WORDS[col][1]} differ ({_label_values(runs, col)})"
    if runs.groupby("seed")[col].nunique().max() > 1:  # two runs of one seed disagree
        return DIFFER, differ
    if runs.groupby("label")[col].nunique().max() == 1:  # each configuration has its own value
        return DIFFER, differ
    seeds = runs.groupby("label")["seed"].apply(set)
    alone = [l for l in seeds.index
             if not seeds[l] & set().union(*(seeds[o] for o in seeds.index if o != l))]
    if alone and len(seeds) > 1:  # equal on every shared seed, but some ran on seeds of their own
        return DIFFER, (f"{WORDS[col][1]} vary with the seed's data split and {', '.join(alone)} "
                        f"ran only on seeds no other configuration ran, so cannot be matched "
                        f"seed for seed ({_label_values(runs, col)})")
    return PER_SEED, (f"{WORDS[col][1]} vary with the seed's data split ({_span(values)}) but are "
                      f"equal across configurations on every seed")


def _listed(runs: pd.DataFrame, columns: dict, cols: list[str]) -> str:
    """'24 optimizer steps, 192 examples': the values of the columns of ``cols`` equal over ``runs``."""
    return ", ".join(WORDS[c][0].format(_n(runs[c].iloc[0])) for c in cols if columns[c] == EQUAL)


def _without_untrained(runs: pd.DataFrame) -> BudgetCheck | None:
    """The check with the baselines that train no network left out and named; None without any."""
    if "baseline" not in runs.columns or not runs["baseline"].isin(UNTRAINED).any():
        return None
    outside = runs["baseline"].isin(UNTRAINED)
    names = ", ".join(sorted(map(str, runs.loc[outside, "label"].unique())))
    note = f" Baselines that train no network, outside the training budget: {names}."
    if outside.all():
        return BudgetCheck(EQUAL, note.strip(), len(runs), {})
    inner = check_budget(runs[~outside])
    return BudgetCheck(inner.status, inner.sentence + note, inner.n_runs, inner.columns)


def _unknown_budget(runs: pd.DataFrame, status: dict, columns: dict, data_text: str) -> BudgetCheck:
    """A budget column is empty for some runs (a store from before the columns)."""
    missing = runs[runs[[c for c in BUDGET if c in runs.columns]].isna().any(axis=1)] \
        if all(c in runs.columns for c in BUDGET) else runs
    who = ", ".join(sorted(map(str, missing["label"].unique())))
    sentence = (f"The budget is unknown for {len(missing)} of {len(runs)} runs ({who}): their store "
                f"predates the optimizer_steps, train_examples_seen and train_tokens columns, "
                f"so equal budgets are not confirmed.")
    known = [text for col, (s, text) in status.items() if col in DATA_SIZES and s == DIFFER]
    if data_text:
        sentence += f" Data sizes are equal ({data_text})."
    elif known:
        sentence += " Data sizes differ: " + "; ".join(known) + "."
    elif any(columns[c] == UNKNOWN for c in DATA_SIZES):
        sentence += " Data sizes are unknown too."
    return BudgetCheck(UNKNOWN, sentence, len(runs), columns)


def _matched_budget(runs: pd.DataFrame, status: dict, columns: dict, data_text: str) -> BudgetCheck:
    """No budget column differs: equal, equal on each seed, or with data sizes unknown."""
    n = len(runs)
    varying = [text for col, (s, text) in status.items() if s in (PER_SEED, DIFFER)]
    if all(s == EQUAL for s in columns.values()):
        return BudgetCheck(EQUAL, f"All {n} runs had the same budget: {_listed(runs, columns, BUDGET)} "
                                  f"({data_text}).", n, columns)
    unknown_data = [c for c in DATA_SIZES if columns[c] == UNKNOWN]
    if all(s in (EQUAL, PER_SEED) for c, s in columns.items() if c in BUDGET) and not unknown_data:
        same = _listed(runs, columns, BUDGET)
        sentence = (f"All {n} runs had the same budget on each seed" + (f": {same}" if same else "")
                    + "; " + "; ".join(varying)
                    + (f" ({data_text})." if data_text else "."))
        return BudgetCheck(PER_SEED, sentence, n, columns)
    # the budget matches but the data sizes are not recorded
    budget_equal = [c for c in BUDGET if columns[c] == EQUAL]
    sentence = (f"All {n} runs had the same budget"
                + (f": {_listed(runs, columns, BUDGET)}" if budget_equal else "")
                + ("; " + "; ".join(varying) if varying else "")
                + "; their data sizes are unknown (an older store), so equal data is not confirmed.")
    return BudgetCheck(UNKNOWN, sentence, n, columns)


@dataclass(frozen=True)
class ComputeBudget:
    """A budget of compute instead of steps: its field, what a run spent of it, its setting."""
    column: str  # the budget a run had (flops_budget, time_budget_s)
    spent: str  # what it spent (train_flops, train_s)
    setting: str  # the trainer setting that gives it
    name: str  # "FLOPs", "time"
    kind: str  # "compute", "time"
    unit: str  # "training FLOPs", "training seconds"
    show: Callable[[float], str]


COMPUTE_BUDGETS = (
    ComputeBudget("flops_budget", "train_flops", "trainer.flops_budget", "FLOPs", "compute", "training FLOPs",
                  lambda v: f"{v:.3g}"),
    ComputeBudget("time_budget_s", "train_s", "trainer.time_budget_s", "time", "time", "training seconds",
                  lambda v: f"{v:.1f}"),
)


def compute_budget_of(runs: pd.DataFrame) -> ComputeBudget | None:
    """The compute budget some of ``runs`` had (the first that any had), or None."""
    return next((b for b in COMPUTE_BUDGETS if b.column in runs.columns and runs[b.column].notna().any()),
                None)


def short_of_budget(runs: pd.DataFrame, budget: float, spent_column: str = "train_flops") -> pd.Series:
    """Which runs stopped more than their last step short of a compute budget (one step: what
    they spent over their optimizer steps)."""
    spent = runs[spent_column]
    return spent + spent / runs["optimizer_steps"].clip(lower=1) <= budget


def _compute_budget(runs: pd.DataFrame, data: dict, data_text: str) -> BudgetCheck | None:
    """Runs that had a FLOPs or time budget (``trainer.flops_budget``, ``trainer.time_budget_s``):
    equal compute, not equal steps. The budget held when they all had the same one and each spent
    it to within its last step (a method that does more per step takes fewer steps, as equal
    compute intends), and, for seconds, all ran on one device. None when no run had one."""
    b = compute_budget_of(runs)
    if b is None:
        return None
    n, budgets = len(runs), runs[b.column]
    if budgets.isna().any() or budgets.nunique() > 1:
        given = "; ".join(f"{label} {b.show(v) if pd.notna(v) else 'none (a step budget)'}"
                          for label, v in runs.groupby("label")[b.column].first().items())
        return BudgetCheck(DIFFER, f"The {n} runs did NOT have the same budget: {b.name} budgets differ "
                                   f"({given}). Differences between these configurations may come from "
                                   "their budgets.", n, {b.column: DIFFER, **data})
    budget, spent = budgets.iloc[0], runs[b.spent]
    short = runs.loc[short_of_budget(runs, budget, b.spent), "label"].unique()
    devices = sorted({str(d) for d in runs.get("device", pd.Series(dtype=object)).dropna() if str(d)})
    elsewhere = b.column == "time_budget_s" and len(devices) > 1
    sizes = [c for c, s in data.items() if s == DIFFER]
    held = not len(short) and not elsewhere
    status = DIFFER if not held or sizes else (EQUAL if all(s == EQUAL for s in data.values()) else UNKNOWN)
    sentence = (f"All {n} runs had the same {b.kind} budget, {b.show(budget)} {b.unit} ({b.setting}), "
                f"and spent {b.show(spent.min())} to {b.show(spent.max())} of it"
                + ("" if len(short) else " (each within its last step)")
                + f"; optimizer steps differ by method ({_label_values(runs, 'optimizer_steps')}), "
                "as equal compute intends" + (f" ({data_text})." if data_text else "."))
    if len(short):
        sentence += (f" But {', '.join(sorted(map(str, short)))} stopped more than a step short of the "
                     "budget: the budget was NOT equal.")
    if elsewhere:
        sentence += f" But the runs ran on different devices ({', '.join(devices)}): seconds were NOT equal."
    if sizes:
        sentence += " Data sizes differ: " + ", ".join(WORDS[c][1] for c in sizes) + "."
    return BudgetCheck(status, sentence, n, {b.column: EQUAL if held else DIFFER, **data})


def check_budget(runs: pd.DataFrame) -> BudgetCheck:
    """The budget check of the runs one table compares (rows of the per-run frame: label, seed
    and the budget and data-size columns). Baselines that train no network (TF-IDF, zero-shot)
    have no training budget: they are left out of the check and named."""
    untrained = _without_untrained(runs)
    if untrained is not None:
        return untrained
    status = {col: _column(runs, col) for col in BUDGET + DATA_SIZES}
    columns = {col: s for col, (s, _) in status.items()}
    data_equal = [c for c in DATA_SIZES if columns[c] == EQUAL]
    data_text = (f"data: {_listed(runs, columns, DATA_SIZES)} examples"
                 if len(data_equal) == len(DATA_SIZES) else "")
    by_flops = _compute_budget(runs, {c: columns[c] for c in DATA_SIZES}, data_text)
    if by_flops is not None:
        return by_flops
    if any(columns[c] == UNKNOWN for c in BUDGET):
        return _unknown_budget(runs, status, columns, data_text)
    if any(s == DIFFER for s in columns.values()):
        differ = [text for col, (s, text) in status.items() if s == DIFFER]
        sentence = (f"The {len(runs)} runs did NOT have the same budget: " + "; ".join(differ) + ". "
                    "Differences between these configurations may come from their budgets.")
        return BudgetCheck(DIFFER, sentence, len(runs), columns)
    return _matched_budget(runs, status, columns, data_text)
