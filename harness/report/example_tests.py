"""The machinery of the tests on per-example predictions (:mod:`harness.report.stats` has the
tests and why they were chosen): a run's predictions, its scores, the exact McNemar test, and
bootstrap resamples of test examples, drawn once per test set and shared by every run on it.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy import sparse

from harness.report.counts import BatchCounts, classes, full_counts, single_label
from harness.report.pairwise import row_means

# the exact McNemar test, and what counts as no difference: used from here (stats)
from harness.report.mcnemar import ROUNDING, McNemar, clean, mcnemar  # noqa: F401

RESAMPLES = 4999  # bootstrap resamples: the smallest two-sided p is 2 / (RESAMPLES + 1) = 0.0004
BOOTSTRAP_SEED = 20260101  # with the test set's digest, seeds every bootstrap


@dataclass(frozen=True)
class Predictions:
    """One run's test predictions, one entry per test example in the split's order: class ids
    (1-D), or 0/1 rows for a multi-label task (2-D). ``n_classes``: the task's label count for
    macro-F1 (single-label; classes never seen count as F1 0, as in the stored metric)."""

    labels: np.ndarray
    predictions: np.ndarray
    majority: np.ndarray | None = None
    n_classes: int | None = None
    key: str = ""  # the run id: caches its resampled scores

    @property
    def n(self) -> int:
        return int(len(self.labels))

    @property
    def multilabel(self) -> bool:
        return np.ndim(self.labels) == 2

    def same_examples(self, other: "Predictions") -> bool:
        """Whether two runs were tested on the same examples, in the same order (their labels)."""
        return (np.shape(self.labels) == np.shape(other.labels)
                and bool(np.array_equal(self.labels, other.labels)))

    def against_majority(self) -> "Predictions":
        """The majority-class predictions of the same examples, as a run of their own."""
        return Predictions(self.labels, self.majority, None, self.n_classes, f"{self.key}:majority")

    @cached_property
    def digest(self) -> int:
        """The test set's identity (its labels, in order): seeds the bootstrap resamples."""
        labels = np.ascontiguousarray(np.asarray(self.labels, dtype=np.int64))
        return zlib.crc32(repr(labels.shape).encode() + labels.tobytes())


def correct(p: Predictions) -> np.ndarray:
    """Whether each example was predicted exactly (multi-label: every label right)."""
    hit = np.asarray(p.labels) == np.asarray(p.predictions)
    return hit.all(axis=1) if hit.ndim == 2 else hit


def _counts(p: Predictions) -> tuple[sparse.csr_matrix, int]:
    """An (examples x (1 + 3K)) matrix, per example: correct, then its true-positive,
    false-positive and false-negative indicators per class (K classes; multi-label: the labels
    plus the "no label" column the stored macro-F1 adds, harness.tasks.scoring.metrics.multilabel_metrics)."""
    y, q = np.asarray(p.labels), np.asarray(p.predictions)
    ok = correct(p).astype(np.float64)
    if y.ndim == 2:
        y = np.hstack([y, ~y.any(axis=1, keepdims=True)]).astype(bool)
        q = np.hstack([q, ~q.any(axis=1, keepdims=True)]).astype(bool)
        k = y.shape[1]
        dense = np.hstack([ok[:, None], y & q, ~y & q, y & ~q]).astype(np.float64)
        return sparse.csr_matrix(dense), k
    y, q = y.astype(np.int64), q.astype(np.int64)
    k = int(max(p.n_classes or 0, y.max(initial=-1) + 1, q.max(initial=-1) + 1, 1))
    rows, wrong = np.arange(len(y)), 1.0 - ok
    parts = [(ok, rows, np.zeros_like(y)), (ok, rows, 1 + y), (wrong, rows, 1 + k + q),
             (wrong, rows, 1 + 2 * k + y)]
    data, r, c = (np.concatenate(x) for x in zip(*parts))
    return sparse.csr_matrix((data, (r, c)), shape=(len(y), 1 + 3 * k)), k


def _scores(counts: np.ndarray, n: int, k: int) -> dict[str, np.ndarray]:
    """Accuracy and macro-F1 from summed indicator columns (one row per resample)."""
    tp, fp, fn = counts[:, 1:1 + k], counts[:, 1 + k:1 + 2 * k], counts[:, 1 + 2 * k:1 + 3 * k]
    den = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, den, out=np.zeros_like(den, dtype=np.float64), where=den > 0)
    return {"accuracy": counts[:, 0] / n, "f1_macro": f1.mean(axis=1)}


def score(p: Predictions, metric: str) -> float:
    """The metric on all of the run's test examples (reproduces the stored value)."""
    if single_label(p.labels, p.predictions):
        k = classes(np.asarray(p.labels), np.asarray(p.predictions), p.n_classes)
        return float(_scores(full_counts(p.labels, p.predictions, k), p.n, k)[metric][0])
    m, k = _counts(p)
    return float(_scores(np.asarray(m.sum(axis=0)), p.n, k)[metric][0])


