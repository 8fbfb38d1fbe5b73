"""A report from a store with known values: every format is written, the PDF opens, has its
sections and carries the table values as text; the CLI and the end-of-sweep hook work."""
from __future__ import annotations

import pandas as pd
import pytest
from omegaconf import OmegaConf
from pypdf import PdfReader
from report_fixture import make_fixture_store

from harness.config import ConfigError, ReportConfig
from harness.report import build_report
from harness.report.__main__ import main as report_main
from harness.report.hook import SweepReport

SECTIONS = ["1. Setup", "2. Findings", "3. Tables", "4. Figures", "5. Failed runs",
            "6. How the statistics were computed"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    make_fixture_store(root / "results.sqlite")
    return build_report(root / "results.sqlite", root / "out",
                        options=ReportConfig(claims=["qlora>lora", "full>dora:accuracy"]))


def pdf_text(path) -> str:
    return " ".join(" ".join((page.extract_text() or "").split()) for page in PdfReader(path).pages)


def test_pdf_has_sections_tables_as_text_findings_and_failures(report):
    text = pdf_text(report.pdf)
    for heading in SECTIONS:
        assert heading in text
    for value in ("0.8100", "0.8410", "0.8067", "0.8900", "0.5000", "majority class", "1,000,000"):
        assert value in text  # table cells are text, not pictures
    assert "RuntimeError: CUDA out of memory" in text
    assert "lora (reference)" in text and "paired t-test" in text and "Welch t-test" in text
    assert "\"qlora beats lora on accuracy\" is NOT supported: qlora − lora = -0.0033" in text
    assert "adalora is NOT shown to beat the majority class" in text
    assert "Pareto front" in text and "With a budget of at least" in text
    assert "0123456789ab" in text and "torch 2.0" in text  # setup: commit and versions


def test_findings_judge_claims_against_the_data(report):
    f = report.findings[("synthetic", "tiny_bert")]
    claims = " ".join(f["Claims checked"])
    assert '"full beats dora on accuracy" is NOT supported' in claims
    assert '"qlora beats lora on accuracy" is NOT supported' in claims
    assert any("dora vs lora on accuracy" in s and "— significant" in s
               for s in f["Differences from the reference"])
    assert "peaks earliest for full" in f["Learning curves"][0]


def test_every_table_format_is_written_with_best_values_marked(report):
    tables = report.out_dir / "tables"
    md = (tables / "synthetic__tiny_bert.md").read_text()
    assert "**0.8900† ± 0.0141**" in md and "| majority class |" in md
    tex = (tables / "synthetic__tiny_bert.tex").read_text()
    assert r"\textbf{0.8900\dag{} $\pm$ 0.0141}" in tex and r"Accuracy $\uparrow$" in tex
    html = (tables / "synthetic__tiny_bert.html").read_text()
    assert "<strong>0.8900† ± 0.0141</strong>" in html
    csv = pd.read_csv(tables / "synthetic__tiny_bert.csv")
    row = csv[(csv.label == "dora") & (csv.metric == "accuracy")].iloc[0]
    assert row["mean"] == pytest.approx(0.841) and row["test"] == "paired t-test" and row["significant"]
    assert set(csv.higher_is_better[csv.metric == "peak_memory_mib"]) == {False}
    assert (report.out_dir / "failed_runs.csv").is_file()
    figures = {p.name for p in (report.out_dir / "figures").iterdir()}
    assert {"synthetic__tiny_bert_pareto_memory.png", "synthetic__tiny_bert_curves.png",
            "synthetic__tiny_bert_quant.png", "synthetic__tiny_bert_cost.png"} <= figures


def test_cli_selects_and_fails_with_one_line(tmp_path, capsys):
    make_fixture_store(tmp_path / "s.sqlite")
    out = tmp_path / "out"
    assert report_main(["--store", str(tmp_path / "s.sqlite"), "--out", str(out),
                        "--method", "lora,dora", "--format", "md", "--no-pdf"]) == 0
    assert not (out / "report.pdf").exists() and (out / "tables" / "synthetic__tiny_bert.md").exists()
    assert "qlora" not in (out / "tables" / "synthetic__tiny_bert.md").read_text()
    only_failed = tmp_path / "failed"
    assert report_main(["--store", str(tmp_path / "s.sqlite"), "--out", str(only_failed), "--seed", "9",
                        "--no-pdf"]) == 0
    assert "CUDA out of memory" in (only_failed / "report.md").read_text()
    assert report_main(["--store", str(tmp_path / "s.sqlite"), "--format", "md,xls"]) == 2
    assert report_main(["--store", str(tmp_path / "s.sqlite"), "--task", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: report.formats: unknown ['xls']; allowed: md, csv, tex, html",
                   f"error: no runs in {tmp_path / 's.sqlite'} match the selection (task=nope)"]


def test_report_config_rejects_bad_values_with_one_line():
    with pytest.raises(ConfigError, match="report.correction must be one of holm, none"):
        ReportConfig(correction="bonferroni")
    with pytest.raises(ConfigError, match=r"report.alpha must be in \(0, 1\)"):
        ReportConfig(alpha=5)


def test_end_of_sweep_hook_writes_the_sweeps_report_unless_disabled(tmp_path):
    make_fixture_store(tmp_path / "s.sqlite")
    cfg = {"store": {"url": str(tmp_path / "s.sqlite"), "sweep": "fixture"},
           "hydra": {"sweep": {"dir": str(tmp_path / "sweep")}},
           "report": {**vars(ReportConfig()), "pdf": False}}
    SweepReport().on_multirun_end(OmegaConf.create({**cfg, "report": {**cfg["report"], "enabled": False}}))
    assert not (tmp_path / "sweep").exists()
    SweepReport().on_multirun_end(OmegaConf.create(cfg))
    assert (tmp_path / "sweep" / "report" / "report.md").is_file()


def test_rank_sweep_gets_labels_per_rank_and_its_own_figure(tmp_path):
    from report_fixture import fixture_row

    from harness.results.store import open_store

    store = open_store(tmp_path / "ranks.sqlite")
    for r, acc in ((4, 0.78), (8, 0.80), (16, 0.81)):
        for seed in (0, 1):
            row = fixture_row("lora", seed, 0)
            store.record({**row, "run_id": f"r{r}-{seed}", "r": r, "config_hash": f"r{r}-{seed}",
                          "accuracy": acc + 0.01 * seed, "trainable_params": 1000 * r}, [])
    report = build_report(tmp_path / "ranks.sqlite", tmp_path / "out",
                          options=ReportConfig(pdf=False, formats=["md"]))
    assert report.analysis.labels("synthetic", "tiny_bert") == ["lora r=4", "lora r=8", "lora r=16"]
    assert (tmp_path / "out" / "figures" / "synthetic__tiny_bert_rank.png").is_file()
    # several reference configurations: each is its own reference, none is compared with another
    assert report.analysis.references[("synthetic", "tiny_bert", "lora r=4")] == "lora r=4"
