"""One run, in order: seed, load data and model, adapt, train, evaluate, measure, record.

:func:`run_job` is what the Hydra entry point calls per job. It runs :func:`execute` in a fresh
worker process by default (``trainer.isolate``), so that peak memory is this run's alone and a
crash of the worker is recorded as a failed run instead of ending the sweep.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from datetime import datetime, timezone
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from harness import provenance
from harness.config import RunConfig, validate
from harness.measure import PeakMemory, cpu_supports_bf16, latency_ms, pick_device
from harness.results.store import SCHEMA_VERSION, open_store

# Config keys that do not change what a run computes; left out of its hash.
UNHASHED = ("store", "summary", "trainer.progress", "force", "tracker", "report")


def config_hash(container: dict) -> str:
    data = json.loads(json.dumps(container))
    for key in UNHASHED:
        *parents, leaf = key.split(".")
        node = data
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def base_row(cfg: RunConfig, container: dict, sweep: str | None) -> dict:
    return {
        "run_id": uuid.uuid4().hex,
        "sweep": sweep,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "method": cfg.method.name,
        "model": cfg.model.name,
        "task": cfg.task.name,
        "quant": cfg.quant.name,
        "r": None if cfg.method.name == "full" else int(cfg.method.r),
        "seed": int(cfg.seed),
        "config_hash": config_hash(container),
        "config_json": json.dumps(container, sort_keys=True),
        "schema_version": SCHEMA_VERSION,
    }


def seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def execute(cfg: RunConfig, isolated: bool, work_dir: Path,
            row: dict | None = None) -> tuple[dict, list[dict]]:
    """Train and measure one run; return its metric fields and curves (no store access).

    With the run's identity ``row``, the configured tracker follows the run from here (the
    process that trains), and is told how it ended, failure included.
    """
    from harness.tracking import Tracker, make_tracker

    tracker = make_tracker(cfg.tracker) if row else Tracker()
    if row:
        tracker.on_run_start(row, json.loads(row["config_json"]))
    try:
        fields, curves = _execute(cfg, isolated, work_dir, tracker)
    except BaseException as exc:
        tracker.on_run_end({}, error=one_line_error(exc))
        raise
    tracker.on_run_end(fields, adapter_dir=work_dir / "adapter")
    return fields, curves


def one_line_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:2000]


def _execute(cfg: RunConfig, isolated: bool, work_dir: Path, tracker) -> tuple[dict, list[dict]]:
    from harness.methods import METHODS
    from harness.models import cache_dir, load_model
    from harness.tasks import load_task
    from harness.tasks.encoding import collator, encode_cached, encode_split
    from harness.tasks.multitask import per_task_splits
    from harness.train import evaluate, loader, train

    t0 = time.perf_counter()
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    device = pick_device(cfg.trainer.device.value)
    memory = PeakMemory(device, isolated).start()
    use_bf16 = cfg.trainer.autocast.value == "bf16" or (
        cfg.trainer.autocast.value == "auto"
        and (torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_supports_bf16()))

    data = load_task(cfg.task)
    kind = data.type
    seed_everything(cfg.seed)
    loaded = load_model(cfg.model, cfg.quant, kind.head_size(data.num_labels), device,
                        problem_type=kind.problem_type)
    seed_everything(cfg.seed)  # adapters start from the seed whatever the loader consumed
    adapted = METHODS.get(cfg.method.name)(loaded.model, cfg)

    tok, collate = loaded.tokenizer, collator(loaded.tokenizer, kind.name == "multiple_choice")
    token_cache = cache_dir() / "tokens" if cfg.task.cache_tokens else None
    encoded = {name: encode_cached(getattr(data, name), tok, cfg.task.max_length,
                                   cfg.task.truncation.value, token_cache)
               for name in ("train", "validation", "test")}
    batches = {name: loader(enc.examples, tok, cfg.trainer.batch_size if name == "train"
                            else cfg.trainer.eval_batch_size, name == "train", cfg.seed, collate)
               for name, enc in encoded.items()}
    train_b, val_b, test_b = batches["train"], batches["validation"], batches["test"]

    adapted.prepare_with_data(train_b, device)  # a method that looks at the data first (LoRA-drop)
    trainable, total = adapted.count_parameters()
    result = train(adapted, train_b, val_b, cfg, device, data.num_labels, use_bf16, tracker,
                   task_type=kind)
    test = evaluate(adapted.model, test_b, device, data.num_labels, use_bf16, task_type=kind)
    curves = list(result.curves)

    def test_curve(variant: str, scores: dict) -> list[dict]:
        return [{"epoch": result.best_epoch, "variant": variant, "split": "test", "metric": k,
                 "value": v} for k, v in scores.items()]

    for task, split, labels in per_task_splits(data, data.test):  # multi-task data only
        task_b = loader(encode_split(split, tok, cfg.task.max_length, cfg.task.truncation.value).examples,
                        tok, cfg.trainer.eval_batch_size, False, cfg.seed, collate)
        scores = evaluate(adapted.model, task_b, device, data.num_labels, use_bf16, labels, kind)
        curves += test_curve(f"task:{task}", scores)
    for variant, context in adapted.eval_variants():
        with context:
            scores = evaluate(adapted.model, test_b, device, data.num_labels, use_bf16, task_type=kind)
        curves += test_curve(variant, scores)

    lat_batch = kind.model_inputs(next(iter(loader(encoded["test"].examples, tok,
                                                   cfg.trainer.latency_batch_size, False, cfg.seed,
                                                   collate))))
    reps = cfg.trainer.latency_batches
    unmerged = latency_ms(adapted.model, lat_batch, device, reps)
    adapter_bytes = adapted.save(work_dir / "adapter")
    merged = latency_ms(adapted.model, lat_batch, device, reps) if adapted.merge() else None
    mem = memory.stop()
    majority = data.majority_metrics()
    fields = {
        **{k: float(v) for k, v in test.items()},
        "best_epoch": int(result.best_epoch),
        "majority_accuracy": majority["accuracy"],
        "majority_f1_macro": majority["f1_macro"],
        **{f"n_truncated_{name}": enc.n_truncated for name, enc in encoded.items()},
        "trainable_params": int(trainable),
        "total_params": int(total),
        "trainable_pct": 100.0 * trainable / total,
        "adapter_bytes": int(adapter_bytes),
        **mem,
        "train_samples_per_s": result.samples / result.train_s,
        "train_tokens_per_s": result.tokens / result.train_s,
        "infer_latency_ms": unmerged,
        "infer_latency_merged_ms": merged,
        "train_s": result.train_s,
        "n_train": len(data.train), "n_validation": len(data.validation), "n_test": len(data.test),
        "details_json": json.dumps({"data_source": data.source, "model_source": loaded.source,
                                    "label_names": data.label_names, "steps": result.steps,
                                    "task_type": kind.name, "majority": majority,
                                    "tokens_from_cache": all(e.cached for e in encoded.values()),
                                    "bf16_autocast": use_bf16, **adapted.details()},
                                   sort_keys=True, default=str),
        "wall_s": time.perf_counter() - t0,
    }
    return fields, curves


def _job_dir() -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ValueError, ImportError):
        return Path(tempfile.mkdtemp(prefix="harness-run-"))


def _sweep_label(cfg: RunConfig) -> str | None:
    if cfg.store.sweep:
        return cfg.store.sweep
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        return str(hc.sweep.dir if hc.mode.name == "MULTIRUN" else hc.run.dir)
    except (ValueError, ImportError):
        return None


# How a worker process is started (tests swap in one that crashes).
WORKER_COMMAND = [sys.executable, "-m", "harness.worker"]


def _run_worker(container: dict, row: dict, work_dir: Path) -> tuple[dict, list[dict]]:
    """Run :func:`execute` in a fresh Python process; raise if it fails or dies."""
    job, out = work_dir / "job.json", work_dir / "result.json"
    job.write_text(json.dumps({"config": container, "row": row}))
    out.unlink(missing_ok=True)
    proc = subprocess.run([*WORKER_COMMAND, str(job), str(out)],
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if out.is_file():
        payload = json.loads(out.read_text())
        if payload.get("error"):
            raise WorkerError(payload["error"])
        return payload["fields"], payload["curves"]
    if proc.returncode < 0:
        raise WorkerError(f"worker process killed by signal {-proc.returncode}"
                          + (" (out of memory?)" if proc.returncode == -9 else ""))
    raise WorkerError(f"worker process exited with code {proc.returncode} and no result")


class WorkerError(RuntimeError):
    pass


def _release_memory() -> None:
    """After a failed in-process run, so that the next run does not inherit its memory."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_job(cfg: DictConfig) -> dict:
    """Validate, run and record one job; a failure is recorded, not raised. Returns the row.

    A job whose config is already recorded as finished in the store is skipped (its row comes
    back with status ``skipped`` and nothing is written) unless ``force=true``.
    """
    run_cfg = validate(cfg)  # a bad config fails here, before anything is trained or stored
    container = OmegaConf.to_container(cfg, resolve=True)
    store = open_store(run_cfg.store.url)
    row = base_row(run_cfg, container, _sweep_label(run_cfg))
    if not run_cfg.force and row["config_hash"] in store.finished_hashes():
        return {**row, "status": "skipped"}
    work_dir = _job_dir()
    work_dir.mkdir(parents=True, exist_ok=True)
    curves: list[dict] = []
    try:
        if run_cfg.trainer.isolate:
            fields, curves = _run_worker(container, row, work_dir)
        else:
            fields, curves = execute(run_cfg, isolated=False, work_dir=work_dir, row=row)
        row.update(fields, status="finished")
    except Exception as exc:  # noqa: BLE001 - any failure of the run is recorded
        row.update(status="failed", error=one_line_error(exc))
        if not isinstance(exc, WorkerError):
            traceback.print_exc()
        _release_memory()
    try:
        device = pick_device(run_cfg.trainer.device.value)
    except RuntimeError:
        device = torch.device("cpu")
    prov = provenance.collect(device)
    row.update(git_commit=prov["git_commit"], git_dirty=prov["git_dirty"], device=str(device),
               provenance_json=json.dumps(prov, sort_keys=True))
    store.record(row, curves)
    return row
