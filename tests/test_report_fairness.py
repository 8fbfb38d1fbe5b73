"""Fair comparisons in the report: final runs only by default (--stage), each configuration's
learning rate (and a loud flag where one row mixes rates), the learning-rate search figure, and the
equal-budget check under every table. All on fixture stores with known values."""
from __future__ import annotations

import numpy as np
import pytest
from pypdf import PdfReader
from report_fixture import (ACCURACY, BUDGET, CHOSEN, FINAL_ACCURACY, SEARCH, fixture_row,
                            make_fixture_store, make_tuned_fixture_store, tuned_rows)

from harness.config import ReportConfig
from harness.report import ReportError, Selection, build_report, plots
from harness.report.__main__ import main as report_main
from harness.report.budget import DIFFER, EQUAL, PER_SEED, UNKNOWN
from harness.report.compare import stat
from harness.report.search import searches
from harness.report.select import search_runs, select_runs
from harness.report.tables import comparison_table
from harness.results import load
from harness.results.store import open_store

KEY = ("synthetic", "tiny_bert")
MD_ONLY = ReportConfig(pdf=False, formats=["md", "html", "tex", "csv"])
EQUAL_SENTENCE = ("All 15 runs had the same budget: 24 optimizer steps, 192 examples, 6,400 tokens "
                  "(data: 64 train, 32 validation, 200 test examples).")


def pdf_text(path) -> str:
    return " ".join(" ".join((page.extract_text() or "").split()) for page in PdfReader(path).pages)


def lr_cell(report, label: str, stage_table=None) -> str:
    table = stage_table or comparison_table(report.analysis, *KEY)
    col = table.headers.index("LR")
    row = next(r for r in table.rows if r[0].mean.replace(" (reference)", "") == label)
    return row[col].text()


@pytest.fixture()
def tuned_store(tmp_path):
    rows = tuned_rows()
    # a protocol=fixed run (empty stage) next to the tuned ones: reported as today
    rows += [{**fixture_row("vera", 0, 0), "run_id": "vera-fixed"}]
    make_tuned_fixture_store(tmp_path / "tuned.sqlite", rows)
    return tmp_path / "tuned.sqlite"


def write_store(path, rows):
    store = open_store(path)
    for row in rows:
        store.record(row, [])
    return path


def fixed_rows(**changes) -> list[dict]:
    """The fixed fixture's finished rows, each passed through ``changes[column](row)``."""
    rows = [fixture_row(m, s, i) for i, (m, s) in enumerate((m, s) for m in ACCURACY for s in ACCURACY[m])]
    return [{**r, **{k: f(r) for k, f in changes.items()}} for r in rows]


# --- 1. final runs by default; --stage selects ------------------------------------------------

def test_search_trials_never_enter_the_default_aggregates_tables_or_tests(tuned_store, tmp_path):
    report = build_report(tuned_store, tmp_path / "out", options=MD_ONLY)
    per_run = report.analysis.per_run
    assert sorted(per_run.stage.fillna("fixed")) == ["final"] * 6 + ["fixed"]  # the fixed run is kept
    for method, accuracy in FINAL_ACCURACY.items():
        s = stat(report.analysis, *KEY, method, "accuracy")
        assert s["n"] == 3 and s["mean"] == pytest.approx(np.mean(list(accuracy.values())))
        assert s["seeds"] == "0,1,2"
    dora = report.analysis.versus_reference(*KEY, "dora", "accuracy")
    assert dora.test == "paired t-test" and dora.diff == pytest.approx(0.031)
    assert set(report.analysis.pairs.n_base) | set(report.analysis.pairs.n_other) <= {1, 3}
    assert "0.1000" not in (tmp_path / "out" / "tables" / "synthetic__tiny_bert.md").read_text()
    md = (tmp_path / "out" / "report.md").read_text()
    assert "6 search trials left out of every aggregate" in md and "6 final" in md and "1 fixed" in md


