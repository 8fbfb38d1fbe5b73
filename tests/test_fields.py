"""The field registry: one declaration of a column reaches the store, the report, the terminal
table, the list command and the metric directions."""
from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
from report_fixture import fixture_row

from harness import fields
from harness.fields import Field, better, declare, higher_is_better
from harness.report.aggregate import AGGREGATED, METRIC_BY_NAME, METRICS, aggregate, metric_frame
from harness.results import load
from harness.results.__main__ import LIST_COLUMNS
from harness.results.__main__ import main as results_cli
from harness.results.store import SCHEMA_VERSION, StoreError, check_row, open_store

# What the terminal comparison table showed before the registry, exactly.
# The terminal table as it was hard-coded, plus the learning rate each run trained at.
TERMINAL_TABLE = [("method", "method"), ("quant", "quant"), ("r", "r"), ("seed", "seed"),
                  ("lr", "lr"), ("accuracy", "acc"), ("f1_macro", "f1_macro"), ("majority_accuracy", "majority"),
                  ("trainable_params", "trainable"), ("peak_memory_mib", "peak_MiB"),
                  ("train_samples_per_s", "samples/s"), ("infer_latency_ms", "latency_ms"),
                  ("wall_s", "wall_s")]
OLD_HIGHER_IS_BETTER = {
    "accuracy": True, "f1_macro": True, "f1_micro": True, "eval_loss": False,
    "majority_accuracy": True, "trainable_params": False, "total_params": False,
    "trainable_pct": False, "adapter_bytes": False, "peak_memory_bytes": False,
    "train_samples_per_s": True, "train_tokens_per_s": True, "infer_latency_ms": False,
    "infer_latency_merged_ms": False, "wall_s": False,
    "majority_f1_macro": True, "n_truncated_train": False, "n_truncated_validation": False,
    "n_truncated_test": False,
}


@pytest.fixture
def energy():
    """A metric declared by a test: energy in joules, lower is better, shown in kJ."""
    field = declare(Field("test_energy_j", "real", unit="J", higher_is_better=False,
                          report="Energy kJ", report_scale=1000.0, report_name="test_energy_kj",
                          digits=3, terminal="energy_kJ", listed=True, doc="energy of the run"))
    yield field
    fields.remove(field.name)


def test_the_registry_reproduces_what_was_hard_coded():
    assert fields.terminal_columns() == TERMINAL_TABLE
    assert fields.selectable_metrics() == ["accuracy", "f1_macro", "f1_micro", "eval_loss",
                                           "exact_match", "normalized_match", "perplexity"]
    directions = fields.metric_directions()
    assert {k: directions[k] for k in OLD_HIGHER_IS_BETTER} == OLD_HIGHER_IS_BETTER
    assert [(m.name, m.label, m.source, m.scale, m.digits, m.quality) for m in METRICS] == [
        ("accuracy", "Accuracy", "accuracy", 1.0, 4, True),
        ("f1_macro", "Macro-F1", "f1_macro", 1.0, 4, True),
        ("normalized_match", "Normalized match", "normalized_match", 1.0, 4, False),
        ("perplexity", "Perplexity", "perplexity", 1.0, 4, False),
        ("trainable_params", "Trainable params", "trainable_params", 1.0, 3, False),
        ("trainable_pct", "Trainable %", "trainable_pct", 1.0, 3, False),
        ("adapter_mib", "Adapter MiB", "adapter_bytes", 2**20, 3, False),
        ("peak_memory_mib", "Peak memory MiB", "peak_memory_bytes", 2**20, 4, False),
        ("energy_j", "Energy J", "energy_j", 1.0, 4, False),
        ("train_samples_per_s", "Train samples/s", "train_samples_per_s", 1.0, 3, False),
        ("train_tokens_per_s", "Train tokens/s", "train_tokens_per_s", 1.0, 3, False),
        ("achieved_tflops", "TFLOP/s", "achieved_tflops", 1.0, 3, False),  # MFU (harness.training.flops)
        ("mfu", "MFU", "mfu", 1.0, 3, False),
        ("train_flops", "Train FLOPs", "train_flops", 1.0, 3, False),
        ("infer_latency_ms", "Latency unmerged ms", "infer_latency_ms", 1.0, 3, False),
        ("infer_latency_merged_ms", "Latency merged ms", "infer_latency_merged_ms", 1.0, 3, False),
        ("gen_tokens_per_s", "Gen tokens/s", "gen_tokens_per_s", 1.0, 3, False),
        ("gen_ttft_ms", "TTFT ms", "gen_ttft_ms", 1.0, 3, False),
        ("forgetting", "Forgetting", "forgetting", 1.0, 3, False),  # causal LMs (harness.run.model_change)
        ("wall_s", "Wall time s", "wall_s", 1.0, 3, False),
    ]
    assert [m.name for m in AGGREGATED] == [m.name for m in METRICS] + ["majority_accuracy"]
    assert [f.name for f in fields.FIELDS.values() if f.required] == [
        "run_id", "created_at", "status", "method", "model", "task", "quant", "seed", "config_hash",
        "config_json", "schema_version"]


