"""A results store with known values, written straight through the store API (no training).

The values are chosen so that each kind of mark a report makes occurs: a significant paired
difference (dora vs lora), a non-significant one (qlora vs lora), an unpaired comparison (full,
other seeds), a single run (vera, n=1), a method at the majority baseline (adalora) and a failure.
Every run is a ``protocol=fixed`` run (empty stage) at its method's rate (``LR``) with the same
budget (``BUDGET``). :func:`make_tuned_fixture_store` writes a ``protocol=tuned`` store instead:
search trials with known validation values, final runs at the chosen rates.

These stores keep no per-example predictions (like a store from before they were kept), so their
tests are the seed-level ones. :func:`prediction_row` / :func:`make_prediction_store` write runs
with test predictions (:func:`make_predictions`): a run with accuracy ``a`` on ``n`` examples gets
exactly ``round(a * n)`` right, its stored accuracy and macro-F1 are computed from them, and every
run of one seed is tested on the same examples (labels drawn from the seed).
"""
from __future__ import annotations

import json
import zlib

import numpy as np
from sklearn.metrics import f1_score

from harness.results.store import SCHEMA_VERSION, ResultsStore, open_store

MIB = 2**20
ACCURACY = {
    "lora": {0: 0.80, 1: 0.82, 2: 0.81},
    "dora": {0: 0.83, 1: 0.851, 2: 0.842},
    "qlora": {0: 0.79, 1: 0.83, 2: 0.80},
    "full": {3: 0.90, 4: 0.88},
    "vera": {0: 0.70},
    "adalora": {0: 0.51, 1: 0.55, 2: 0.49},
}
MAJORITY = 0.5
PEAK_MIB = {"lora": 500, "dora": 600, "qlora": 300, "full": 900, "vera": 450, "adalora": 520}
TRAINABLE = {"lora": 10_000, "dora": 11_000, "qlora": 10_000, "full": 1_000_000, "vera": 500,
             "adalora": 12_000}
TOTAL = 1_000_000
SAMPLES_PER_S = {"lora": 100.0, "dora": 80.0, "qlora": 60.0, "full": 70.0, "vera": 95.0,
                 "adalora": 90.0}
QUANT = {"qlora": "nf4"}
LR = {"lora": 2e-3, "dora": 2e-3, "qlora": 2e-3, "full": 5e-5, "vera": 1e-2, "adalora": 2e-3}
BUDGET = {"optimizer_steps": 24, "train_examples_seen": 192, "train_tokens": 6400}
VAL_CURVE = {"lora": [0.70, 0.78, 0.77], "dora": [0.75, 0.80, 0.79], "qlora": [0.60, 0.70, 0.74],
             "full": [0.85, 0.84, 0.83], "vera": [0.6, 0.65, 0.68], "adalora": [0.5, 0.52, 0.5]}


def fixture_row(method: str, seed: int, i: int) -> dict:
    jitter = (seed + 1) * 0.01  # small, distinct per seed so timings have variance
    method_cfg = {"name": method, "r": 8, "alpha": 16.0}
    return {
        "run_id": f"{method}-{seed}", "sweep": "fixture", "status": "finished",
        "created_at": f"2026-01-0{1 + i % 3}T10:00:{seed:02d}+00:00",
        "method": method, "model": "tiny_bert", "task": "synthetic",
        "quant": QUANT.get(method, "none"), "r": None if method == "full" else 8, "seed": seed,
        "lr": LR[method], "stage": None, "search_id": None,
        "select_metric": "accuracy", "select_value": max(VAL_CURVE[method]) + 0.005 * seed, **BUDGET,
        "config_hash": f"h-{method}-{seed}",
        "config_json": json.dumps({"method": method_cfg, "seed": seed}),
        "accuracy": ACCURACY[method].get(seed, 0.8), "f1_macro": ACCURACY[method].get(seed, 0.8) - 0.02,
        "f1_micro": ACCURACY[method].get(seed, 0.8), "eval_loss": 0.5, "best_epoch": 2,
        "majority_accuracy": MAJORITY, "trainable_params": TRAINABLE[method], "total_params": TOTAL,
        "trainable_pct": 100.0 * TRAINABLE[method] / TOTAL, "adapter_bytes": 4 * TRAINABLE[method],
        "peak_memory_bytes": int((PEAK_MIB[method] + 10 * seed) * MIB), "memory_kind": "cpu_rss",
        "train_samples_per_s": SAMPLES_PER_S[method] * (1 + jitter),
        "train_tokens_per_s": 20 * SAMPLES_PER_S[method], "infer_latency_ms": 5.0 + jitter,
        "infer_latency_merged_ms": None if method == "full" else 4.0 + jitter,
        "train_s": 10.0, "wall_s": 12.0 + seed, "n_train": 64, "n_validation": 32, "n_test": 200,
        "device": "cpu", "git_commit": "0123456789abcdef", "git_dirty": False,
        "provenance_json": json.dumps({"versions": {"torch": "2.0", "peft": "0.1"},
                                       "hardware": {"device": "cpu", "cpu": "x86_64", "cpu_count": 2}}),
        "details_json": json.dumps({"label_names": ["neg", "pos"]}),
        "schema_version": SCHEMA_VERSION,
    }


