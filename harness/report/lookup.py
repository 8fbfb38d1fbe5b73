"""An analysis's frames indexed by table, configuration and metric, for the report's many look-ups.

Tables, findings, figures and the CSV ask an :class:`~harness.report.compare.Analysis` for one
configuration's aggregate, one pair's comparison or one table's runs thousands of times each. A
boolean mask over the whole frame per question costs a millisecond on a week of sweeps (200,000
pairs, 5,000 runs) and made writing the report slower than analysing it; :class:`Lookup` groups
each frame once, on first use, and answers from dictionaries. It reads the frames as they are
when first asked: an analysis is not changed after :func:`~harness.report.compare.analyze`.
"""
from __future__ import annotations

from typing import Protocol

import pandas as pd

from harness.report.sides import Side


class Frames(Protocol):
    """What a :class:`Lookup` reads of an analysis (``harness.report.compare.Analysis``)."""

    agg: pd.DataFrame
    pairs: pd.DataFrame
    per_run: pd.DataFrame


class Lookup:
    def __init__(self, analysis: Frames) -> None:
        self.analysis = analysis
        self._pairs: dict | None = None
        self._pair_columns: dict = {}
        self._stats: dict | None = None
        self._runs: dict | None = None
        self._sides: dict = {}
        self._memo: dict = {}

    def pair(self, task: str, model: str, metric: str, base: str, other: str) -> dict | None:
        """The row of ``analysis.pairs`` that tested ``other`` against ``base`` (as a dict)."""
        if self._pairs is None:  # key -> row number; the columns as lists, read on demand
            p = self.analysis.pairs
            self._pairs, self._pair_columns = {}, {}
            if not p.empty:
                keys = zip(*(p[c].tolist() for c in ("task", "model", "metric", "base", "other")))
                for i, key in enumerate(keys):
                    self._pairs.setdefault(key, i)
        i = self._pairs.get((task, model, metric, base, other))
        if i is None:
            return None
        columns = self._pair_columns
        if not columns:
            columns.update({c: self.analysis.pairs[c].tolist() for c in self.analysis.pairs.columns})
        return {c: values[i] for c, values in columns.items()}

    def stat(self, task: str, model: str, label: str, metric: str) -> dict | None:
        """The aggregate row (n, mean, std, ci_low, ci_high, seeds) of one group and metric."""
        if self._stats is None:
            self._stats = {}
            a = self.analysis.agg
            for r in ([] if a.empty else a.to_dict("records")):
                self._stats.setdefault((r["task"], r["model"], r["label"], r["metric"]), r)
        hit = self._stats.get((task, model, label, metric))
        return None if hit is None else dict(hit)

    def runs(self, task: str, model: str, label: str | None = None) -> pd.DataFrame:
        """The per-run rows of one table (and one of its configurations), in their order."""
        p = self.analysis.per_run
        if self._runs is None:
            self._runs = {}
            if len(p):
                for by in (["task", "model"], ["task", "model", "label"]):
                    self._runs.update(dict(iter(p.groupby(by, sort=False, dropna=False))))
        hit = self._runs.get((task, model) if label is None else (task, model, label))
        return p.iloc[0:0] if hit is None else hit

    def memo(self, key: tuple, make):
        """``make()``, computed once per ``key`` (labels, rates: asked for per row and metric)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def side(self, task: str, model: str, label: str) -> Side | None:
        """One configuration's runs as a :class:`~harness.report.sides.Side` (None: no runs)."""
        key = (task, model, label)
        if key not in self._sides:
            runs = self.runs(task, model, label)
            self._sides[key] = Side.of(runs) if len(runs) else None
        return self._sides[key]
