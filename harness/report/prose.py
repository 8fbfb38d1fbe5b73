"""The report's fixed prose: how the statistics were computed, and which protocol stage it reports."""
from __future__ import annotations

import pandas as pd

from harness.report.compare import Analysis, methods_text
from harness.report.select import Selection, stages
from harness.report.stats import RESAMPLES


def statistics_text(a: Analysis) -> list[str]:
    """The paragraphs of "How the statistics were computed"."""
    return [
        f"Aggregates are over seeds: mean, sample standard deviation, n and a {a.confidence:.0%} "
        "Student t-interval for the mean. With n=1 there is no spread and no interval.",
        "A configuration (a table row) is the whole resolved config apart from the seed, with the data, "
        "model, device kind and harness version it was computed from; runs of one method with another "
        "learning rate, data size or epoch count are other rows, labelled by the settings that differ, "
        "never averaged together. A configuration stored more than once (the same config_hash) counts "
        "once: the latest finished row is kept and the others are counted in the setup.",
        "Accuracy and macro-F1, where the store kept each run's per-example test predictions: with one "
        "seed on each side, accuracy by the exact McNemar test (a binomial test on the examples exactly "
        "one of the two runs got right; interval from the exact Clopper-Pearson interval) and macro-F1 "
        "by a paired bootstrap over test examples (95% percentile interval; p from the share of "
        "resampled differences on either side of zero); with several seeds on both sides, by a two-level "
        f"paired bootstrap that resamples seeds and then test examples within each seed. Bootstraps "
        f"draw {RESAMPLES} resamples from a fixed seed, so the report is reproducible. On seeds only one "
        "side ran, the test uses the seeds both ran and says so.",
        "Without predictions (older runs) and for every other metric, seeds are the unit: two "
        "configurations run on the same seeds are compared with a paired t-test on the per-seed "
        "differences (a seed fixes the data split and initialisation), otherwise with Welch's t-test; "
        "with one run on a side there is no test. A metric without run-to-run variance (parameter "
        "counts, adapter size) is compared exactly. Every comparison names its test, n in seeds and "
        "test examples, the effect's 95% interval, and whether the two rows had the same configuration "
        "apart from the method (method.* left out) and the same budget; it warns where they mix "
        "harness versions. "
        f"p-values are {'Holm-corrected over all pairs of configurations, per metric' if a.correction == 'holm' else 'not corrected for multiple comparisons'}; "
        f"a difference is significant when that p-value is below alpha = {a.alpha}.",
        "The majority-class baseline is the test accuracy of always predicting the most common training "
        "label, computed on each run's own split; a configuration is above it when a one-sided test "
        "says so: exact McNemar against the majority-class predictions of the same examples with one "
        "seed, the two-level bootstrap with several, a one-sided paired t-test over runs without "
        "predictions.",
        "Failed runs are listed apart and never enter an aggregate.",
        "Under protocol=tuned each grid point first trains search trials (one per learning rate, "
        "on the search seed) and picks the rate with the best validation value (ties: the lower "
        "rate); its final runs train at that rate and are the runs reported. Search trials enter "
        "no aggregate, table, test or default figure unless selected (--stage search or all); "
        "the learning-rate search figure shows them. The LR column gives the rate of each row's "
        "runs and flags a row whose runs do not share one.",
        "Equal budgets: under each table the report checks that its runs took the same number of "
        "optimizer steps, saw the same training examples and tokens and had the same data sizes "
        "(or, where the seed's data split changes the token count, the same on each seed), names "
        "the configurations that differ, and calls the budget unknown for runs stored before "
        "these were recorded.",
    ] + methods_text(a.families)  # tables too large to test every pair (harness.report.family)


def stage_text(selection: Selection, finished: pd.DataFrame, search: pd.DataFrame) -> str:
    """The setup's "Protocol stage" line: which stages the selection reports, and how many runs of each."""
    counts = stages(finished).replace("", "fixed").value_counts()
    have = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none finished"
    text = {"final": "final runs of tuned grid points and fixed-protocol runs (the default)",
            "search": "search trials only (--stage search)",
            "all": "every stage, search trials included (--stage all)"}[selection.stage]
    text += f"; reported: {have}"
    if selection.stage == "final" and len(search):
        text += (f"; {len(search)} search trial{'s' * (len(search) != 1)} left out of every "
                 "aggregate (see the learning-rate search figure)")
    return text