def test_stage_option_includes_search_trials_explicitly(tuned_store, tmp_path, capsys):
    runs = load(tuned_store, decode=False)
    finished, _ = select_runs(runs, Selection(stage="search"))
    assert set(finished.stage) == {"search"} and len(finished) == 6
    finished, _ = select_runs(runs, Selection(stage="all"))
    assert len(finished) == 13
    finished, _ = select_runs(runs, Selection())
    assert "search" not in set(finished.stage.dropna()) and len(finished) == 7
    assert len(search_runs(runs, Selection({"method": ["lora"]}))) == 3  # whatever the stage
    assert Selection(stage="all").describe() == "stage=all" and Selection().describe() == "all runs"
    with pytest.raises(ValueError, match="stage must be one of final, search, all"):
        Selection(stage="finals")

    out = tmp_path / "search"
    assert report_main(["--store", str(tuned_store), "--out", str(out), "--stage", "search",
                        "--format", "md", "--no-pdf"]) == 0
    md = (out / "tables" / "synthetic__tiny_bert.md").read_text()
    assert "| lora (reference) | 3 | MIXED: 0.001 (1 run), 0.002 (1 run), 0.004 (1 run) | **0.1000 ± 0.0000**" in md
    assert "| vera" not in md  # the fixed run is no search trial
    assert report_main(["--store", str(tuned_store), "--out", str(tmp_path / "all"), "--stage", "all",
                        "--format", "md", "--no-pdf"]) == 0
    md = (tmp_path / "all" / "tables" / "synthetic__tiny_bert.md").read_text()
    assert "| lora (reference) | 6 | MIXED: 0.001 (1 run), 0.002 (4 runs), 0.004 (1 run) |" in md
    assert "selection: stage=all" in (tmp_path / "all" / "report.md").read_text()
    with pytest.raises(SystemExit) as exc:
        report_main(["--store", str(tuned_store), "--stage", "finals"])
    assert exc.value.code == 2 and "invalid choice: 'finals'" in capsys.readouterr().err


def test_a_store_of_search_trials_only_says_how_to_report_them(tmp_path):
    path = tmp_path / "s.sqlite"
    make_tuned_fixture_store(path, [r for r in tuned_rows() if r["stage"] == "search"])
    with pytest.raises(ReportError, match=r"no runs in .* match the selection \(all runs\); 6 search "
                                          r"trials do \(--stage search or --stage all\)"):
        build_report(path, tmp_path / "out", options=MD_ONLY)
    report = build_report(path, tmp_path / "out", Selection(stage="search"), MD_ONLY)
    assert len(report.analysis.per_run) == 6


# --- 2. the learning-rate column ------------------------------------------------------------

def test_each_configuration_shows_the_rate_its_runs_trained_at(tuned_store, tmp_path):
    report = build_report(tuned_store, tmp_path / "out", options=MD_ONLY)
    assert lr_cell(report, "lora") == "0.002" and lr_cell(report, "dora") == "0.001"
    assert lr_cell(report, "vera") == "0.01"
    md = (tmp_path / "out" / "tables" / "synthetic__tiny_bert.md").read_text()
    assert "| Method | n | LR | Accuracy ↑ |" in md and "MIXED" not in md
    rates = report.findings[KEY]["Learning rates"]
    assert rates[0] == ("dora: lr 0.001 (all 3 runs); searched 3 rates (0.001, 0.002, 0.004) on "
                        "validation accuracy, seed 0; chose 0.001 (validation accuracy 0.7600), the "
                        "lowest rate searched: a better one may lie below the grid (widen "
                        "protocol.lr_factors or set protocol.lr_grid).")
    assert rates[1].startswith("lora: lr 0.002 (all 3 runs); searched 3 rates") and "chose 0.002" in rates[1]
    assert rates[2] == "vera: lr 0.01 (all 1 run)."
    csv = (tmp_path / "out" / "tables" / "synthetic__tiny_bert.csv").read_text()
    assert ",lr,lr_mixed," in csv.splitlines()[0]


def test_a_row_whose_runs_do_not_share_one_rate_is_flagged_never_silently_averaged(tmp_path):
    # a fixed-protocol store where dora's seed 2 trained at another rate
    path = write_store(tmp_path / "s.sqlite", fixed_rows(
        lr=lambda r: 4e-3 if (r["method"], r["seed"]) == ("dora", 2) else r["lr"]))
    report = build_report(path, tmp_path / "out", options=ReportConfig(formats=["md", "html"]))
    assert lr_cell(report, "dora") == "MIXED: 0.002 (2 runs), 0.004 (1 run)"
    assert lr_cell(report, "lora") == "0.002"
    line = next(s for s in report.findings[KEY]["Learning rates"] if s.startswith("dora"))
    assert line.startswith("dora: MIXED learning rates — its 3 runs trained at 0.002 (2 runs), "
                           "0.004 (1 run); its row averages over rates")
    note = "MIXED: the runs of dora did NOT share one learning rate"
    for name in ("tables/synthetic__tiny_bert.md", "tables/synthetic__tiny_bert.html", "report.md"):
        text = (tmp_path / "out" / name).read_text()
        assert note in text and "MIXED: 0.002 (2 runs), 0.004 (1 run)" in text
    assert note in pdf_text(report.pdf)


