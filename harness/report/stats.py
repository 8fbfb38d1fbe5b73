"""The statistics behind every mark in a report, with the name of the test that made it.

Two sources of noise separate two configurations' scores: the *seed* (it fixes the data split,
the initialisation and the batch order; a new seed gives another model) and the *test examples*
(a test set is a sample; another sample would score differently). A comparison has to account
for whichever of the two it can see. Which test ran is named in every table, finding and claim.

**Per-example predictions kept** (``harness.results`` keeps each run's test predictions):

- *One seed on each side* (the same seed, so the same test examples): accuracy is compared with
  the **exact McNemar test** — a two-sided binomial test (``scipy.stats.binomtest``, p = 1/2) on
  the discordant examples, those that exactly one of the two runs got right. Its interval for the
  accuracy difference maps the exact (Clopper-Pearson) interval of the share of discordant
  examples the second run won, q, onto the difference: ``d = m (2 q - 1) / n`` for m discordant
  of n examples. Macro-F1 is not a mean over examples, so no closed-form test fits it: a **paired
  bootstrap over test examples** resamples the examples (the same resample for both runs, so the
  pairing is kept), recomputes both macro-F1s and takes the 2.5 and 97.5 percentiles of the
  difference as the 95% interval; its two-sided p is twice the smaller share of resampled
  differences on either side of zero, ``(1 + count) / (B + 1)``. B = :data:`RESAMPLES`; the
  random generator is seeded by :data:`BOOTSTRAP_SEED` and by the test set itself, so a report
  is reproduced exactly and every comparison on one test set uses the same resamples.
- *Several seeds on both sides, paired by seed*: a **two-level paired bootstrap (seeds, then test
  examples)**. Each resample draws as many seeds as were run, with replacement (a seed is drawn
  with both configurations' runs on it), then, within each drawn seed, resamples its test
  examples (again the same examples for both runs); the statistic is the mean over the drawn
  seeds of the metric difference. Interval and p as above. Why this test: a t-test over seeds
  sees only one number per seed and, with the 2 to 5 seeds sweeps run, has 1 to 4 degrees of
  freedom, so it can call nothing but huge differences; pooling all examples of all seeds into
  one McNemar test would treat the seeds as fixed and declare a difference that a new seed may
  reverse. The two-level bootstrap spreads its resamples over both sources. Its known
  small-sample behaviour: the seed level alone gives (S - 1)/S of the seed-to-seed variance of
  the mean for S seeds, while the example level adds the examples' variance a second time (each
  seed's difference already carries it); in the usual regime, where example noise is a fair
  share of seed-to-seed variation, the two roughly cancel, and the test is conservative when
  example noise dominates. When the seeds themselves disagree strongly and few were run it is
  somewhat liberal: read a significant result on 2 or 3 seeds with that in mind and run more
  seeds (the report prints n, in seeds and examples, next to every test).
- Seed sets that differ: the test runs on the seeds both configurations ran (named in the
  output); with no seed in common it falls back to the seed-level tests below.
- Above the majority class: the same tests, one-sided, of the run's accuracy against the
  majority-class predictions on the same examples (exact McNemar with one seed, the two-level
  bootstrap with several).

**No predictions** (runs stored before they were kept, or metrics that are not per-example such
as memory and throughput): seeds are the unit of replication. Two configurations run on the same
seeds are compared with a paired t-test on the per-seed differences (pairing removes the noise
the seed shares); otherwise with Welch's t-test; the majority check is a one-sided paired t-test
over runs. With one run on a side there is no variance estimate, hence no interval and no test,
and the report says so instead of inventing one. A metric that does not vary between runs
(parameter counts) is compared exactly.

The p-values of one metric form one family for the Holm correction, whatever test made them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from harness.report import student

from harness.report.example_tests import (BOOTSTRAP_SEED, RESAMPLES, ROUNDING, McNemar,  # noqa: F401
                                     Predictions, Resampler, _interval, _one_sided, _two_sided,
                                     bootstrap_differences, correct, mcnemar, score)
from harness.report.example_tests import clean as _clean

PAIRED = "paired t-test"
WELCH = "Welch t-test"
EXACT = "exact: no run-to-run variance"
NO_TEST = "n=1, no test"
NO_INTERVAL = "n=1, no interval"
# Tests on per-example predictions
MCNEMAR = "exact McNemar test"
BOOTSTRAP = "paired bootstrap over test examples"
TWO_LEVEL = "two-level paired bootstrap (seeds, then test examples)"
MAJORITY_T = "one-sided paired t-test"
MAJORITY_MCNEMAR = "one-sided exact McNemar test"
MAJORITY_TWO_LEVEL = "one-sided two-level bootstrap (seeds, then test examples)"
# What a test's n counts
SEEDS, EXAMPLES, BOTH = "seeds", "examples", "seeds and examples"
LEVEL = {PAIRED: SEEDS, WELCH: SEEDS, EXACT: SEEDS, NO_TEST: SEEDS, MCNEMAR: EXAMPLES,
         BOOTSTRAP: EXAMPLES, TWO_LEVEL: BOTH, MAJORITY_T: SEEDS, MAJORITY_MCNEMAR: EXAMPLES,
         MAJORITY_TWO_LEVEL: BOTH}
# Metrics that can be recomputed from per-example predictions (the others are seed-level only).
EXAMPLE_METRICS = ("accuracy", "f1_macro")



def mean_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, std, low, high): Student t-interval for the mean; NaN bounds and std when n=1."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan"), float("nan")
    std = float(values.std(ddof=1))
    if std == 0:
        return mean, 0.0, mean, mean
    low, high = student.bounds(len(values) - 1, confidence, std / np.sqrt(len(values)), mean)
    return mean, std, low, high


_constant = student.constant


NAN = float("nan")


@dataclass
class Comparison:
    """``other`` minus ``base`` on one metric, with what the test rests on."""

    diff: float
    test: str
    p: float  # two-sided; NaN where no test ran
    ci_low: float
    ci_high: float
    n_base: int  # runs of each side behind the test
    n_other: int
    p_adjusted: float = NAN
    n_seeds: int = 0  # seeds the test paired (0: unpaired, see n_base / n_other)
    # test examples behind it: a test on examples, summed over its seeds; a seed-level test, per
    # run; 0: not known
    n_examples: int = 0
    note: str = ""  # why this test, which seeds (a fallback, seeds left out)
    same_config: bool | None = None  # the compared rows' configurations equal apart from the method
    config_diff: str = ""  # what else differs ("quant.name: nf4 vs none")
    same_budget: bool | None = None  # optimizer steps, examples seen, tokens equal (None: unknown)
    budget_diff: str = ""
    versions: str = ""  # the harness versions when the compared runs mix them (a warning)

    def significant(self, alpha: float) -> bool:
        return significant(self.test, self.diff, self.p, self.p_adjusted, alpha)

    @property
    def level(self) -> str:
        return LEVEL.get(self.test, SEEDS)


def significant(test: str, diff: float, p: float, p_adjusted: float, alpha: float) -> bool:
    """:meth:`Comparison.significant` from its fields (the analysis marks every pair)."""
    if test == EXACT:
        return diff != 0
    p = p_adjusted if not np.isnan(p_adjusted) else p
    return bool(not np.isnan(p) and p < alpha)


def compare(base: dict[int, float] | student.Sample, other: dict[int, float] | student.Sample,
            confidence: float = 0.95) -> Comparison:
    """Compare two configurations' per-seed values ({seed: value}, or their
    :class:`~harness.report.student.Sample`) at the seed level; see the module docstring."""
    sa = base if isinstance(base, student.Sample) else student.Sample(base)
    sb = other if isinstance(other, student.Sample) else student.Sample(other)
    diff = _clean(float(np.float64(sb.mean) - np.float64(sa.mean)))
    n = dict(n_base=len(sa.values), n_other=len(sb.values))
    if len(sa.values) < 2 or len(sb.values) < 2:
        return Comparison(diff, NO_TEST, NAN, NAN, NAN, **n)
    if sa.constant and sb.constant:
        return Comparison(diff, EXACT, NAN, diff, diff, **n)
    if sa.seeds == sb.seeds:
        d = np.array([sb.by_seed[s] - sa.by_seed[s] for s in sa.seeds])
        if _constant(d):
            return Comparison(diff, EXACT, NAN, diff, diff, **n, n_seeds=len(sa.seeds))
        p, low, high = student.paired(d, confidence)
        return Comparison(diff, PAIRED, p, low, high, **n, n_seeds=len(sa.seeds))
    p, low, high = student.welch(sb, sa, confidence)
    return Comparison(diff, WELCH, p, low, high, **n)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN entries are left out of the family and kept NaN)."""
    idx = [i for i, p in enumerate(pvalues) if not np.isnan(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    out, running = [NAN] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[i]))
        out[i] = running
    return out


