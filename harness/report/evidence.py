"""How a comparison is put in words: every comparison the report prints names its test, n
(seeds and test examples), the effect with its 95% interval, whether the two rows had the same
configuration apart from the method and the same budget, a WARNING where they mix harness
versions, and why a test fell back (:func:`evidence`). Also the notes under a table that name
the tests used, and what the rows rest on (duplicates left out, one method's configurations shown
apart, harness versions mixed, predictions available): :func:`integrity_findings`.
"""
from __future__ import annotations

import math

from harness.report.aggregate import METRICS
from harness.report.stats import (BOOTSTRAP, EXAMPLE_METRICS, MAJORITY_MCNEMAR, MAJORITY_TWO_LEVEL,
                                  MCNEMAR, NO_TEST, TWO_LEVEL, Comparison)


def is_nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _plural(n: int, word: str) -> str:
    return f"{int(n)} {word}{'s' * (int(n) != 1)}"


EXAMPLE_TESTS = (MCNEMAR, BOOTSTRAP, TWO_LEVEL, MAJORITY_MCNEMAR, MAJORITY_TWO_LEVEL)


def n_text(c) -> str:
    """'n = 1 seed, 1,000 test examples' (a test on examples); 'n = 3 seeds, paired (200 test
    examples per run)' or 'n = 2 vs 3 seeds' (a test over seeds)."""
    if c.test in EXAMPLE_TESTS:
        return f"n = {_plural(int(c.n_seeds), 'seed')}, {int(c.n_examples):,} test examples"
    if isinstance(c, Comparison) and not c.n_seeds:
        runs = int(c.n_base)
        text = f"n = {int(c.n_base)} vs {int(c.n_other)} seed{'s' * (max(int(c.n_base), int(c.n_other)) != 1)}"
    else:
        runs = int(c.n_seeds)
        text = f"n = {_plural(runs, 'seed')}" + (", paired" if isinstance(c, Comparison) else "")
    per = int(c.n_examples) // runs if c.n_examples and runs and not isinstance(c, Comparison) \
        else int(c.n_examples)
    return text + (f" ({per:,} test examples per run)" if per else "")


def setting_text(c: Comparison) -> str:
    """Whether the two rows are the same configuration apart from the method and had the same
    budget, and a warning where they mix harness versions."""
    config = ("same configuration apart from the method" if c.same_config else
              "configuration unknown" if c.same_config is None else
              f"NOT the same configuration apart from the method ({c.config_diff})")
    budget = ("same budget" if c.same_budget else c.budget_diff if c.same_budget is None else
              f"budget differs ({c.budget_diff})")
    text = f"{config}; {budget}"
    if c.versions:
        text += f"; WARNING: mixes harness versions {c.versions}"
    return text


def evidence(c, confidence: float = 0.95, interval: bool = True) -> str:
    """Everything a printed comparison must say: the test, p (and adjusted p), n in seeds and
    examples, the effect's interval, whether the configurations and budgets matched, and why a
    test fell back (its note)."""
    head = c.test if is_nan(c.p) else f"{c.test}, p={c.p:.3g}"
    adjusted = getattr(c, "p_adjusted", float("nan"))
    if not is_nan(adjusted) and not is_nan(c.p) and adjusted != c.p:
        head += f", adjusted p={adjusted:.3g}"
    parts = [head, n_text(c)]
    if interval and not is_nan(c.ci_low):
        parts.append(f"{confidence:.0%} CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}]")
    if isinstance(c, Comparison):
        parts.append(setting_text(c))
    if c.note:
        parts.append(c.note)
    return "; ".join(parts)


def tests_used(analysis, task: str, model: str) -> str:
    """'accuracy: exact McNemar test; macro-F1: paired bootstrap over test examples; other
    metrics: paired t-test, Welch t-test': the tests behind this table's marks."""
    p = analysis.pairs
    if p.empty:
        return "none"
    p = p[(p.task == task) & (p.model == model)]
    names = {m.name: m.label for m in METRICS}
    parts, rest = [], []
    for metric, g in p.groupby("metric", sort=False):
        tests = [t for t in dict.fromkeys(g.test) if t != NO_TEST]
        if metric in EXAMPLE_METRICS:
            parts.append(f"{names.get(metric, metric)}: {', '.join(tests)}")
        else:
            rest += tests
    rest = [t for t in dict.fromkeys(rest)]
    if rest:
        parts.append(f"other metrics (over seeds): {', '.join(rest)}")
    return "; ".join(parts) or "none"


