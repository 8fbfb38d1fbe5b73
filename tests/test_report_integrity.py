"""Numbers you can stake a paper on: duplicates are one result, other settings are other rows,
and the tests decide on the test examples where the store kept them.

Each test provokes one defect of the report as it was: a configuration stored twice counted as
two seeds, runs with another learning rate (or harness version) averaged in as seeds, and one-seed
comparisons (the majority class included) left untested although the store holds every test
prediction. Expected values are computed here by hand (binomial sums, Clopper-Pearson bounds from
the beta distribution, Holm by hand), never by the code under test.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from report_fixture import (fixture_row, make_fixture_store, make_prediction_store, prediction_row,
                            seed_labels)
from scipy import stats as sp
from sklearn.metrics import f1_score

from harness.config import ReportConfig
from harness.report import build_report
from harness.report.__main__ import main as report_main
from harness.report.compare import analyze, stat
from harness.report.select import deduplicate
from harness.report.stats import (BOOTSTRAP, MAJORITY_MCNEMAR, MAJORITY_TWO_LEVEL, MCNEMAR, NO_TEST,
                                  PAIRED, TWO_LEVEL, Predictions, Resampler, compare_examples,
                                  correct, mcnemar, score)
from harness.report.tables import comparison_table, reference_table
from harness.results import load
from harness.results.store import open_store
from tests.test_report_stats import holm_by_hand

KEY = ("synthetic", "tiny_bert")
MD = ReportConfig(pdf=False, formats=["md"])


def md_of(report) -> str:
    return (report.out_dir / "report.md").read_text()


def row_named(table, label: str) -> list:
    return next(r for r in table.rows if r[0].mean.replace(" (reference)", "") == label)


def diff_row(table, difference: str, metric: str = "Accuracy") -> list:
    """A row of the differences-from-the-reference table."""
    return next(r for r in table.rows if (r[0].mean, r[1].mean) == (metric, difference))


def binom_two_sided(k: int, m: int) -> float:
    """Exact two-sided binomial p for k of m at p=1/2, by hand (the distribution is symmetric)."""
    tail = sum(math.comb(m, j) for j in range(max(k, m - k), m + 1)) / 2**m
    return min(1.0, 2 * tail)


def binom_upper(k: int, m: int) -> float:
    """P(X >= k) for X ~ Binomial(m, 1/2), by hand."""
    return sum(math.comb(m, j) for j in range(k, m + 1)) / 2**m




# --- 1. duplicates become fake replicates -----------------------------------------------------

def test_deduplicate_keeps_the_latest_row_of_each_config_hash():
    rows = pd.DataFrame({"run_id": ["a", "b", "c", "d"], "config_hash": ["h1", "h2", "h1", "h1"],
                         "created_at": ["2026-01-02", "2026-01-01", "2026-01-03", "2026-01-01"]})
    kept, dropped = deduplicate(rows)
    assert list(kept.run_id) == ["b", "c"] and list(dropped.run_id) == ["d", "a"]
    kept, dropped = deduplicate(rows.iloc[:2])
    assert list(kept.run_id) == ["a", "b"] and dropped.empty


def test_a_duplicate_finished_row_is_counted_once_and_the_report_says_so(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    store = make_fixture_store(path)
    # force=true ran lora seed 0 again: the same config_hash, a later row (the one kept)
    store.record({**fixture_row("lora", 0, 0), "run_id": "lora-0-again", "accuracy": 0.86,
                  "created_at": "2026-02-01T10:00:00+00:00"}, [])
    report = build_report(path, tmp_path / "out", options=MD)
    a = report.analysis
    s = stat(a, *KEY, "lora", "accuracy")
    assert s["n"] == 3 and sorted(s["seeds"].split(",")) == ["0", "1", "2"]
    assert s["mean"] == pytest.approx((0.86 + 0.82 + 0.81) / 3)
    assert list(a.duplicates.run_id) == ["lora-0"] and "lora-0" not in set(a.per_run.run_id)
    md = md_of(report)
    assert "| Duplicate rows | 1 duplicate finished row left out (the same config_hash as a later row" in md
    assert "15 finished runs, 1 failed" in md  # the duplicate is not a run of its own
    integrity = report.findings[KEY]["Data integrity"][0]
    assert integrity.startswith("1 duplicate finished row left out: a configuration (config_hash) "
                                "stored more than once counts once, the latest row kept (left out: "
                                "lora seed 0 (lora-0,")
    assert ("Duplicates: 1 duplicate finished row (same config_hash as a later row) left out"
            in (report.out_dir / "tables" / "synthetic__tiny_bert.md").read_text())
    assert report_main(["--store", str(path), "--out", str(tmp_path / "cli"), "--format", "md",
                        "--no-pdf"]) == 0
    assert "[report] 1 duplicate finished row (same config_hash) left out" in capsys.readouterr().out


def test_copies_of_one_run_never_make_an_exact_difference(tmp_path):
    # two sweeps wrote the same single-seed runs: counted as n=2 with std 0 they looked "exact"
    path = tmp_path / "s.sqlite"
    store = open_store(path)
    for sweep, day in (("a", 1), ("b", 2)):
        for method, acc in (("lora", 0.80), ("dora", 0.83)):
            store.record({**fixture_row(method, 0, 0), "sweep": sweep, "accuracy": acc,
                          "run_id": f"{method}-{sweep}", "created_at": f"2026-01-0{day}T10:00:00+00:00"}, [])
    a = analyze(load(path, decode=False), reference="lora")
    assert stat(a, *KEY, "dora", "accuracy")["n"] == 1 and len(a.duplicates) == 2
    c = a.versus_reference(*KEY, "dora", "accuracy")
    assert c.test == NO_TEST and not c.significant(0.05)


# --- 2. pooled configurations -----------------------------------------------------------------

def _lr_runs() -> list:
    runs = []
    for method, lr, accs in (("lora", 1e-3, (0.70, 0.71, 0.72)), ("lora", 2e-3, (0.80, 0.81, 0.82)),
                             ("dora", 2e-3, (0.83, 0.85, 0.84))):
        for seed, acc in enumerate(accs):
            runs.append(prediction_row(method, seed, acc, n=200, lr=lr, config={"method": {"lr": lr}}))
    return runs


def test_two_learning_rates_of_one_method_are_two_rows_never_averaged(tmp_path):
    make_prediction_store(tmp_path / "s.sqlite", _lr_runs())
    report = build_report(tmp_path / "s.sqlite", tmp_path / "out", options=MD)
    a = report.analysis
    assert a.labels(*KEY) == ["dora", "lora (lr=0.001)", "lora (lr=0.002)"]
    for label, mean in (("lora (lr=0.001)", 0.71), ("lora (lr=0.002)", 0.81), ("dora", 0.84)):
        s = stat(a, *KEY, label, "accuracy")
        assert s["n"] == 3 and s["mean"] == pytest.approx(mean)
    assert set(a.agg[a.agg.metric == "accuracy"].n) == {3}  # no row of 6 (the two rates pooled)
    table = comparison_table(a, *KEY)
    lr = table.headers.index("LR")
    assert row_named(table, "lora (lr=0.001)")[lr].text() == "0.001"
    assert row_named(table, "lora (lr=0.002)")[lr].text() == "0.002"
    assert "lora (lr=0.001) (reference)" in [r[0].mean for r in table.rows]  # each is a reference
    # dora is compared with the lora row of its own rate: the same configuration apart from the method
    assert a.references[(*KEY, "dora")] == "lora (lr=0.002)"
    c = a.versus_reference(*KEY, "dora", "accuracy")
    assert c.same_config and c.same_budget and c.test == TWO_LEVEL
    assert ("lora ran in 2 configurations that differ in more than the seed; they are shown apart "
            "and never averaged: lora (lr=0.001); lora (lr=0.002).") in report.findings[KEY]["Data integrity"]
    md = (tmp_path / "out" / "tables" / "synthetic__tiny_bert.md").read_text()
    assert "| lora (lr=0.001) (reference) | 3 | 0.001 | 0.7100 ± 0.0100 |" in md
    assert "lora: 2 configurations that differ in more than the seed, shown as separate rows" in md
    assert "MIXED" not in md and "0.7600" not in md


def test_other_settings_are_named_in_every_comparison(tmp_path):
    # dora trained 3 epochs (more optimizer steps), lora 2: the same method settings cannot hide it
    runs = [prediction_row("lora", s, acc, n=200, config={"trainer": {"epochs": 2}})
            for s, acc in enumerate((0.80, 0.81, 0.82))]
    runs += [prediction_row("dora", s, acc, n=200, config={"trainer": {"epochs": 3}}, optimizer_steps=36)
             for s, acc in enumerate((0.83, 0.85, 0.84))]
    make_prediction_store(tmp_path / "s.sqlite", runs)
    report = build_report(tmp_path / "s.sqlite", tmp_path / "out", options=MD)
    c = report.analysis.versus_reference(*KEY, "dora", "accuracy")
    assert c.same_config is False and c.config_diff == "trainer.epochs: 2 vs 3"
    assert c.same_budget is False and c.budget_diff == "optimizer steps 24 vs 36"
    line = next(s for s in report.findings[KEY]["Differences from the reference"]
                if s.startswith("dora vs lora on accuracy"))
    assert ("NOT the same configuration apart from the method (trainer.epochs: 2 vs 3); "
            "budget differs (optimizer steps 24 vs 36)") in line
    row = diff_row(reference_table(report.analysis, *KEY), "dora − lora")
    assert [x.text() for x in row[-2:]] == ["no: trainer.epochs: 2 vs 3", "no: optimizer steps 24 vs 36"]


def test_mixed_harness_versions_are_shown_apart_and_warned_about(tmp_path):
    runs = [prediction_row("lora", s, acc, n=200, harness_version="0.3.0")
            for s, acc in enumerate((0.80, 0.81, 0.82))]
    runs += [prediction_row("dora", s, acc, n=200, harness_version="0.4.0")
             for s, acc in enumerate((0.83, 0.85, 0.84))]
    make_prediction_store(tmp_path / "s.sqlite", runs)
    report = build_report(tmp_path / "s.sqlite", tmp_path / "out", options=MD)
    c = report.analysis.versus_reference(*KEY, "dora", "accuracy")
    assert c.versions == "0.3.0 vs 0.4.0" and c.config_diff == "harness_version: 0.3.0 vs 0.4.0"
    warning = next(s for s in report.findings[KEY]["Data integrity"] if s.startswith("WARNING"))
    assert warning == ("WARNING: the runs of this table were computed by 2 harness versions (0.3.0, "
                       "0.4.0); a difference between them may come from the harness, not the method. "
                       "Comparisons that mix versions: dora (0.4.0) vs lora (0.3.0).")
    line = next(s for s in report.findings[KEY]["Differences from the reference"]
                if s.startswith("dora vs lora on accuracy"))
    assert "WARNING: mixes harness versions 0.3.0 vs 0.4.0" in line
    md = md_of(report)
    assert "WARNING: this table mixes harness versions (0.3.0, 0.4.0)" in md
    assert "| Harness version | 0.3.0, 0.4.0 (MIXED: comparisons across versions are flagged) |" in md

    # one method under two versions: two rows, labelled by version, never averaged
    runs += [prediction_row("lora", s, acc, n=200, harness_version="0.4.0", run_id=f"lora4-{s}",
                            config_hash=f"h-lora4-{s}") for s, acc in enumerate((0.70, 0.71, 0.72))]
    make_prediction_store(tmp_path / "t.sqlite", runs)
    a = build_report(tmp_path / "t.sqlite", tmp_path / "out2", options=MD).analysis
    assert a.labels(*KEY) == ["dora", "lora (harness_version=0.3.0)", "lora (harness_version=0.4.0)"]
    assert a.references[(*KEY, "dora")] == "lora (harness_version=0.4.0)"  # the same version
    assert not a.versus_reference(*KEY, "dora", "accuracy").versions


def test_a_split_that_follows_the_seed_is_not_a_setting_but_a_fixed_split_is():
    # task.split_seed is ${seed} by default (each seed its own split): those runs are one
    # configuration; a split fixed for every seed (split_seed: 0) is another
    def rows(split) -> list[dict]:
        return [prediction_row("lora", s, 0.8, n=50, config={"task": {"split_seed": split(s)}},
                               config_hash=f"h-{s}-{split(s)}")[0] for s in (0, 1, 2)]

    follows, fixed = pd.DataFrame(rows(lambda s: s)), pd.DataFrame(rows(lambda s: 0))
    for runs in (follows, fixed):
        a = analyze(runs)
        assert a.labels(*KEY) == ["lora"] and stat(a, *KEY, "lora", "accuracy")["n"] == 3
    # both sweeps in one store: seed 0 is the same run in both (one config_hash, stored twice)
    a = analyze(pd.concat([follows, fixed], ignore_index=True))
    assert len(a.duplicates) == 1
    assert a.labels(*KEY) == ["lora (split_seed=0)", "lora (split_seed=seed)"]
    assert [stat(a, *KEY, l, "accuracy")["seeds"] for l in a.labels(*KEY)] == ["0,1,2", "1,2"]


# --- 3. statistics that decide ------------------------------------------------------------------

def test_mcnemar_matches_a_hand_computed_binomial_p_value():
    # 20 examples: 10 both right, 2 both wrong, 1 only base right, 7 only other right
    base = np.array([1] * 10 + [0] * 2 + [1] + [0] * 7, bool)
    other = np.array([1] * 10 + [0] * 2 + [0] + [1] * 7, bool)
    t = mcnemar(base, other)
    assert (t.base_only, t.other_only, t.n) == (1, 7, 20)
    assert t.p == pytest.approx(2 * (math.comb(8, 7) + math.comb(8, 8)) / 2**8)  # = 18/256
    assert t.p == pytest.approx(0.0703125) and t.diff == pytest.approx(0.3)
    # the interval: Clopper-Pearson bounds of 7 of 8 (beta quantiles), mapped to 8 (2q - 1) / 20
    low, high = sp.beta.ppf(0.025, 7, 2), sp.beta.ppf(0.975, 8, 1)
    assert (t.ci_low, t.ci_high) == pytest.approx((8 * (2 * low - 1) / 20, 8 * (2 * high - 1) / 20))
    assert mcnemar(other, base).p == pytest.approx(t.p) and mcnemar(other, base).diff == pytest.approx(-0.3)
    assert mcnemar(base, other, alternative="greater").p == pytest.approx(9 / 256)  # one-sided
    assert mcnemar(base, base).p == 1.0  # no discordant example: no evidence


def test_one_seed_comparisons_are_tested_on_the_examples_with_holm(tmp_path):
    accs = {"lora": 0.80, "dora": 0.86, "vera": 0.78}
    runs = [prediction_row(m, 0, acc, n=200) for m, acc in accs.items()]
    make_prediction_store(tmp_path / "s.sqlite", runs)
    report = build_report(tmp_path / "s.sqlite", tmp_path / "out", options=MD)
    a = report.analysis
    right = {row["method"]: pred["test"]["labels"] == pred["test"]["predictions"] for row, pred in runs}
    raw = {}
    for (x, y) in (("dora", "lora"), ("dora", "vera"), ("lora", "vera")):
        b, c = int((right[x] & ~right[y]).sum()), int((~right[x] & right[y]).sum())
        raw[(x, y)] = binom_two_sided(c, b + c)
    adjusted = holm_by_hand(raw)
    pairs = a.pairs[a.pairs.metric == "accuracy"]
    for (x, y), p in raw.items():
        r = pairs[(pairs.base == x) & (pairs.other == y)].iloc[0]
        assert r.test == MCNEMAR and (r.n_seeds, r.n_examples) == (1, 200)
        assert r.p == pytest.approx(p, rel=1e-9) and r.p_adjusted == pytest.approx(adjusted[(x, y)], rel=1e-9)
        assert r["diff"] == pytest.approx(accs[y] - accs[x])
    f1 = a.versus_reference(*KEY, "dora", "f1_macro")
    assert f1.test == BOOTSTRAP and f1.ci_low < f1.diff < f1.ci_high
    dora = a.versus_reference(*KEY, "dora", "accuracy")
    assert dora.significant(0.05) and dora.ci_low > 0  # 12 more right of 200, on one seed
    # every comparison printed names its test, n, interval, configuration and budget
    for line in report.findings[KEY]["Differences from the reference"]:
        assert all(part in line for part in ("n = 1 seed, 200 test examples", "95% CI [",
                                             "same configuration apart from the method", "same budget"))
    assert any(f"— significant ({MCNEMAR}, p=" in s for s in report.findings[KEY]["Differences from the reference"])
    table = reference_table(a, *KEY)
    assert table.headers[4:6] == ["Test", "n"] and table.headers[-2:] == ["Same config?", "Same budget?"]
    assert diff_row(table, "dora − lora")[5].text() == "1 seed, 200 test examples"
    notes = " ".join(comparison_table(a, *KEY).notes)
    assert f"Accuracy: {MCNEMAR}; Macro-F1: {BOOTSTRAP}" in notes


def test_the_majority_class_test_decides_at_one_seed(tmp_path):
    # the case: one seed, a 16-point margin on 1,000 test examples
    runs = [prediction_row("dora", 0, 0.66, n=1000), prediction_row("lora", 0, 0.51, n=1000)]
    make_prediction_store(tmp_path / "s.sqlite", runs)
    report = build_report(tmp_path / "s.sqlite", tmp_path / "out", options=MD)
    b = report.analysis.baseline.set_index("label")
    for (row, pred), above in zip(runs, (True, False)):
        y, p, maj = (pred["test"][k] for k in ("labels", "predictions", "majority"))
        wins, losses = int(((p == y) & (maj != y)).sum()), int(((p != y) & (maj == y)).sum())
        check = b.loc[row["method"]]
        assert check.test == MAJORITY_MCNEMAR and (check.n_seeds, check.n_examples) == (1, 1000)
        assert check.p == pytest.approx(binom_upper(wins, wins + losses), rel=1e-9)
        assert bool(check.above) is above
    assert b.loc["dora", "margin"] == pytest.approx(0.16) and b.loc["dora", "p"] < 1e-6
    lines = report.findings[KEY]["Against the majority class"]
    dora = next(s for s in lines if s.startswith("dora"))
    assert dora.startswith("dora is significantly above the majority class: accuracy margin +0.1600, 95% CI [")
    assert f"({MAJORITY_MCNEMAR}, p=" in dora and "n = 1 seed, 1,000 test examples" in dora
    assert any(s.startswith("lora is NOT shown to beat the majority class: accuracy margin +0.0100") for s in lines)
    assert row_named(comparison_table(report.analysis, *KEY), "dora")[-1].text().startswith("yes, p=")

    # the same runs without their predictions (an older store): the seed-level check cannot decide
    store = open_store(tmp_path / "old.sqlite")
    for row, _ in runs:
        store.record(row, [])
    old = build_report(tmp_path / "old.sqlite", tmp_path / "old", options=MD)
    assert any(s.startswith("dora is NOT shown to beat the majority class: accuracy margin +0.1600 "
                            f"({NO_TEST}") for s in old.findings[KEY]["Against the majority class"])
    assert old.analysis.versus_reference(*KEY, "dora", "accuracy").test == NO_TEST


def test_several_seeds_use_the_two_level_bootstrap_and_fall_back_without_predictions(tmp_path):
    runs = [prediction_row(m, s, acc, n=300) for m, accs in
            (("lora", (0.80, 0.81, 0.82)), ("dora", (0.84, 0.86, 0.85))) for s, acc in enumerate(accs)]
    make_prediction_store(tmp_path / "s.sqlite", runs)
    a = build_report(tmp_path / "s.sqlite", tmp_path / "out", options=MD).analysis
    c = a.versus_reference(*KEY, "dora", "accuracy")
    assert c.test == TWO_LEVEL and (c.n_seeds, c.n_examples) == (3, 900)
    assert c.diff == pytest.approx(0.04) and c.ci_low < 0.04 < c.ci_high
    assert a.baseline.set_index("label").loc["dora", "test"] == MAJORITY_TWO_LEVEL
    # dora's seed 2 is missing: the test runs on the seeds both ran, and says which
    make_prediction_store(tmp_path / "part.sqlite", [r for r in runs if r[0]["run_id"] != runs[5][0]["run_id"]])
    part = build_report(tmp_path / "part.sqlite", tmp_path / "part", options=MD).analysis
    c = part.versus_reference(*KEY, "dora", "accuracy")
    assert c.test == TWO_LEVEL and c.n_seeds == 2 and c.diff == pytest.approx(0.045)
    assert c.note.startswith("on the 2 seeds both ran (0, 1; left out: lora seed 2)")
    # lora's runs stored without predictions: the seed-level paired t-test, said so
    store = make_prediction_store(tmp_path / "mixed.sqlite", [r for r in runs if r[0]["method"] == "dora"])
    for row, _ in (r for r in runs if r[0]["method"] == "lora"):
        store.record(row, [])
    report = build_report(tmp_path / "mixed.sqlite", tmp_path / "mixed", options=MD)
    c = report.analysis.versus_reference(*KEY, "dora", "accuracy")
    assert c.test == PAIRED and c.note == "test predictions not stored for 3 of the 6 runs: seed-level test"
    assert ("Per-example test predictions are stored for 3 of 6 runs; a comparison involving a run "
            "without them falls back to a seed-level test (each line says which).") \
        in report.findings[KEY]["Data integrity"]


# --- the bootstrap itself, on constructed cases with a known answer ------------------------------

def _binary_run(n: int, accuracy: float, rng, labels=None) -> tuple[np.ndarray, np.ndarray]:
    """Balanced binary labels, each predicted right with probability ``accuracy`` (independently,
    whatever the class), so the population macro-F1 equals ``accuracy`` (precision = recall =
    accuracy for both classes)."""
    y = rng.integers(0, 2, n) if labels is None else labels
    right = rng.random(n) < accuracy
    return y, np.where(right, y, 1 - y)


def test_the_paired_bootstrap_interval_covers_the_true_macro_f1_difference():
    true = 0.85 - 0.75
    covered, resampler = 0, Resampler(resamples=999)
    for i in range(20):
        rng = np.random.default_rng(100 + i)
        y, pa = _binary_run(2000, 0.75, rng)
        _, pb = _binary_run(2000, 0.85, rng, y)
        c = compare_examples([(Predictions(y, pa, n_classes=2, key=f"a{i}"),
                               Predictions(y, pb, n_classes=2, key=f"b{i}"))], "f1_macro", resampler=resampler)
        assert c.test == BOOTSTRAP and c.diff == pytest.approx(f1_score(y, pb, average="macro")
                                                               - f1_score(y, pa, average="macro"))
        assert c.ci_low < c.diff < c.ci_high and c.ci_low > 0 and c.p < 0.01
        covered += c.ci_low <= true <= c.ci_high
    assert covered >= 17  # a 95% interval: 17 or more of 20 (P > 0.98 if calibrated)


def test_the_two_level_bootstrap_covers_the_mean_difference_and_accounts_for_seeds():
    rng = np.random.default_rng(5)
    seeds = [(0.75, 0.80), (0.75, 0.85), (0.75, 0.90)]  # true differences 0.05, 0.10, 0.15
    pairs = []
    for s, (acc_a, acc_b) in enumerate(seeds):
        y, pa = _binary_run(1000, acc_a, rng)
        _, pb = _binary_run(1000, acc_b, rng, y)
        pairs.append((Predictions(y, pa, n_classes=2, key=f"a{s}"), Predictions(y, pb, n_classes=2, key=f"b{s}")))
    c = compare_examples(pairs, "f1_macro")
    assert c.test == TWO_LEVEL and (c.n_seeds, c.n_examples) == (3, 3000)
    assert c.ci_low <= 0.10 <= c.ci_high and c.significant(0.05)

    # seeds that disagree: +12, -12, +12 points. Pooling the 3,000 examples into one McNemar test
    # treats the seeds as fixed and calls it; the two-level bootstrap does not.
    pairs = []
    for s, (acc_a, acc_b) in enumerate([(0.70, 0.82), (0.82, 0.70), (0.70, 0.82)]):
        y, pa = _binary_run(1000, acc_a, rng)
        _, pb = _binary_run(1000, acc_b, rng, y)
        pairs.append((Predictions(y, pa, key=f"x{s}"), Predictions(y, pb, key=f"y{s}")))
    pooled = mcnemar(np.concatenate([correct(a) for a, _ in pairs]), np.concatenate([correct(b) for _, b in pairs]))
    assert pooled.p < 0.01
    c = compare_examples(pairs, "accuracy")
    assert c.test == TWO_LEVEL and c.p > 0.2 and c.ci_low < 0 < c.ci_high


def test_bootstraps_are_reproducible_and_paired():
    rng = np.random.default_rng(9)
    y, pa = _binary_run(500, 0.7, rng)
    _, pb = _binary_run(500, 0.8, rng, y)
    one = compare_examples([(Predictions(y, pa, key="a"), Predictions(y, pb, key="b"))], "f1_macro")
    two = compare_examples([(Predictions(y, pa, key="c"), Predictions(y, pb, key="d"))], "f1_macro")
    assert (one.p, one.ci_low, one.ci_high) == (two.p, two.ci_low, two.ci_high)
    # the same resamples for both runs: a run against itself differs by exactly 0 on every resample
    same = compare_examples([(Predictions(y, pa, key="e"), Predictions(y, pa, key="f"))], "f1_macro")
    assert (same.diff, same.ci_low, same.ci_high, same.p) == (0.0, 0.0, 0.0, 1.0)


def test_example_scores_reproduce_the_stored_metrics_single_and_multi_label():
    labels = seed_labels(0, 300, n_classes=3)
    rng = np.random.default_rng(1)
    preds = np.where(rng.random(300) < 0.7, labels, rng.integers(0, 3, 300))
    p = Predictions(labels, preds, n_classes=4)  # a fourth class never seen scores F1 0
    assert score(p, "accuracy") == pytest.approx(np.mean(labels == preds))
    assert score(p, "f1_macro") == pytest.approx(f1_score(labels, preds, labels=[0, 1, 2, 3],
                                                          average="macro", zero_division=0))
    # multi-label: subset accuracy, macro-F1 over the labels plus the "no label" column
    y = rng.integers(0, 2, (200, 4))
    q = np.where(rng.random((200, 4)) < 0.85, y, 1 - y)
    m = Predictions(y, q)
    none = lambda a: np.hstack([a, (~a.any(axis=1))[:, None].astype(int)])  # noqa: E731
    assert score(m, "accuracy") == pytest.approx(np.mean((y == q).all(axis=1)))
    assert score(m, "f1_macro") == pytest.approx(f1_score(none(y), none(q), average="macro", zero_division=0))
    assert list(correct(m)) == list((y == q).all(axis=1))


def test_runs_from_two_processors_are_flagged_in_the_setup_table():
    import json

    from harness.report.setup import setup_rows

    def row(i, hardware):
        r = fixture_row("lora", i, i)
        return {**r, "provenance_json": json.dumps({"versions": {}, "hardware": hardware}),
                "created_at": "2026-12-07", "sweep": "s", "harness_version": "0.3.0"}

    old = {"device": "cpu", "cpu": "x86_64", "cpu_count": 2}  # recorded before the processor's name
    xeon, epyc = ({**old, "cpu_model": name} for name in ("Intel(R) Xeon(R) Processor", "AMD EPYC 9R14"))

    def hardware(*machines):
        finished = pd.DataFrame([row(i, h) for i, h in enumerate(machines)])
        return dict(setup_rows(finished, finished.iloc[0:0]))["Hardware"]
    assert "MIXED" not in hardware(old, xeon, xeon)  # a name missing from old rows is not another machine
    assert hardware(xeon, epyc).endswith("(MIXED: 2 kinds of GPU or processor; speed and memory differ between "
                                         "them, and so can a 4-bit run's quality: compare runs of one machine)")
    both = hardware(xeon, epyc)
    assert "Intel(R) Xeon(R) Processor (2 CPUs)" in both and "AMD EPYC 9R14 (2 CPUs)" in both
