"""Means over a short axis, to the last bit as numpy computes them, without its per-row cost.

The two-level bootstrap's statistic is, per resample, the mean over the drawn seeds (2 to ~10)
of the per-seed differences: ``(resamples x seeds).mean(axis=1)``. numpy reduces each row of so
short an axis at ~2 ns an element, and a report of a week of sweeps takes ~30,000 such means of
50,000 elements. :func:`row_means` takes the matrix transposed (seeds x resamples, each seed a
contiguous row) and adds whole rows in the order numpy's pairwise summation adds a row's
elements (``pairwise_sum`` in numpy's loops: sequentially from 0 below 8 elements, else eight
running sums combined as ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)), then the rest), so each mean is the
same float numpy gives. :func:`exact` checks that once against numpy itself; where a numpy
release sums otherwise, or rows are longer than one pairwise block, ``np.mean`` is used.
"""
from __future__ import annotations

import numpy as np

_BLOCK = 128  # numpy's PW_BLOCKSIZE: longer rows are split in halves, not replicated here
_checked: list[bool] = []


def _pairwise_sum(rows: np.ndarray) -> np.ndarray:
    n = len(rows)
    if n < 8:
        total = np.zeros(rows.shape[1:])
        for row in rows:
            total += row
        return total
    r = [rows[j].copy() for j in range(8)]
    i = 8
    while i < n - n % 8:
        for j in range(8):
            r[j] += rows[i + j]
        i += 8
    total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    for row in rows[i:]:
        total += row
    return total


def exact() -> bool:
    """Whether :func:`_pairwise_sum` reproduces this numpy's row means (checked once)."""
    if not _checked:
        x = np.random.default_rng(0).random((64, 20)) - 0.5
        _checked.append(all(np.array_equal(x[:, :s].mean(axis=1), _pairwise_sum(x[:, :s].T) / s)
                            for s in range(1, 21)))
    return _checked[0]


def row_means(columns: np.ndarray) -> np.ndarray:
    """``columns.T.mean(axis=1)``, bit for bit, for ``columns`` of shape (k x n), k the short
    axis."""
    k = len(columns)
    if k == 0 or k > _BLOCK or not exact():
        return np.ascontiguousarray(columns.T).mean(axis=1)
    return _pairwise_sum(columns) / k