def baseline_tests(analysis, task: str, model: str) -> str:
    b = analysis.baseline
    tests = list(dict.fromkeys(b[(b.task == task) & (b.model == model)].test)) if len(b) else []
    return ", ".join(t for t in tests if t != NO_TEST) or "no test"


def integrity_notes(analysis, task: str, model: str) -> list[str]:
    """Duplicates left out, one method's configurations shown apart, mixed harness versions."""
    notes = []
    dup = analysis.duplicates_of(task, model)
    if len(dup):
        notes.append(f"Duplicates: {len(dup)} duplicate finished row{'s' * (len(dup) != 1)} (same "
                     "config_hash as a later row) left out; each configuration counts once.")
    for (method, _, _), labels in analysis.split_methods(task, model).items():
        notes.append(f"{method}: {len(labels)} configurations that differ in more than the seed, "
                     f"shown as separate rows and never averaged ({'; '.join(labels)}).")
    versions = analysis.versions(task, model)
    if len(versions) > 1:
        notes.append(f"WARNING: this table mixes harness versions ({', '.join(versions)}); "
                     "comparisons across versions may reflect the harness, not the method.")
    return notes


DIFFERENCES_NOTE = (
    "Effect: the difference the test is about (other minus reference; the mean over paired seeds "
    "of the per-seed differences where the test pairs seeds). Same config?: whether the two rows' "
    "configurations are equal apart from the method's own settings (method.*); same budget?: "
    "optimizer steps, training examples and tokens.")


def difference_cells(c: Comparison) -> tuple[str, str, str, str]:
    """(test, n, same config?, same budget?) of one row of the differences table."""
    config = "yes" if c.same_config else "unknown" if c.same_config is None else f"no: {c.config_diff}"
    budget = ("yes" if c.same_budget else ("n/a: " + c.budget_diff if "baseline" in (c.budget_diff or "")
                                             else "unknown") if c.same_budget is None else f"no: {c.budget_diff}")
    test = c.test + (f" — {c.note}" if c.note else "")
    if c.versions:
        test += f"; WARNING: harness versions {c.versions}"
    return test, n_text(c).removeprefix("n = "), config, budget


def _runs(n: int) -> str:
    return f"{n} run{'s' * (n != 1)}"


def integrity_findings(a, task: str, model: str) -> list[str]:
    """What the numbers rest on: duplicate rows left out, configurations of one method shown
    apart, harness versions mixed, and which comparisons could use per-example predictions."""
    out = []
    dup = a.duplicates_of(task, model)
    if len(dup):
        who = ", ".join(f"{r.method} seed {r.seed} ({r.run_id}, {r.created_at})" for r in dup.itertuples())
        out.append(f"{len(dup)} duplicate finished row{'s' * (len(dup) != 1)} left out: a configuration "
                   f"(config_hash) stored more than once counts once, the latest row kept "
                   f"(left out: {who}).")
    for (method, quant, r), labels in a.split_methods(task, model).items():
        out.append(f"{method} ran in {len(labels)} configurations that differ in more than the seed; "
                   f"they are shown apart and never averaged: {'; '.join(labels)}.")
    versions = a.versions(task, model)
    if len(versions) > 1:
        mixed = a.mixed_version_pairs(task, model)

        def side(label: str) -> str:
            found = [str(v) for v in dict.fromkeys(a.runs(task, model, label).harness_version.dropna())]
            return f"{label} ({', '.join(found) or 'unknown'})"

        which = "; ".join(f"{side(c.base)} vs {side(c.other)}" for c in mixed)
        out.append(f"WARNING: the runs of this table were computed by {len(versions)} harness versions "
                   f"({', '.join(versions)}); a difference between them may come from the harness, not "
                   f"the method. Comparisons that mix versions: {which or 'none'}.")
    runs = a.runs(task, model)
    have = int(runs.run_id.isin(a.with_predictions).sum())
    if have == len(runs):
        out.append(f"Per-example test predictions are stored for all {_runs(len(runs))}: accuracy and "
                   "macro-F1 are tested on the test examples (exact McNemar, paired bootstrap, or the "
                   "two-level bootstrap over seeds and examples).")
    elif have == 0:
        out.append(f"No per-example test predictions are stored for these {_runs(len(runs))} (a store "
                   "from before they were kept): every test is seed-level (paired or Welch t-test), "
                   "and a configuration with one seed cannot be tested.")
    else:
        out.append(f"Per-example test predictions are stored for {have} of {_runs(len(runs))}; a "
                   "comparison involving a run without them falls back to a seed-level test (each "
                   "line says which).")
    return out
