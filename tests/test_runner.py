"""A run end to end: what it measures and records, in-process and in its own worker process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from harness.results import load, load_curves
from harness.tasks import Split, TaskData
from harness.tasks.encoding import encode_split
from harness.training.loop import loader
from harness.models.load import load_model
from tests.conftest import TINY, tiny_config
from harness.tasks.types import SingleLabel
from harness.job.validation import validate

ROOT = Path(__file__).resolve().parent.parent


def test_a_run_records_every_measurement(run_tiny, store_path):
    row = run_tiny("method=lora", "trainer.epochs=2", "trainer.max_steps=null")
    df = load(store_path)
    rec = df.iloc[0]
    assert rec["status"] == "finished"
    for key in ("accuracy", "f1_macro", "f1_micro", "eval_loss", "majority_accuracy", "trainable_pct",
                "adapter_bytes", "peak_memory_bytes", "train_samples_per_s", "train_tokens_per_s",
                "infer_latency_ms", "infer_latency_merged_ms", "wall_s", "total_params"):
        assert rec[key] > 0, key
    assert rec["memory_kind"] == "cpu_rss"
    assert rec["r"] == 8 and rec["quant"] == "none" and rec["task"] == "synthetic"
    assert rec["provenance"]["versions"]["torch"] == torch.__version__
    assert "cpu_count" in rec["provenance"]["hardware"]
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (info.read_text().splitlines() if info.exists() else [])
             if line.startswith("model name")]
    assert rec["provenance"]["hardware"]["cpu_model"] == (names[0] if names else None)  # the processor's name
    assert rec["git_commit"] is None or len(rec["git_commit"]) == 40
    # the peak includes the process baseline, the baseline is recorded beside it
    assert rec["peak_cpu_rss_bytes"] >= rec["baseline_cpu_rss_bytes"] > 0
    curves = load_curves(store_path)
    val = curves[(curves.split == "validation") & (curves.metric == "accuracy")]
    assert sorted(val.epoch) == [1, 2]
    assert set(curves[curves.split == "train"].metric) == {"loss"}
    assert row["config_hash"] == rec["config_hash"]


def test_tokens_per_second_counts_only_real_tokens(store_path):
    cfg = validate(tiny_config(store_path))
    tok = load_model(cfg.model, cfg.quant, 2, torch.device("cpu")).tokenizer
    split = Split(["good", "a much much longer review of the film than the first"], [1, 0])
    batch = next(iter(loader(encode_split(split, tok, 64, "head", SingleLabel()).examples, tok, 2, False, 0)))
    assert batch["input_ids"].shape[1] == len(tok("a much much longer review of the film than the first")["input_ids"])
    assert int(batch["attention_mask"].sum()) < batch["input_ids"].numel()  # padding is not counted


def test_full_fine_tuning_has_no_merged_latency_and_a_whole_model_adapter(run_tiny):
    full, lora = run_tiny("method=full"), run_tiny("method=lora")
    assert full["infer_latency_merged_ms"] is None and lora["infer_latency_merged_ms"] > 0
    assert full["adapter_bytes"] > 4 * full["trainable_params"] * 0.99
    assert lora["adapter_bytes"] < full["adapter_bytes"]


def test_best_epoch_selection_restores_the_best_weights(run_tiny):
    best = run_tiny("trainer.select=best", "trainer.select_metric=eval_loss", "trainer.epochs=3",
                    "trainer.max_steps=null", "method.lr=0.05")
    curves = load_curves(Path(json.loads(best["config_json"])["store"]["url"]))
    val = curves[(curves.split == "validation") & (curves.metric == "eval_loss")].sort_values("epoch")
    assert best["best_epoch"] == int(val.loc[val.value.idxmin(), "epoch"])


def test_majority_baseline_is_the_train_majority_on_test():
    data = TaskData("t", Split(["a"] * 3, [1, 1, 0]), Split(["a"], [0]), Split(["a"] * 4, [1, 0, 0, 0]),
                    ["neg", "pos"], "test", type=SingleLabel())
    assert data.majority_accuracy() == 0.25


def test_a_failing_run_is_recorded_with_its_error(run_tiny, store_path):
    row = run_tiny("method=lora", "model.target_modules=[no_such_module]")
    assert row["status"] == "failed" and "No modules were targeted" in row["error"]
    stored = load(store_path)
    assert stored.iloc[0]["status"] == "failed" and pd.isna(stored.iloc[0]["accuracy"])


def test_isolated_run_in_a_worker_process(run_tiny, store_path):
    row = run_tiny("method=qlora", "trainer.isolate=true")
    assert row["status"] == "finished", row.get("error")
    assert load(store_path).iloc[0]["memory_kind"] == "cpu_rss"


def test_multirun_from_the_command_line_prints_a_comparison(tmp_path):
    store = tmp_path / "sweep.sqlite"
    cmd = [sys.executable, "-m", "harness", "-m", "method=lora,dora", *TINY, f"store.url={store}",
           f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2 finished, 0 failed" in out.stdout
    assert "dora" in out.stdout.split("finished")[-1]
    assert sorted(load(store)["method"]) == ["dora", "lora"]