@dataclass
class BaselineCheck:
    """Is a configuration's accuracy above the majority-class baseline of the same splits?"""

    margin: float  # mean of accuracy - majority accuracy
    test: str
    p: float  # one-sided
    above: bool
    ci_low: float = NAN  # 95% interval of the margin (two-sided)
    ci_high: float = NAN
    n_seeds: int = 0  # runs (one per seed) behind the check
    n_examples: int = 0  # test examples, summed over those runs (0: not known)
    note: str = ""


def above_majority(accuracy: np.ndarray, majority: np.ndarray, alpha: float,
                   confidence: float = 0.95) -> BaselineCheck:
    """One-sided paired t-test of accuracy > majority accuracy over runs (each run's own split)."""
    d = np.asarray(accuracy, float) - np.asarray(majority, float)
    margin = float(d.mean())
    if len(d) < 2:
        return BaselineCheck(margin, NO_TEST, NAN, False, n_seeds=len(d))
    if _constant(d):
        margin = _clean(margin)
        return BaselineCheck(margin, EXACT, NAN, margin > 0, margin, margin, n_seeds=len(d))
    p = float(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue)
    _, _, low, high = mean_interval(d, confidence)
    return BaselineCheck(margin, MAJORITY_T, p, p < alpha, low, high, n_seeds=len(d))


