"""One configuration of a table (a *side* of a comparison), read once into plain values.

A report compares every pair of configurations of a table on every metric: with 60 of them that
is ~1,800 pairs, 13 metrics each. Reading each side's seeds, values, budget and settings out of a
DataFrame once per pair and metric made the analysis of a week of sweeps take hours; a
:class:`Side` reads them once per configuration, and :func:`budget_difference`,
:func:`versions_text` and :func:`example_pairs` compare two sides with dictionaries and lists
only. They say exactly what :mod:`harness.report.pairing` says about the same two DataFrames.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pandas as pd

from harness.report.aggregate import BUDGET, UNTRAINED
from harness.report.budget import WORDS, compute_budget_of, short_of_budget
from harness.report.groups import dumped, flatten
from harness.report.student import Sample


@dataclass
class Side:
    """The runs of one configuration as plain values (:meth:`of` a per-run DataFrame)."""

    runs: pd.DataFrame
    label: str
    seeds: list  # one per run, in run order
    run_ids: list[str]
    key: dict  # the group key (harness.report.groups.config_key)
    flat: dict  # the key flattened: dotted path -> value
    texts: dict  # dotted path -> the value as JSON (what "same configuration?" compares)
    untrained: bool  # a baseline that trains no network (no training budget)
    budget: list[tuple] | None  # per run, its BUDGET values; None: unknown for some run
    versions: set[str] | None  # harness versions of its runs; None: the column is absent
    n_test: list[float] | None  # per run; None: the column is absent
    _values: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, runs: pd.DataFrame) -> "Side":
        key = json.loads(runs["group"].iloc[0]) if "group" in runs.columns and len(runs) else {}
        flat = flatten(key)
        known = all(c in runs.columns for c in BUDGET) and not runs[BUDGET].isna().any().any()
        versions = None
        if "harness_version" in runs.columns:
            versions = {str(v) for v in runs["harness_version"] if v is not None and not pd.isna(v)}
        return cls(runs, str(runs["label"].iloc[0]) if "label" in runs.columns and len(runs) else "",
                   runs["seed"].tolist(), runs["run_id"].tolist(), key, flat, dumped(flat),
                   "baseline" in runs.columns and bool(runs["baseline"].isin(UNTRAINED).any()),
                   list(zip(*(runs[c].tolist() for c in BUDGET))) if known else None, versions,
                   runs["n_test"].tolist() if "n_test" in runs.columns else None)

    @property
    def duplicated(self) -> bool:
        """Two runs of one seed (no pairing by seed)."""
        return len(set(self.seeds)) < len(self.seeds)

    def has(self, metric: str) -> bool:
        """Whether any run has a value of ``metric`` (cached)."""
        if ("has", metric) not in self._values:
            self._values[("has", metric)] = bool(self.runs[metric].notna().any())
        return self._values[("has", metric)]

    def sample(self, metric: str) -> Sample:
        """:meth:`by_seed` with its mean, variance and constancy, for the seed-level tests."""
        if ("sample", metric) not in self._values:
            self._values[("sample", metric)] = Sample(self.by_seed(metric))
        return self._values[("sample", metric)]

    @property
    def test_sizes(self) -> tuple[int, bool, set]:
        """(runs with an ``n_test`` cell, whether one is empty, the values) (cached)."""
        if "n_test" not in self._values:
            cells = self.n_test or []
            self._values["n_test"] = (len(cells), any(_missing(v) for v in cells),
                                      {v for v in cells if not _missing(v)})
        return self._values["n_test"]

    def by_seed(self, metric: str) -> dict:
        """{seed: value} of ``metric`` over the runs that have both (cached); when a seed occurs
        twice, {position: value}, so that no test pairs them by seed."""
        if metric not in self._values:
            values = [(s, v) for s, v in zip(self.seeds, self.runs[metric].tolist())
                      if not _missing(s) and not _missing(v)]
            if len({s for s, _ in values}) < len(values):
                self._values[metric] = {i: float(v) for i, (_, v) in enumerate(values)}
            else:
                self._values[metric] = {int(s): float(v) for s, v in values}
        return self._values[metric]


def _missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def as_side(runs: "pd.DataFrame | Side") -> Side:
    return runs if isinstance(runs, Side) else Side.of(runs)


def _span(values: list) -> str:
    lo, hi = min(values), max(values)
    return f"{int(lo):,}" if lo == hi else f"{int(lo):,} to {int(hi):,}"


def budget_difference(a: Side, b: Side) -> tuple[bool | None, str]:
    """(same budget?, what differs) of two sides: per seed where they share seeds, else over all
    their runs; None where a run predates the budget columns."""
    for side in (a, b):
        if side.untrained:
            return None, f"{side.label} is a baseline that trains no network (no training budget)"
    by_flops = _flops_budget_difference(a, b)
    if by_flops is not None:
        return by_flops
    if a.budget is None or b.budget is None:
        return None, "budget unknown (runs stored before the budget columns)"
    shared = sorted(set(a.seeds) & set(b.seeds))
    paired = bool(shared) and not a.duplicated and not b.duplicated
    if paired:
        ia, ib = dict(zip(a.seeds, a.budget)), dict(zip(b.seeds, b.budget))
        rows_a, rows_b = [ia[s] for s in shared], [ib[s] for s in shared]
    else:
        rows_a, rows_b = a.budget, b.budget
    differ = []
    for j, col in enumerate(BUDGET):
        va, vb = [r[j] for r in rows_a], [r[j] for r in rows_b]
        if (va != vb) if paired else (set(va) != set(vb)):
            differ.append(f"{WORDS[col][1]} {_span(va)} vs {_span(vb)}")
    return (not differ), "; ".join(differ)


def _flops_budget_difference(a: Side, b: Side) -> tuple[bool, str] | None:
    """Two sides of which one had a FLOPs or time budget (``trainer.flops_budget``,
    ``trainer.time_budget_s``): the same budget, each run spending it to within its last step, is
    the same budget however many steps each took; None when neither had one (the step budget is
    compared)."""
    budget = compute_budget_of(pd.concat([a.runs, b.runs]))
    if budget is None:
        return None
    values = [s.runs[budget.column] if budget.column in s.runs.columns else pd.Series(dtype=float)
              for s in (a, b)]
    if any(v.isna().any() or not len(v) for v in values):
        return False, f"a {budget.name} budget vs a step budget"
    va, vb = sorted(set(values[0])), sorted(set(values[1]))
    if va != vb or len(va) > 1:
        return False, (f"{budget.name} budgets {', '.join(budget.show(v) for v in va)} vs "
                       f"{', '.join(budget.show(v) for v in vb)}")
    short = [s.label for s in (a, b) if short_of_budget(s.runs, va[0], budget.spent).any()]
    if short:
        return False, (f"{', '.join(short)} stopped more than a step short of the {budget.name} budget "
                       f"{budget.show(va[0])}")
    return True, ""


def versions_text(a: Side, b: Side) -> str:
    """'0.2.0 vs 0.3.0' where the two sides' runs mix harness versions, else ''."""
    if a.versions is None:
        return ""
    found = sorted(a.versions | (b.versions or set()))
    return " vs ".join(found) if len(found) > 1 else ""


