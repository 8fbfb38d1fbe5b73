"""A report from a store filled by real tiny runs, and the notebook executed against it."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from pypdf import PdfReader

from conftest import tiny_config
from harness.report import build_report
from harness.report.stats import TWO_LEVEL
from harness.job.runner import run_job
from harness.results import load
from harness.results.store import open_store

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "report.ipynb"


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    store_path = tmp_path_factory.mktemp("tiny") / "results.sqlite"
    for method in ("lora", "dora"):
        for seed in (0, 1):
            row = run_job(tiny_config(store_path, f"method={method}", f"seed={seed}"))
            assert row["status"] == "finished"
    good = load(store_path, decode=False).iloc[0].to_dict()
    open_store(store_path).record(
        {k: good[k] for k in ("sweep", "created_at", "method", "model", "task", "quant", "config_json",
                              "schema_version")}
        | {"run_id": "broken", "seed": 7, "r": 8, "config_hash": "broken", "status": "failed",
           "error": "WorkerError: worker process killed by signal 9 (out of memory?)"}, [])
    return store_path


def test_report_from_tiny_runs_aggregates_what_was_recorded(tiny_store, tmp_path):
    report = build_report(tiny_store, tmp_path / "out")
    runs = load(tiny_store, status="finished", decode=False)
    agg = report.analysis.agg
    for method, g in runs.groupby("method"):
        row = agg[(agg.label == method) & (agg.metric == "accuracy")].iloc[0]
        assert row["n"] == 2 and row["mean"] == pytest.approx(g.accuracy.mean())
        assert row["std"] == pytest.approx(np.std(g.accuracy, ddof=1))
        mem = agg[(agg.label == method) & (agg.metric == "peak_memory_mib")].iloc[0]
        assert mem["mean"] == pytest.approx(g.peak_memory_bytes.mean() / 2**20)
    dora = report.analysis.versus_reference(runs.task[0], runs.model[0], "dora", "accuracy")
    # real runs keep their test predictions: two seeds a side, tested on seeds and examples
    assert dora.test == TWO_LEVEL and dora.n_seeds == 2 and dora.n_examples == 2 * int(runs.n_test[0])
    assert dora.same_config and dora.same_budget and not dora.versions
    assert report.analysis.labels(runs.task[0], runs.model[0]) == ["dora", "lora"]  # seeds pooled, nothing else
    assert report.analysis.with_predictions == set(runs.run_id)
    text = " ".join(p.extract_text() for p in PdfReader(report.pdf).pages)
    assert "killed by signal 9" in text and "2. Findings" in text
    md = (tmp_path / "out" / "report.md").read_text()
    lora_mean = agg[(agg.label == "lora") & (agg.metric == "accuracy")].iloc[0]["mean"]
    assert f"{lora_mean:.4f}" in md


def test_notebook_reproduces_the_main_table_and_plot(tiny_store, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_STORE", str(tiny_store))
    monkeypatch.setenv("HARNESS_FIGURES", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(NOTEBOOK.parents[1]), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    runs = load(tiny_store, status="finished", decode=False)
    assert "| lora (reference) |" in markdown and "| majority class |" in markdown
    assert f"{runs[runs.method == 'dora'].accuracy.mean():.4f}" in markdown
    assert "1 failed (left out)" in "".join(o.get("text", "") for o in outputs)
    assert (tmp_path / "pareto_memory.png").stat().st_size > 10_000