# --- 3. the search figure -------------------------------------------------------------------

def test_the_search_figure_is_written_when_search_trials_exist(tuned_store, tmp_path, monkeypatch):
    drawn = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append((path.name, fig)) or save(fig, path))
    report = build_report(tuned_store, tmp_path / "out", options=ReportConfig(formats=["md"]))
    path = tmp_path / "out" / "figures" / "synthetic__tiny_bert_lr_search.png"
    assert path.is_file() and path in report.files
    fig = dict(drawn)[path.name]
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "validation accuracy (↑ better)"
    lines = {l.get_label(): l for l in ax.get_lines()}
    for method, trials in SEARCH.items():
        assert list(lines[method].get_xdata()) == sorted(trials)
        assert list(lines[method].get_ydata()) == [trials[lr] for lr in sorted(trials)]
    stars = [(l.get_xdata()[0], l.get_ydata()[0]) for l in ax.get_lines()
             if l.get_marker() == "*" and len(l.get_xdata())]
    assert sorted(stars) == sorted((CHOSEN[m], SEARCH[m][CHOSEN[m]]) for m in SEARCH)
    assert "chosen rate" in [t.get_text() for t in ax.get_legend().get_texts()]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "](figures/synthetic__tiny_bert_lr_search.png)" in md and "*Learning-rate search" in md
    assert "Learning-rate search (protocol=tuned)" in pdf_text(report.pdf)


def test_no_search_figure_without_search_trials(tmp_path):
    make_fixture_store(tmp_path / "s.sqlite")
    report = build_report(tmp_path / "s.sqlite", tmp_path / "out", options=MD_ONLY)
    assert not list((tmp_path / "out" / "figures").glob("*lr_search*"))
    assert not any("lr_search" in p.name for p in report.files)
    assert "Learning-rate search" not in (tmp_path / "out" / "report.md").read_text()


def test_the_chosen_rate_without_final_runs_follows_the_protocol(tmp_path):
    rows = [r for r in tuned_rows() if r["stage"] == "search"]
    failed = {k: v for k, v in rows[0].items() if k in ("sweep", "created_at", "method", "model", "task",
                                                        "quant", "r", "seed", "stage", "search_id",
                                                        "config_json", "schema_version")}
    rows.append({**failed, "run_id": "lora-search-8e-3", "config_hash": "h-lora-search-8e-3", "lr": 8e-3,
                 "status": "failed", "error": "FloatingPointError: loss is nan"})
    make_tuned_fixture_store(tmp_path / "s.sqlite", rows)
    runs = load(tmp_path / "s.sqlite", decode=False)
    found = {s.label: s for s in searches(runs, runs)}
    assert found["lora"].chosen == 2e-3 and found["lora"].chosen_by == "best validation value"
    assert found["lora"].failed == [8e-3] and list(found["lora"].points.lr) == sorted(SEARCH["lora"])
    assert found["lora"].sentence() == (
        "searched 3 rates (0.001, 0.002, 0.004) on validation accuracy, seed 0; 1 trial failed "
        "(lr 0.008); chose 0.002 (validation accuracy 0.7500); no final runs yet")
    assert found["dora"].chosen == 1e-3  # a tie: the lower rate
    assert "no final runs yet" in found["dora"].sentence()
    assert "the lowest rate searched" in found["dora"].sentence()
    assert "rate searched" not in found["lora"].sentence()  # 0.002: inside the grid


# --- 4. equal budgets -----------------------------------------------------------------------