@dataclass
class Resampler:
    """Each run's accuracy and macro-F1 on ``resamples`` bootstrap resamples of its test examples.

    The resamples are drawn from a generator seeded by ``seed`` and the test set's digest, so two
    runs on the same test set get the same resamples (paired) and a report is reproducible. Scores
    are cached per run.
    """

    resamples: int = RESAMPLES
    seed: int = BOOTSTRAP_SEED
    cache: dict = field(default_factory=dict)
    _scores: dict = field(default_factory=dict, repr=False)  # scores on all examples
    _drawn: dict = field(default_factory=dict, repr=False)  # two-level draws, see two_level()

    def score(self, p: Predictions, metric: str) -> float:
        """:func:`score`, cached by run id: a run is compared with every other configuration."""
        if not p.key:
            return score(p, metric)
        key = (p.key, p.digest, metric)
        if key not in self._scores:
            self._scores[key] = score(p, metric)
        return self._scores[key]

    def two_level(self, runs: list[Predictions], metric: str) -> np.ndarray:
        """(seeds x resamples): ``metric`` of ``runs`` (one per seed) on the seeds and example
        resamples that each two-level resample draws (:func:`_draw_two_level`), one row per
        draw of a seed. Cached per tuple of runs, so that a configuration compared with 60
        others gathers its draws once; :meth:`forget_draws` empties the cache."""
        key = (tuple((p.key, p.digest) for p in runs), metric)
        if key in self._drawn:
            return self._drawn[key]
        if len(runs) not in self._drawn:
            self._drawn[len(runs)] = _draw_two_level(len(runs), self.resamples, self.seed)
        seeds, draws = self._drawn[len(runs)]
        gathered = np.ascontiguousarray(np.stack([self.values(p, metric) for p in runs])[seeds, draws].T)
        if all(p.key for p in runs):
            self._drawn[key] = gathered
        return gathered

    def forget_draws(self) -> None:
        """Free :meth:`two_level`'s cache (resamples x seeds floats per configuration)."""
        self._drawn.clear()

    def prepare(self, runs: list[Predictions]) -> None:
        """Resample every run in ``runs`` at once: runs on one test set share the draws, so they
        are made once per test set, not once per run."""
        by_set: dict[int, list[Predictions]] = {}
        for p in runs:
            if p.key and (p.key, p.digest, "accuracy") not in self.cache:
                by_set.setdefault(p.digest, []).append(p)
        for group in by_set.values():
            self._resample(list({p.key: p for p in group}.values()))

    def values(self, p: Predictions, metric: str) -> np.ndarray:
        """``metric`` on each resample of ``p``'s test examples (cached by run id)."""
        key = (p.key, p.digest, metric)
        if not p.key:
            return self._resample([p])[0][metric]
        if key not in self.cache:
            self._resample([p])
        return self.cache[key]

    def _resample(self, runs: list[Predictions]) -> list[dict[str, np.ndarray]]:
        """Scores of ``runs`` (one test set) on the resamples drawn for that test set."""
        n, digest = runs[0].n, runs[0].digest
        labels, predictions = [p.labels for p in runs], [p.predictions for p in runs]
        fast = BatchCounts.fits(labels, predictions)
        if fast:  # all in one matrix product (counts.py)
            batch = BatchCounts(labels[0], [(q, classes(np.asarray(p.labels), np.asarray(q), p.n_classes))
                                            for p, q in zip(runs, predictions)])
        else:
            counts = [_counts(p) for p in runs]
        rng = np.random.default_rng([self.seed, digest])
        chunk = max(1, min(self.resamples, 2_000_000 // max(n, 1)))
        out: list[dict[str, list]] = [{} for _ in runs]
        for start in range(0, self.resamples, chunk):
            size = min(chunk, self.resamples - start)
            idx = rng.integers(0, n, size=(size, n))
            w = np.bincount((np.arange(size)[:, None] * n + idx).ravel(), minlength=size * n).reshape(size, n)
            if fast:
                found = batch.scores(w)
            else:
                w = w.astype(np.float64).T
                found = [_scores(np.asarray((m.T @ w).T), n, k) for m, k in counts]
            for scores, o in zip(found, out):
                for name, v in scores.items():
                    o.setdefault(name, []).append(v)
        values = [{name: np.concatenate(parts) for name, parts in o.items()} for o in out]
        for p, v in zip(runs, values):
            if p.key:
                for name, arr in v.items():
                    self.cache[(p.key, p.digest, name)] = arr
        return values


def _interval(d: np.ndarray, confidence: float) -> tuple[float, float]:
    low, high = np.quantile(d, [(1 - confidence) / 2, (1 + confidence) / 2])
    return clean(float(low)), clean(float(high))


def _two_sided(d: np.ndarray) -> float:
    """Twice the smaller share of resampled differences on either side of zero."""
    below, above = int((d <= 0).sum()), int((d >= 0).sum())
    return min(1.0, 2 * (1 + min(below, above)) / (len(d) + 1))


def _one_sided(d: np.ndarray) -> float:
    """The share of resampled differences at or below zero (H1: the difference is positive)."""
    return (1 + int((d <= 0).sum())) / (len(d) + 1)


def _draw_two_level(n_seeds: int, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(seeds, resample ids), each (resamples x n_seeds): the seeds drawn by each outer resample
    and which of that seed's example resamples each draw uses."""
    rng = np.random.default_rng([seed, n_seeds])
    return (rng.integers(0, n_seeds, size=(resamples, n_seeds)),
            rng.integers(0, resamples, size=(resamples, n_seeds)))


def bootstrap_differences(pairs: list[tuple[Predictions, Predictions]], metric: str,
                          resampler: Resampler) -> np.ndarray:
    """Resampled mean differences (other - base) of ``metric`` over paired runs, one pair per seed.
    One seed: the paired bootstrap over its examples; several: the two-level bootstrap."""
    if len(pairs) == 1:
        a, b = pairs[0]
        return resampler.values(b, metric) - resampler.values(a, metric)
    # (other - base)[seeds, draws].mean(axis=1): each side's draws gathered once
    # (Resampler.two_level), the mean taken over whole rows (harness.report.pairwise)
    base, other = (resampler.two_level([p[i] for p in pairs], metric) for i in (0, 1))
    return row_means(other - base)
