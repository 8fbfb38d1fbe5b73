"""The exact McNemar test of two runs on the same test examples (:mod:`harness.report.stats` says
when it is used and why), and what counts as no difference at all."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import special, stats

# Differences below this are floating-point rounding of equal values, not differences.
ROUNDING = 1e-12


def clean(x: float) -> float:
    return 0.0 if abs(x) < ROUNDING else x


@dataclass
class McNemar:
    """The exact McNemar test of ``other`` against ``base`` on the same examples."""

    n: int  # examples
    base_only: int  # right in base, wrong in other
    other_only: int  # right in other, wrong in base
    diff: float  # accuracy(other) - accuracy(base) = (other_only - base_only) / n
    p: float
    ci_low: float
    ci_high: float


def mcnemar(base: np.ndarray, other: np.ndarray, confidence: float = 0.95,
            alternative: str = "two-sided") -> McNemar:
    """Exact McNemar test on two runs' per-example correctness (boolean arrays, same examples):
    a binomial test (as ``scipy.stats.binomtest``) of the discordant examples ``other`` won
    against p = 1/2.
    ``alternative="greater"``: H1 is that ``other`` is more often right. The interval maps the
    exact Clopper-Pearson interval of that share q onto the accuracy difference, m (2q - 1) / n."""
    base, other = np.asarray(base, bool), np.asarray(other, bool)
    n, b, c = len(base), int((base & ~other).sum()), int((~base & other).sum())
    m = b + c
    diff = clean((c - b) / n) if n else 0.0
    if m == 0:
        return McNemar(n, b, c, diff, 1.0, 0.0, 0.0)
    p, low, high = _binomial(c, m, alternative, confidence)
    return McNemar(n, b, c, diff, p, clean(m * (2 * low - 1) / n), clean(m * (2 * high - 1) / n))


@lru_cache(maxsize=65536)
def _binomial(c: int, m: int, alternative: str, confidence: float) -> tuple[float, float, float]:
    """(p, Clopper-Pearson low, high) of ``c`` successes in ``m`` trials at 1/2: what
    ``scipy.stats.binomtest(c, m, 0.5, alternative)`` and its exact ``proportion_ci`` give (to
    1e-11), from the binomial and beta functions directly. A report tests every pair of
    configurations; binomtest's search and root-finding took a second per hundred pairs."""
    if alternative == "greater":
        p = 1.0 if c == 0 else float(special.bdtrc(c - 1, m, 0.5))  # P(X >= c)
    elif alternative == "two-sided":  # symmetric at 1/2: both tails as extreme as c
        p = 1.0 if 2 * c == m else min(1.0, float(2 * special.bdtr(min(c, m - c), m, 0.5)))
    else:
        p = float(stats.binomtest(c, m, 0.5, alternative=alternative).pvalue)
    tail = (1 - confidence) / 2
    low = 0.0 if c == 0 else float(special.betaincinv(c, m - c + 1, tail))
    high = 1.0 if c == m else float(special.betaincinv(c + 1, m - c, 1 - tail))
    return p, low, high
