"""Confusion counts of single-label runs, on all test examples or on many bootstrap resamples of
them at once: what accuracy and macro-F1 are computed from (:mod:`harness.report.example_tests`).

A run's scores on a resample need its correct, true-positive, false-positive and false-negative
counts per class, each a sum of the resample's example weights. A report of a week of sweeps
resamples ~5,000 runs 4,999 times each; one sparse product per run took minutes. Here every run
on one test set is counted in one dense float32 matrix product, ``weights @ columns``, whose
columns are per class: the examples of that class (shared by all runs, the test set's labels),
and per run, the examples it predicted as that class and those it got right there; every other
count follows by subtraction. The products are sums of whole numbers below 2**24, which float32
adds exactly, so the counts (and every score and p-value) are the same, to the last bit, as
counting each run on its own. Runs with the same predictions (every run's majority-class
twin) are counted once.
"""
from __future__ import annotations

import numpy as np

EXACT_FLOAT32 = 2**24  # whole numbers below this add exactly in float32


def classes(labels: np.ndarray, predictions: np.ndarray, n_classes: int | None) -> int:
    """The class count macro-F1 averages over: the task's, or the largest class id seen + 1."""
    return int(max(n_classes or 0, labels.max(initial=-1) + 1, predictions.max(initial=-1) + 1, 1))


def single_label(labels, predictions) -> bool:
    """Whether a run's arrays are class ids (1-D, none negative): what this module counts."""
    y, q = np.asarray(labels), np.asarray(predictions)
    return (y.ndim == 1 and y.shape == q.shape and np.issubdtype(y.dtype, np.integer)
            and np.issubdtype(q.dtype, np.integer) and y.min(initial=0) >= 0 and q.min(initial=0) >= 0)


def _layout(tp: np.ndarray, predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """The count columns of ``examples._counts``: correct, then per class true positives, false
    positives, false negatives (one row per resample)."""
    return np.hstack([tp.sum(axis=1, keepdims=True), tp, predicted - tp, true - tp])


def full_counts(labels: np.ndarray, predictions: np.ndarray, k: int) -> np.ndarray:
    """The counts of one run on all its test examples, as a (1 x (1 + 3k)) row."""
    y, q = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    right = y == q
    tp = np.bincount(y[right], minlength=k)[:k]
    return _layout(tp[None].astype(np.float64), np.bincount(q, minlength=k)[None, :k].astype(np.float64),
                   np.bincount(y, minlength=k)[None, :k].astype(np.float64))


class BatchCounts:
    """The runs of one test set (equal labels, single-label), ready to be counted on resamples."""

    def __init__(self, labels: np.ndarray, runs: list[tuple[np.ndarray, int]]) -> None:
        """``runs``: (predictions, class count) of each run, in order."""
        y = np.asarray(labels, np.int64)
        self.n, self.ks = len(y), [k for _, k in runs]
        top = max(self.ks)
        columns = [(y[:, None] == np.arange(top)[None, :])]
        self.offsets, seen = [], {}
        width = top
        for q, k in runs:
            q = np.asarray(q, np.int64)
            key = (k, q.tobytes())
            if key not in seen:
                cls = np.arange(k)[None, :]
                columns += [(y[:, None] == cls) & (q[:, None] == cls), q[:, None] == cls]
                seen[key], width = width, width + 2 * k
            self.offsets.append(seen[key])
        self.columns = np.hstack(columns).astype(np.float32)

    @staticmethod
    def fits(labels: list[np.ndarray], predictions: list[np.ndarray]) -> bool:
        """Whether runs can be counted together: single-label arrays on the same labels."""
        first = np.asarray(labels[0])
        return (len(first) < EXACT_FLOAT32
                and all(single_label(y, q) for y, q in zip(labels, predictions))
                and all(np.array_equal(first, y) for y in labels[1:]))

    def scores(self, weights: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Each run's accuracy and macro-F1 on each resample, given ``weights`` (resamples x
        examples: how often each resample drew each example). The arithmetic of
        ``examples._scores`` on the counts :func:`_layout` would give (``2 tp + fp + fn`` is
        ``predicted + true``), without building them; runs with the same predictions share
        their arrays."""
        totals = (weights.astype(np.float32) @ self.columns).astype(np.float64)
        done: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        for offset, k in zip(self.offsets, self.ks):
            if (offset, k) not in done:
                # column-major, as the counts of one sparse product per run were: numpy then
                # averages the classes in the same order, so macro-F1 is the same to the last bit
                tp, predicted, true = (np.asfortranarray(totals[:, i:i + k]) for i in (offset, offset + k, 0))
                den = predicted + true
                f1 = np.divide(2 * tp, den, out=np.zeros_like(den, dtype=np.float64), where=den > 0)
                done[(offset, k)] = {"accuracy": tp.sum(axis=1) / self.n, "f1_macro": f1.mean(axis=1)}
        return [done[(offset, k)] for offset, k in zip(self.offsets, self.ks)]