def test_equal_budgets_are_stated_under_the_table_and_in_the_findings(tmp_path):
    make_fixture_store(tmp_path / "s.sqlite")
    report = build_report(tmp_path / "s.sqlite", tmp_path / "out", options=ReportConfig())
    assert report.findings[KEY]["Equal budgets"] == [EQUAL_SENTENCE]
    check = report.analysis.budget(*KEY)
    assert check.status == EQUAL and check.equal
    for name in ("tables/synthetic__tiny_bert.md", "tables/synthetic__tiny_bert.html", "report.md"):
        assert f"Budget: {EQUAL_SENTENCE}" in (tmp_path / "out" / name).read_text()
    assert "All 15 runs had the same budget: 24 optimizer steps, 192 examples, 6,400 tokens" in \
        (tmp_path / "out" / "tables" / "synthetic__tiny_bert.tex").read_text()
    assert f"Budget: {EQUAL_SENTENCE}" in pdf_text(report.pdf)


def test_unequal_budgets_name_the_methods_that_differ_and_how(tmp_path):
    path = write_store(tmp_path / "s.sqlite", fixed_rows(
        optimizer_steps=lambda r: 12 if r["method"] == "dora" else r["optimizer_steps"],
        train_examples_seen=lambda r: 96 if r["method"] == "dora" else r["train_examples_seen"],
        n_test=lambda r: 100 if r["method"] == "full" else r["n_test"]))
    report = build_report(path, tmp_path / "out", options=ReportConfig(formats=["md"]))
    sentence = ("The 15 runs did NOT have the same budget: optimizer steps differ (dora 12; adalora, "
                "full, lora, qlora, vera 24); training examples seen differ (dora 96; adalora, full, "
                "lora, qlora, vera 192); test-set sizes differ (full 100; adalora, dora, lora, qlora, "
                "vera 200). Differences between these configurations may come from their budgets.")
    assert report.findings[KEY]["Equal budgets"] == [sentence]
    assert report.analysis.budget(*KEY).status == DIFFER and not report.analysis.budget(*KEY).equal
    assert f"Budget: {sentence}" in (tmp_path / "out" / "report.md").read_text()
    text = pdf_text(report.pdf)
    assert "did NOT have the same budget: optimizer steps differ (dora 12;" in text
    assert "had the same budget:" not in text


def test_a_store_without_budget_columns_has_an_unknown_budget(tmp_path):
    path = write_store(tmp_path / "s.sqlite", fixed_rows(**{c: (lambda r: None) for c in BUDGET}))
    report = build_report(path, tmp_path / "out", options=ReportConfig(formats=["md"]))
    sentence = report.findings[KEY]["Equal budgets"][0]
    assert sentence == ("The budget is unknown for 15 of 15 runs (adalora, dora, full, lora, qlora, "
                        "vera): their store predates the optimizer_steps, train_examples_seen and "
                        "train_tokens columns, so equal budgets are not confirmed. Data sizes are "
                        "equal (data: 64 train, 32 validation, 200 test examples).")
    assert report.analysis.budget(*KEY).status == UNKNOWN and not report.analysis.budget(*KEY).equal
    md = (tmp_path / "out" / "report.md").read_text()
    assert f"Budget: {sentence}" in md and "had the same budget" not in md
    assert "budget is unknown for 15 of 15 runs" in pdf_text(report.pdf)


def test_tokens_that_vary_with_the_seed_are_matched_seed_for_seed(tmp_path):
    path = write_store(tmp_path / "s.sqlite", fixed_rows(train_tokens=lambda r: 6400 + 10 * r["seed"]))
    report = build_report(path, tmp_path / "out", Selection({"method": ["lora", "dora", "vera"]}),
                          ReportConfig(formats=["md"], pdf=False))
    check = report.analysis.budget(*KEY)
    assert check.status == PER_SEED and check.equal
    assert check.sentence == ("All 7 runs had the same budget on each seed: 24 optimizer steps, 192 "
                              "examples; training tokens vary with the seed's data split (6,400 to "
                              "6,420) but are equal across configurations on every seed (data: 64 "
                              "train, 32 validation, 200 test examples).")
    # full ran on seeds 3 and 4 only: its tokens cannot be matched seed for seed
    report = build_report(path, tmp_path / "all", options=ReportConfig(formats=["md"], pdf=False))
    check = report.analysis.budget(*KEY)
    assert check.status == DIFFER and "full ran only on seeds no other configuration ran" in check.sentence
    assert "full 6,430 to 6,440; adalora, dora, lora, qlora 6,400 to 6,420)" in check.sentence
