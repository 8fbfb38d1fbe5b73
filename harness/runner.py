"""One job, from a composed config to a row in the store.

:func:`run_job` is what the Hydra entry point calls per job: validate, skip what the store already
has, run :func:`harness.pipeline.execute` (in a fresh worker process by default,
``trainer.isolate``, so that peak memory is this run's alone and a crash of the worker is
recorded as a failed run instead of ending the sweep), then record the row.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness import identity
from harness.config import RunConfig
from harness.results.store import SCHEMA_VERSION, open_store
from harness.validation import validate


def one_line_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:2000]


def execute(cfg: RunConfig, isolated: bool, work_dir: Path,
            row: dict | None = None) -> tuple[dict, list[dict]]:
    """Train and measure one run; return its fields and curves (no store access).

    With the run's identity ``row``, the configured tracker follows the run from here (the
    process that trains), and is told how it ended, failure included.
    """
    from harness.pipeline import execute as run_pipeline
    from harness.tracking import Tracker, make_tracker

    tracker = make_tracker(cfg.tracker) if row else Tracker()
    if row:
        tracker.on_run_start(row, json.loads(row["config_json"]))
    try:
        result = run_pipeline(cfg, isolated, work_dir, tracker)
    except BaseException as exc:
        tracker.on_run_end({}, error=one_line_error(exc))
        raise
    tracker.on_run_end(result.fields, adapter_dir=work_dir / "adapter")
    return result.fields, result.curves


def _job_dir() -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ValueError, ImportError):
        return Path(tempfile.mkdtemp(prefix="harness-run-"))


# How a worker process is started (tests swap in one that crashes).
WORKER_COMMAND = [sys.executable, "-m", "harness.worker"]


class WorkerError(RuntimeError):
    pass


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


def _release_memory() -> None:
    """After a failed in-process run, so that the next run does not inherit its memory."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _provenance(run_cfg: RunConfig) -> dict:
    import torch

    from harness import provenance
    from harness.measure import pick_device

    try:
        device = pick_device(run_cfg.trainer.device.value)
    except RuntimeError:
        device = torch.device("cpu")
    prov = provenance.collect(device)
    return {"git_commit": prov["git_commit"], "git_dirty": prov["git_dirty"],
            "device": str(device), "provenance_json": json.dumps(prov, sort_keys=True)}


def run_job(cfg: DictConfig, work_dir: Path | None = None) -> dict:
    """Validate, run and record one job; a failure is recorded, not raised. Returns the row.

    A job whose config is already recorded as finished in the store is skipped (its row comes
    back with status ``skipped`` and nothing is written) unless ``force=true``. ``work_dir``: the
    run's folder (default: the Hydra job's output folder).
    """
    run_cfg = validate(cfg)  # a bad config fails here, before anything is trained or stored
    container = OmegaConf.to_container(cfg, resolve=True)
    store = open_store(run_cfg.store.url)
    row = identity.base_row(run_cfg, container, identity.sweep_label(run_cfg.store.sweep),
                            SCHEMA_VERSION)
    if not run_cfg.force and row["config_hash"] in store.finished_hashes():
        return {**row, "status": "skipped"}
    work_dir = Path(work_dir) if work_dir else _job_dir()
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
    row.update(_provenance(run_cfg))
    store.record(row, curves)
    return row