def _plural(n: int, word: str) -> str:
    return f"{int(n)} {word}{'s' * (int(n) != 1)}"


def lacking_text(lacking: int, runs: int) -> str:
    if lacking == runs:
        return "no test predictions stored (runs from before they were kept): seed-level test"
    return f"test predictions not stored for {lacking} of the {runs} runs: seed-level test"


def example_pairs(a: Side, b: Side, preds: dict) -> tuple[list, str]:
    """(base run, other run) predictions on each seed both sides ran, tested on the same
    examples; or ([], why not) for a seed-level test."""
    if a.duplicated or b.duplicated:
        return [], "several runs of one seed in a configuration: seed-level test"
    shared = sorted(set(a.seeds) & set(b.seeds))
    if not shared:
        return [], "no seed in common: seed-level test"
    ia, ib = dict(zip(a.seeds, a.run_ids)), dict(zip(b.seeds, b.run_ids))
    ra, rb = [ia[s] for s in shared], [ib[s] for s in shared]
    runs = ra + rb
    lacking = [r for r in runs if r not in preds]
    if lacking:
        return [], lacking_text(len(lacking), len(runs))
    pairs = [(preds[x], preds[y]) for x, y in zip(ra, rb)]
    differ = [str(s) for s, (x, y) in zip(shared, pairs) if not x.same_examples(y)]
    if differ:
        return [], f"seed {', '.join(differ)}: the runs were tested on different examples: seed-level test"
    left = [f"{side} seed{'s' * (len(extra) > 1)} {', '.join(map(str, extra))}"
            for side, extra in ((a.label, sorted(set(a.seeds) - set(shared))),
                                (b.label, sorted(set(b.seeds) - set(shared)))) if extra]
    note = (f"on the {_plural(len(shared), 'seed')} both ran ({', '.join(map(str, shared))}; left out: "
            + "; ".join(left) + ")") if left else ""
    return pairs, note
