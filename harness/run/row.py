"""The row the store keeps for a finished run: its fields (names declared in :mod:`harness.fields`)."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from harness.config import RunConfig
from harness.registry import Registry
from harness.run.parallel import recorded
from harness.tasks.encoding import cut_summary
from harness.tasks.types import task_truncation

if TYPE_CHECKING:
    from harness.run.inference import InferenceCosts
    from harness.run.steps import Setup, Tested
    from harness.training.loop import TrainResult

# Code that measures a recorded field of one's own (declared with ``harness.fields.declare``):
# ``@MEASUREMENTS.register("name") def f(s: Setup, trained: TrainResult) -> dict[field, value]``,
# called after the run's own measurements (docs/extending.md).
MEASUREMENTS: Registry = Registry("measurement")


def record_fields(s: "Setup", cfg: RunConfig, trained: "TrainResult", tested: "Tested",
                  measured: "InferenceCosts", memory: dict, parallel=None, apart: dict | None = None) -> dict:
    """The run's row fields (names declared in :mod:`harness.fields`); ``apart``: the peaks of the
    phases kept out of the run's peak (the FLOP count's step), into its details."""
    majority = s.data.majority_metrics()
    memory, spread = recorded(parallel, memory)
    details = {**spread, **({"peak_memory_apart_bytes": apart} if apart else {}),
               "data_source": s.data.source, "model_source": s.loaded.source,
               "label_names": s.data.label_names, "steps": trained.steps,
               "task_type": s.kind.name, "majority": majority,
               "tokens_from_cache": all(e.cached for e in s.encoded.values()),
               "bf16_autocast": s.use_bf16, "group_by_length": cfg.trainer.group_by_length,
               "packing": cfg.trainer.packing, "compile": cfg.trainer.compile,
               "dropout_rng": cfg.trainer.dropout_rng.value,
               "truncation": cut_summary(s.encoded, cfg.task.max_length, task_truncation(cfg.task),
                                         getattr(s.kind, "conversation", False)),
               "in_train": s.data.in_train,
               **s.adapted.details()}
    return {
        **{k: float(v) for k, v in tested.metrics.items()},
        "best_epoch": int(trained.best_epoch),
        "select_metric": cfg.trainer.select_metric,
        "precision": "bf16_autocast" if s.use_bf16 else "fp32",
        "select_value": trained.selected_value,
        "majority_accuracy": majority["accuracy"],
        "majority_f1_macro": majority.get("f1_macro"),
        **{f"n_truncated_{name}": enc.n_truncated for name, enc in s.encoded.items()},
        "trainable_params": int(s.trainable),
        "total_params": int(s.total),
        "trainable_pct": 100.0 * s.trainable / s.total,
        "adapter_bytes": measured.adapter_bytes,
        **memory,
        "train_samples_per_s": trained.samples / trained.train_s if trained.steps else None,
        "train_tokens_per_s": trained.tokens / trained.train_s if trained.steps else None,
        "infer_latency_ms": measured.latency_ms,
        "infer_latency_merged_ms": measured.latency_merged_ms,
        **measured.generation,
        "train_s": trained.train_s,
        "optimizer_steps": int(trained.steps),
        "train_examples_seen": int(trained.samples),
        "train_tokens": int(trained.tokens),
        "n_train": len(s.data.train), "n_validation": len(s.data.validation),
        "n_test": len(s.data.test), "dropped_rows": s.data.dropped_rows,
        "world_size": spread["world_size"], "baseline": getattr(cfg.method, "baseline", None),
        "details_json": json.dumps(details, sort_keys=True, default=str),
    }
