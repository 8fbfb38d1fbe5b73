"""The report at the scale of a week of sweeps: the faster arithmetic gives the same numbers as
before, to the last bit, and what a large table leaves out (pairs it does not test, configurations
its figures do not draw) is said in the report's text. experiments/bench_report_scale.py times it.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from harness.config import ReportConfig
from harness.report import build_report
from harness.report.counts import BatchCounts
from harness.report.example_tests import Predictions, Resampler
from harness.report.family import ALL_PAIRS_UP_TO
from harness.report.mcnemar import _binomial
from harness.report.pairwise import row_means
from harness.report.shown import ALL_DRAWN_UP_TO, MAX_SHOWN
from harness.report.stats import compare, mean_interval
from harness.results.store import open_store
from report_fixture import fixture_curves, fixture_row, make_prediction_store, prediction_row


def test_seed_level_tests_are_scipys_to_the_last_bit():
    rng = np.random.default_rng(0)
    for trial in range(400):
        n_a = int(rng.integers(2, 12))
        n_b = n_a if trial % 2 == 0 else int(rng.integers(2, 12))
        scale = rng.choice([1e-3, 1.0, 1e6])
        a = {s: float(rng.random() * scale) for s in range(n_a)}
        b = {s + (0 if trial % 2 == 0 else 100): float(rng.random() * scale) for s in range(n_b)}
        c, x, y = compare(a, b), np.array(list(a.values())), np.array(list(b.values()))
        res = stats.ttest_rel(y, x) if trial % 2 == 0 else stats.ttest_ind(y, x, equal_var=False)
        ci = res.confidence_interval(0.95)
        assert (c.p, c.ci_low, c.ci_high) == (res.pvalue, ci.low, ci.high)
        low, high = stats.t.interval(0.95, n_a - 1, loc=x.mean(), scale=x.std(ddof=1) / np.sqrt(n_a))
        assert mean_interval(x)[2:] == (low, high)


@pytest.mark.parametrize("k, n", [(2, 112), (3, 1066), (12, 300)])
def test_runs_resampled_together_score_as_runs_resampled_alone(monkeypatch, k, n):
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, n)
    runs = [Predictions(y, np.where(rng.random(n) < 0.7, y, rng.integers(0, k, n)), None, k + i % 2, f"r{i}")
            for i in range(5)] + [Predictions(y, np.zeros(n, int), None, k, "majority")]
    together = Resampler(999)
    together.prepare(runs)
    monkeypatch.setattr(BatchCounts, "fits", staticmethod(lambda *args: False))  # one sparse product per run
    alone = Resampler(999)
    alone.prepare(runs)
    for p in runs:
        for metric in ("accuracy", "f1_macro"):
            assert np.array_equal(together.values(p, metric), alone.values(p, metric))


def test_means_over_whole_rows_are_numpys_row_means():
    x = np.random.default_rng(1).random((500, 40)) - 0.5
    for seeds in range(1, 40):
        assert np.array_equal(row_means(np.ascontiguousarray(x[:, :seeds].T)), x[:, :seeds].mean(axis=1))


def test_the_binomial_test_behind_mcnemar_is_scipys():
    for m in (1, 2, 7, 40, 333, 2001):
        for c in sorted({0, 1, m // 3, m // 2, m - 1, m}):
            p, low, high = _binomial(c, m, "two-sided", 0.95)
            ci = stats.binomtest(c, m, 0.5).proportion_ci(0.95, method="exact")
            assert p == pytest.approx(stats.binomtest(c, m, 0.5).pvalue, rel=1e-9)
            assert (low, high) == pytest.approx((ci.low, ci.high), abs=1e-9)
            greater = stats.binomtest(c, m, 0.5, alternative="greater").pvalue
            assert _binomial(c, m, "greater", 0.95)[0] == pytest.approx(greater, rel=1e-9)


METHODS = ("lora", "dora", "qlora", "vera", "adalora")
RANKS = (1, 2, 4, 8, 16, 32)


@pytest.fixture(scope="module")
def wide_store(tmp_path_factory):
    """One table of 30 configurations (5 methods x 6 ranks), two seeds each, no predictions."""
    path = tmp_path_factory.mktemp("wide") / "results.sqlite"
    store, i = open_store(path), 0
    for method in METHODS:
        for r in RANKS:
            for seed in (0, 1):
                row = fixture_row(method, seed, i)
                cfg = json.loads(row["config_json"])
                cfg["method"]["r"] = r
                row.update(r=r, run_id=f"{method}-r{r}-{seed}", config_hash=f"h-{method}-r{r}-{seed}",
                           config_json=json.dumps(cfg), accuracy=row["accuracy"] + 0.002 * np.log2(r) + 0.001 * (i % 7),
                           peak_memory_bytes=row["peak_memory_bytes"] + r * 2**20)
                store.record(row, fixture_curves(method, seed))
                i += 1
    return path


def test_a_table_of_many_configurations_tests_the_pairs_it_prints_and_says_so(wide_store, tmp_path):
    claim = "dora r=2>vera r=4"  # neither is the other's reference: tested because it is claimed
    options = ReportConfig(pdf=False, formats=["md"], claims=[claim])
    report = build_report(wide_store, tmp_path / "out", options=options)
    a, key = report.analysis, ("synthetic", "tiny_bert")
    labels = a.labels(*key)
    assert len(labels) == len(METHODS) * len(RANKS) > ALL_PAIRS_UP_TO > ALL_DRAWN_UP_TO > MAX_SHOWN
    tested = {frozenset(p) for p in zip(a.pairs.base, a.pairs.other)}
    assert tested == a.families[key].pairs and len(tested) < len(labels) * (len(labels) - 1) / 2
    for label in labels:  # every configuration against its reference
        ref = a.references[(*key, label)]
        assert label == ref or frozenset((label, ref)) in tested
        assert label == ref or a.versus_reference(*key, label, "accuracy") is not None
    assert frozenset(("dora r=2", "vera r=4")) in tested
    assert any(s.startswith('"dora r=2 beats vera r=4 on accuracy"')
               for s in report.findings[key]["Claims checked"])
    text = (tmp_path / "out" / "report.md").read_text()
    assert f"Holm-corrected per metric over the {len(tested)} pairs tested" in text
    assert f"Tables with more than {ALL_PAIRS_UP_TO} configurations (synthetic — tiny_bert) do not test every pair" in text
    assert (f"too many to tell apart in one figure: a figure with one marker, bar or line per configuration "
            f"draws {MAX_SHOWN} of them") in text


def test_the_runs_asked_for_are_read_by_their_key(tmp_path, monkeypatch):
    from harness.results.backends import common

    runs = [prediction_row(m, s, 0.8, n=50) for m in ("lora", "dora") for s in (0, 1)]
    store = make_prediction_store(tmp_path / "s.sqlite", runs)
    everything = store.predictions()
    assert list(everything) == [row["run_id"] for row, _ in runs]
    monkeypatch.setattr(common, "IDS_PER_QUERY", 2)  # three queries for these five ids
    wanted = [runs[3][0]["run_id"], "no-such-run", runs[0][0]["run_id"], runs[3][0]["run_id"], runs[2][0]["run_id"]]
    got = store.predictions(wanted)
    assert list(got) == [wanted[0], wanted[2], wanted[4]]
    for run_id, arrays in got.items():
        assert {k: v.tolist() for k, v in arrays.items()} == {k: v.tolist() for k, v in everything[run_id].items()}
    assert store.predictions([]) == {} and store.predictions(wanted, split="validation") == {}
