"""Student t-tests and t-intervals computed with scipy's own formulas, without its wrappers.

A report compares every pair of configurations of a table on every metric at the seed level:
~200,000 t-tests for a week of sweeps, where ``scipy.stats.ttest_rel`` / ``ttest_ind`` and their
``confidence_interval`` cost about a millisecond each. These functions compute the same
statistic, p-value (``2 * stdtr(df, -|t|)``) and interval (``stdtrit``) as scipy 1.17 does, from
the same special functions, in microseconds; tests/test_report_scale.py checks them against
scipy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from harness.report.mcnemar import ROUNDING


def constant(values: np.ndarray) -> bool:
    """Whether every value equals the first up to floating-point rounding (``np.allclose`` with
    ``atol = ROUNDING * max(1, |first|)``, ``rtol = 0``), without its overhead where the first
    value is finite."""
    first = float(values[0])
    atol = ROUNDING * max(1.0, abs(first))
    if not math.isfinite(first):
        return bool(np.allclose(values, first, rtol=0, atol=atol))
    return all(abs(v - first) <= atol for v in values.tolist())


@dataclass
class Sample:
    """One configuration's per-seed values of one metric ({seed: value}) with what every test
    of it reuses: a configuration is tested against each of the others in its table."""

    by_seed: dict
    values: np.ndarray = field(init=False)
    mean: float = field(init=False)
    var: float = field(init=False)  # sample variance (ddof=1); NaN with fewer than 2 values
    constant: bool = field(init=False)
    seeds: list = field(init=False)  # sorted

    def __post_init__(self) -> None:
        v = self.values = np.array(list(self.by_seed.values()), float)
        self.mean = float(v.mean()) if len(v) else math.nan
        self.var = float(variance(v)) if len(v) > 1 else math.nan
        self.constant = bool(len(v)) and constant(v)
        self.seeds = sorted(self.by_seed)


def bounds(df: float, confidence: float, se: float, estimate: float) -> tuple[float, float]:
    """``scipy.stats.t.interval(confidence, df, loc=estimate, scale=se)``."""
    c = np.float64(confidence)
    low, high = special.stdtrit(df, np.array([(1.0 - c) / 2, (1.0 + c) / 2]))
    return float(low * se + estimate), float(high * se + estimate)


def _test(estimate: float, se: float, df: float, confidence: float) -> tuple[float, float, float]:
    """(two-sided p, low, high) of the t statistic ``estimate / se`` on ``df`` degrees of freedom,
    the interval as ``TtestResult.confidence_interval`` computes it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.divide(estimate, se)
    tail = (1 - np.float64(confidence)) / 2
    low, high = special.stdtrit(df, np.array([tail, 1 - tail]))
    return (float(2 * special.stdtr(df, -np.abs(t))), float(low * se + estimate),
            float(high * se + estimate))


def variance(x: np.ndarray) -> np.float64:
    """The sample variance as scipy's tests compute it: the mean squared deviation times
    n / (n - 1) (numpy's ``var(ddof=1)`` divides the sum by n - 1, rounding otherwise)."""
    n = np.float64(len(x))
    return np.mean((x - np.mean(x)) ** 2) * (n / (n - 1))


def paired(d: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """(p, low, high) of ``scipy.stats.ttest_rel(other, base)``, given the per-seed differences
    ``d = other - base``: a one-sample t-test of their mean."""
    return _test(float(np.mean(d)), float(np.sqrt(variance(d) / len(d))), len(d) - 1, confidence)


def welch(b: Sample, a: Sample, confidence: float) -> tuple[float, float, float]:
    """(p, low, high) of ``scipy.stats.ttest_ind(b, a, equal_var=False)``: Welch's standard error
    and Welch-Satterthwaite degrees of freedom (1 where undefined, as scipy)."""
    nb, na = len(b.values), len(a.values)
    vb, va = np.float64(b.var) / nb, np.float64(a.var) / na
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (vb + va) ** 2 / (vb ** 2 / (nb - 1) + va ** 2 / (na - 1))
    return _test(float(np.float64(b.mean) - np.float64(a.mean)), float(np.sqrt(vb + va)),
                 1.0 if np.isnan(df) else float(df), confidence)
