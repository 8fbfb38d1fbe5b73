"""The jobs of ``python -m harness -m method=lora,dylora,lora_drop model=tiny_bert task=synthetic
trainer=smoke`` and of HyperLoRA on ``task=multi_synthetic`` run in-process into one store: every
run finishes, its trainable count matches an independent count, and its extra results (ranks,
per-task metrics, kept layers) are in the store."""
from __future__ import annotations

import json

import pytest

from harness.results import load
from harness.results.store import open_store
from harness.job.runner import run_job
from tests.conftest import tiny_config

JOBS = {"lora": ["method=lora"], "dylora": ["method=dylora"], "lora_drop": ["method=lora_drop"],
        "hyperlora": ["method=hyperlora", "task=multi_synthetic"]}
TINY_HIDDEN, TINY_FFN, TINY_LAYERS = 64, 128, 2


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    store = tmp_path_factory.mktemp("sweep") / "results.sqlite"
    rows = {name: run_job(tiny_config(store, *overrides, "store.sweep=custom"))
            for name, overrides in JOBS.items()}
    return store, rows


def lora_params(r: int) -> int:
    """r (in + out) summed over the tiny BERT's query/key/value/dense layers, plus the head."""
    h, f = TINY_HIDDEN, TINY_FFN
    per_layer = 4 * r * (h + h) + r * (h + f) + r * (f + h)  # q, k, v, attn-out; intermediate; output
    return TINY_LAYERS * per_layer + r * (h + h) + (h * 2 + 2)  # pooler.dense; classifier


def test_every_job_finishes(sweep):
    store, rows = sweep
    assert {n: r["status"] for n, r in rows.items()} == dict.fromkeys(JOBS, "finished")
    stored = load(store, decode=False)
    assert sorted(stored["method"]) == sorted(JOBS) and set(stored["sweep"]) == {"custom"}


def test_trainable_counts_match_independent_counts(sweep):
    _, rows = sweep
    assert rows["lora"]["trainable_params"] == rows["dylora"]["trainable_params"] == lora_params(8)
    facts = json.loads(rows["lora_drop"]["details_json"])["lora_drop"]
    assert rows["lora_drop"]["trainable_params"] == facts["adapter_params_kept"] + TINY_HIDDEN * 2 + 2
    assert facts["adapter_params_lora"] == lora_params(8) - (TINY_HIDDEN * 2 + 2)
    d, hidden, p, r, tasks, kinds = 64, 128, 64, 8, 2, 7  # hyperlora.yaml; 7 kinds of layer
    h, f = TINY_HIDDEN, TINY_FFN
    hypernet = ((tasks + TINY_LAYERS + 1 + kinds) * d + 3 * d * hidden + hidden + hidden * p + p
                + 2 * p + sum((p + 1) * r * (i + o) for i, o in ((h, h), (h, f), (f, h))))
    assert rows["hyperlora"]["trainable_params"] == hypernet + h * 4 + 4  # head over 4 labels


def test_dylora_records_test_metrics_at_every_rank(sweep):
    store, rows = sweep
    curves = open_store(store).curves()
    mine = curves[(curves.run_id == rows["dylora"]["run_id"]) & (curves.split == "test")]
    ranks = sorted(int(v.split(":")[1]) for v in set(mine.variant) if v.startswith("rank:"))
    assert ranks == list(range(1, 9))
    loss = mine[mine.metric == "eval_loss"].set_index("variant")["value"]
    assert loss["rank:8"] == pytest.approx(rows["dylora"]["eval_loss"])  # full rank is the default
    assert loss["rank:1"] != loss["rank:8"]  # the truncation changes the model
    counts = json.loads(rows["dylora"]["details_json"])["dylora_rank_counts"]
    assert sum(counts.values()) == 6 and len(counts) > 1  # trainer=smoke: 6 steps


def test_hyperlora_records_per_task_test_metrics(sweep):
    store, rows = sweep
    curves = open_store(store).curves()
    mine = curves[(curves.run_id == rows["hyperlora"]["run_id"]) & (curves.split == "test")]
    acc = mine[mine.metric == "accuracy"].set_index("variant")["value"]
    assert set(acc.index) == {"task:sentiment", "task:inverted"}
    # both tasks have 32 test examples, so the overall accuracy is their mean
    assert rows["hyperlora"]["accuracy"] == pytest.approx(acc.mean())
    assert rows["hyperlora"]["n_test"] == 64