def test_better_follows_each_metrics_direction():
    assert better("accuracy", 0.8, None) and better("accuracy", 0.8, 0.7)
    assert not better("accuracy", 0.7, 0.8) and not better("accuracy", 0.7, 0.7)
    assert better("eval_loss", 0.3, 0.4) and not better("eval_loss", 0.4, 0.3)
    with pytest.raises(ValueError, match="not a metric"):
        better("seed", 1, 0)
    with pytest.raises(KeyError, match="unknown result field 'acuracy'; did you mean 'accuracy'"):
        higher_is_better("acuracy")


def test_a_declared_metric_is_stored_reported_and_shown(energy, tmp_path):
    from harness.tasks.scoring.metrics import HIGHER_IS_BETTER

    # a store created before the declaration exists: it has no column for the metric yet
    fields.remove(energy.name)
    try:
        old = tmp_path / "old.sqlite"
        open_store(old).record(fixture_row("lora", 0, 0), [])
        with sqlite3.connect(old) as conn:
            assert "test_energy_j" not in {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    finally:
        declare(energy)
    assert load(old, decode=False).loc[0, "test_energy_j"] is None  # read back empty, not missing

    # it reaches every consumer that its declaration names, and only those
    assert HIGHER_IS_BETTER["test_energy_j"] is False and higher_is_better("test_energy_j") is False
    assert better("test_energy_j", 1.0, 2.0)
    assert METRICS[-1].name == "test_energy_kj" and METRIC_BY_NAME["test_energy_kj"].arrow == "↓"
    assert ("test_energy_kj", "energy_kJ") in fields.terminal_columns()
    assert "test_energy_j" in LIST_COLUMNS
    assert "test_energy_j" not in fields.selectable_metrics()
    with pytest.raises(ValueError, match="test_energy_j"):
        check_row({**fixture_row("lora", 1, 0), "test_energy_j": "a lot"})

    # recorded into a fresh store and into the old one (which gains the column), read back
    fresh = tmp_path / "fresh.sqlite"
    for url, seed in ((fresh, 0), (fresh, 1), (old, 1)):
        open_store(url).record({**fixture_row("lora", seed, 0), "test_energy_j": 1500.0 + seed}, [])
    assert list(load(fresh, decode=False)["test_energy_j"]) == [1500.0, 1501.0]
    old_runs = load(old, decode=False).set_index("run_id")
    assert old_runs.loc["lora-1", "test_energy_j"] == 1501.0 and old_runs["test_energy_j"].isna()["lora-0"]
    with sqlite3.connect(old) as conn:  # an added nullable column is not a new schema version
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)

    # the report aggregates it in its own unit
    agg = aggregate(metric_frame(load(fresh, decode=False)))
    row = agg[agg.metric == "test_energy_kj"].iloc[0]
    assert row["n"] == 2 and row["mean"] == pytest.approx(1.5005)
    frame = fields.with_display_columns(load(fresh, decode=False))
    assert list(frame["test_energy_kj"]) == [1.5, 1.501]
    assert results_cli(["list", "--store", str(fresh)]) == 0


def test_a_declared_metric_is_a_report_column(energy, tmp_path):
    from harness.config import ReportConfig
    from harness.report.build import build_report

    store = open_store(tmp_path / "s.sqlite")
    for i, (method, seed) in enumerate([("lora", 0), ("lora", 1), ("dora", 0), ("dora", 1)]):
        store.record({**fixture_row(method, seed, i), "test_energy_j": 1000.0 * (i + 1)}, [])
    build_report(tmp_path / "s.sqlite", tmp_path / "out", options=ReportConfig(pdf=False, formats=["md", "csv"]))
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Energy kJ ↓" in md
    csv = (tmp_path / "out" / "tables" / "synthetic__tiny_bert.csv").read_text()
    assert "test_energy_kj" in csv


def test_declarations_are_checked():
    with pytest.raises(ValueError, match="declared twice"):
        declare(Field("accuracy", "real", higher_is_better=True))
    with pytest.raises(ValueError, match="higher_is_better"):
        Field("test_x", "real", report="X")
    with pytest.raises(ValueError, match="type must be one of"):
        Field("test_x", "float")
    with pytest.raises(ValueError, match="report_name"):
        Field("test_x", "integer", higher_is_better=False, report_scale=1024)
    with pytest.raises(ValueError, match="report_name 'peak_memory_mib' is taken"):
        declare(Field("test_x", "integer", higher_is_better=False, report_scale=2**20,
                      report_name="peak_memory_mib"))
    assert "test_x" not in fields.FIELDS
    spec = declare(name="test_y", type="integer", higher_is_better=False)  # keywords, as plug-ins do
    try:
        assert fields.get("test_y") is spec and fields.metric_directions()["test_y"] is False
    finally:
        fields.remove("test_y")
    assert "test_y" not in fields.FIELDS
    with pytest.raises(TypeError):
        fields.FIELDS["test_x"] = Field("test_x", "real")  # read-only: declare() is the way in


def test_store_errors_stay_one_line_for_a_foreign_file(tmp_path):
    text = tmp_path / "notes.csv"
    text.write_text("a,b\n1,2\n")
    with pytest.raises(StoreError) as err:
        open_store(text)
    assert "\n" not in str(err.value)


def test_the_registry_imports_nothing_heavy():
    code = ("import sys, harness.fields, harness.results.store; "
            "heavy = [m for m in ('torch', 'pandas', 'numpy', 'transformers', 'evaluate') if m in sys.modules]; "
            "sys.exit(f'imported {heavy}' if heavy else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