def fixture_curves(method: str, seed: int) -> list[dict]:
    return [{"epoch": e + 1, "split": "validation", "metric": "accuracy",
             "value": v + 0.005 * seed} for e, v in enumerate(VAL_CURVE[method])]


def make_fixture_store(url) -> ResultsStore:
    store = open_store(url)
    i = 0
    for method, seeds in ACCURACY.items():
        for seed in seeds:
            store.record(fixture_row(method, seed, i), fixture_curves(method, seed))
            i += 1
    failed = {k: v for k, v in fixture_row("lora", 0, 0).items()
              if k in ("sweep", "created_at", "method", "model", "task", "quant", "r",
                       "config_json", "schema_version")}
    store.record({**failed, "seed": 9, "run_id": "lora-failed", "config_hash": "h-failed",
                  "status": "failed", "error": "RuntimeError: CUDA out of memory"}, [])
    return store


# protocol=tuned: each method's search on seed 0 over three rates, {lr: validation accuracy}, and
# its final runs on seeds 0-2 at the chosen rate (lora: the best, 2e-3; dora: a tie between 1e-3
# and 2e-3, so the lower rate). Search trials have test accuracies far from the finals', so a
# search trial that leaked into an aggregate would show.
SEARCH = {"lora": {1e-3: 0.70, 2e-3: 0.75, 4e-3: 0.72}, "dora": {1e-3: 0.76, 2e-3: 0.76, 4e-3: 0.71}}
CHOSEN = {"lora": 2e-3, "dora": 1e-3}
SEARCH_TEST_ACCURACY = 0.10
FINAL_ACCURACY = {"lora": {0: 0.80, 1: 0.82, 2: 0.81}, "dora": {0: 0.83, 1: 0.851, 2: 0.842}}


def tuned_rows() -> list[dict]:
    """The rows of the tuned fixture, search trials first."""
    rows, i = [], 0
    for method, trials in SEARCH.items():
        for lr, value in trials.items():
            row = fixture_row(method, 0, i)
            rows.append({**row, "run_id": f"{method}-search-{lr:g}", "config_hash": f"h-{method}-search-{lr:g}",
                         "lr": lr, "stage": "search", "search_id": f"search-{method}",
                         "select_value": value, "accuracy": SEARCH_TEST_ACCURACY,
                         "f1_macro": SEARCH_TEST_ACCURACY})
            i += 1
    for method, accuracy in FINAL_ACCURACY.items():
        for seed, acc in accuracy.items():
            row = fixture_row(method, seed, i)
            rows.append({**row, "run_id": f"{method}-final-{seed}", "config_hash": f"h-{method}-final-{seed}",
                         "lr": CHOSEN[method], "stage": "final", "search_id": f"search-{method}",
                         "accuracy": acc, "f1_macro": acc - 0.02})
            i += 1
    return rows