def compare_examples(pairs: list[tuple[Predictions, Predictions]], metric: str,
                     confidence: float = 0.95, resampler: Resampler | None = None) -> Comparison:
    """Compare two configurations on their per-example predictions; ``pairs``: (base run, other
    run) on each shared seed, tested on the same examples. See the module docstring."""
    resampler = resampler or Resampler()
    n_ex = sum(a.n for a, _ in pairs)
    n = dict(n_base=len(pairs), n_other=len(pairs), n_seeds=len(pairs), n_examples=n_ex)
    diff = _clean(float(np.mean([resampler.score(b, metric) - resampler.score(a, metric) for a, b in pairs])))
    if len(pairs) == 1 and metric == "accuracy":
        a, b = pairs[0]
        t = mcnemar(correct(a), correct(b), confidence)
        return Comparison(t.diff, MCNEMAR, t.p, t.ci_low, t.ci_high, **n,
                          note=f"{t.base_only + t.other_only} discordant examples "
                               f"({t.other_only} won, {t.base_only} lost)")
    d = bootstrap_differences(pairs, metric, resampler)
    low, high = _interval(d, confidence)
    return Comparison(diff, BOOTSTRAP if len(pairs) == 1 else TWO_LEVEL, _two_sided(d), low, high, **n,
                      note=f"{resampler.resamples} resamples")


def majority_check(runs: list[Predictions], alpha: float, confidence: float = 0.95,
                   resampler: Resampler | None = None) -> BaselineCheck:
    """One-sided test of accuracy above the majority-class predictions of the same examples,
    one run per seed: exact McNemar with one run, the two-level bootstrap with several."""
    resampler = resampler or Resampler()
    n_ex = sum(r.n for r in runs)
    if len(runs) == 1:
        r = runs[0]
        t = mcnemar(correct(r.against_majority()), correct(r), confidence, alternative="greater")
        return BaselineCheck(t.diff, MAJORITY_MCNEMAR, t.p, t.p < alpha, t.ci_low, t.ci_high, 1, n_ex,
                             f"{t.base_only + t.other_only} discordant examples")
    pairs = [(r.against_majority(), r) for r in runs]
    margin = _clean(float(np.mean([resampler.score(r, "accuracy") - resampler.score(m, "accuracy")
                                   for m, r in pairs])))
    d = bootstrap_differences(pairs, "accuracy", resampler)
    p = _one_sided(d)
    low, high = _interval(d, confidence)
    return BaselineCheck(margin, MAJORITY_TWO_LEVEL, p, p < alpha, low, high, len(runs), n_ex,
                         f"{resampler.resamples} resamples")