def make_tuned_fixture_store(url, rows: list[dict] | None = None) -> ResultsStore:
    """A protocol=tuned store (``rows``: tuned_rows(), possibly edited, by default)."""
    store = open_store(url)
    for row in rows if rows is not None else tuned_rows():
        store.record(row, fixture_curves(row["method"], row["seed"]))
    return store


# --- runs with per-example test predictions ---------------------------------------------------

def seed_labels(seed: int, n: int, n_classes: int = 2, majority: float = MAJORITY) -> np.ndarray:
    """The test labels of one seed's split: ``round(majority * n)`` of class 0 (the majority
    class), the rest spread over the other classes, in an order drawn from the seed."""
    k = round(majority * n)
    rest = np.arange(n - k) % max(n_classes - 1, 1) + (1 if n_classes > 1 else 0)
    return np.random.default_rng([7, seed, n]).permutation(np.concatenate([np.zeros(k, int), rest]))


def correct_mask(accuracy: float, n: int, seed: int, name: str, spread: float = 0.3) -> np.ndarray:
    """Which examples a run gets right: exactly ``round(accuracy * n)``, mostly the "easy" ones of
    the seed (shared by every run of it) with some run-specific noise, so that two runs agree on
    most examples but not all (their discordant examples are what McNemar counts)."""
    easy = np.random.default_rng([11, seed, n]).random(n)
    noise = np.random.default_rng([13, seed, n, zlib.crc32(name.encode())]).random(n)
    order = np.argsort(easy + spread * noise, kind="stable")
    mask = np.zeros(n, bool)
    mask[order[:round(accuracy * n)]] = True
    return mask


def make_predictions(labels: np.ndarray, right: np.ndarray, n_classes: int = 2) -> dict:
    """{"labels", "predictions", "majority"}: right where ``right``, else the next class."""
    predictions = np.where(right, labels, (labels + 1) % n_classes)
    return {"labels": labels, "predictions": predictions, "majority": np.zeros_like(labels)}


def scores(arrays: dict, n_classes: int = 2) -> dict:
    """The row's quality fields, computed from its predictions (sklearn, as harness.tasks.scoring.metrics)."""
    y, p = arrays["labels"], arrays["predictions"]
    return {"accuracy": float(np.mean(y == p)),
            "f1_macro": float(f1_score(y, p, labels=list(range(n_classes)), average="macro",
                                       zero_division=0)),
            "f1_micro": float(np.mean(y == p)),
            "majority_accuracy": float(np.mean(y == arrays["majority"]))}


def prediction_row(method: str, seed: int, accuracy: float, n: int = 1000, i: int = 0,
                   n_classes: int = 2, config: dict | None = None, **changes) -> tuple[dict, dict]:
    """(row, predictions) of a finished run with test predictions; ``config``: the resolved
    config's extra settings (merged into config_json), ``changes``: other row fields."""
    labels = seed_labels(seed, n, n_classes)
    arrays = make_predictions(labels, correct_mask(accuracy, n, seed, f"{method}/{config}"), n_classes)
    row = fixture_row(method, seed, i) if method in ACCURACY else {**fixture_row("lora", seed, i), "method": method}
    cfg = json.loads(row["config_json"])
    cfg["method"]["name"] = method
    for key, value in (config or {}).items():
        cfg.setdefault(key, {}).update(value) if isinstance(value, dict) else cfg.__setitem__(key, value)
    row.update(scores(arrays, n_classes), n_test=n, config_json=json.dumps(cfg, sort_keys=True),
               run_id=f"{method}-{seed}-{zlib.crc32(json.dumps(config, sort_keys=True).encode()):x}",
               details_json=json.dumps({"label_names": [f"c{k}" for k in range(n_classes)]}))
    row["config_hash"] = f"h-{row['run_id']}"
    row.update(changes)
    return row, {"test": arrays}


def make_prediction_store(url, runs: list[tuple[dict, dict]]) -> ResultsStore:
    """A store of :func:`prediction_row` runs (row, predictions)."""
    store = open_store(url)
    for row, predictions in runs:
        store.record(row, fixture_curves(row["method"] if row["method"] in VAL_CURVE else "lora",
                                         row["seed"]), predictions)
    return store
