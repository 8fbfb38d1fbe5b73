"""One job, from a composed config to a row in the store.

:func:`run_job` is what the Hydra entry point calls per job: validate, skip what the store already
has, run :func:`harness.run.pipeline.execute` (in a fresh worker process by default,
``trainer.isolate``, so that peak memory is this run's alone and a crash of the worker is
recorded as a failed run instead of ending the sweep), then record the row.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import threading
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.results import identity
from harness.config import RunConfig
from harness.run.tracked import one_line_error, run_tracked
from harness.job.isolation import WorkerError, run_worker, watch_sweep
from harness.results.retry import PatientStore
from harness.results.store import SCHEMA_VERSION, redact
from harness.job.unrecorded import UNRECORDED, import_command, keep_unrecorded, mark_recorded  # noqa: F401 - UNRECORDED: API
from harness.job.validation import validate


def _job_dir() -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ValueError, ImportError):
        return Path(tempfile.mkdtemp(prefix="harness-run-"))


# How a worker process is started: None forks it from the fork server (harness.job.isolation);
# a command (``[python, -m, harness.job.worker]``) starts a fresh interpreter. Tests swap in one that crashes.
WORKER_COMMAND: list[str] | None = None
# A run's claim on its configuration lasts this long unless renewed; its runner renews it every
# LEASE_S / 4 while the run trains, so a claim outlives its owner by at most LEASE_S.
LEASE_S = 300.0


def _release_memory() -> None:
    """After a failed in-process run, so that the next run does not inherit its memory."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _provenance(run_cfg: RunConfig) -> dict:
    from harness.run.provenance import run_provenance

    return run_provenance(run_cfg.trainer.device.value)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Heartbeat:
    """Renews a run's claim every ``lease_s / 4`` until stopped (waiting out an outage of the
    store meanwhile, but never past the run's end)."""

    def __init__(self, store, row: dict, lease_s: float) -> None:
        self.stop_event = threading.Event()
        self.store, self.row, self.lease_s = store, row, lease_s
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop_event.wait(self.lease_s / 4):
            try:
                self.store.renew(self.row["config_hash"], self.row["run_id"], self.lease_s,
                                 stop=self.stop_event)
            except Exception:  # noqa: BLE001 - a missed renewal only shortens the lease
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join()


def _without_password(container: dict) -> dict:
    """The config as a job file holds it: the worker needs no store, so no password either."""
    store = container.get("store") or {}
    return {**container, "store": {**store, "url": redact(store["url"])}} if store.get("url") else container


def _record(store: PatientStore, row: dict, curves: list[dict], predictions: dict, run_dir: Path,
            claimed: bool) -> dict:
    """Record the run, waiting out an outage of the store with the run kept on disk meanwhile
    (``unrecorded.json``, renamed once recorded); if the store cannot take it, the run stays kept
    there and ``row["unrecorded"]`` names the file."""
    kept: list[Path] = []

    def keep() -> None:  # the store is unreachable: the run waits for it on disk
        kept.append(keep_unrecorded(run_dir, row, curves, predictions))
        print(f"[harness] run {row['run_id']} kept in {kept[0]} until the store is back", file=sys.stderr)

    try:
        store.record(row, curves, predictions, on_wait=keep)
    except Exception as exc:  # noqa: BLE001 - the run is kept, the sweep goes on
        path = kept[0] if kept else keep_unrecorded(run_dir, row, curves, predictions)
        print(f"[harness] could not record run {row['run_id']} in the store ({one_line_error(exc)}); "
              f"kept in {path}; `{import_command(path.parent, redact(store.url))}` records it", file=sys.stderr)
        row["unrecorded"] = str(path)
        if claimed:
            with contextlib.suppress(Exception):  # the lease runs out on its own
                store.release(row["config_hash"], row["run_id"])
        return row
    if kept:
        mark_recorded(kept[0])
    return row


def run_job(cfg: DictConfig, work_dir: Path | None = None) -> dict:
    """Validate, run and record one job; a failure is recorded, not raised. Returns the row.

    The job first claims its configuration in the store (atomically with the "already
    finished?" check): a configuration recorded as finished is skipped (its row comes back with
    status ``skipped`` and nothing is written) unless ``force=true``, and one that another live
    run holds is skipped too (``skip_reason`` says so). The run trains in a folder of its own
    (``<work_dir>/<run_id>``; ``work_dir`` defaults to the Hydra job's output folder). If the store
    cannot take the result, it is kept in that folder (``unrecorded.json``) and the sweep goes on.
    """
    run_cfg = validate(cfg)  # a bad config fails here, before anything is trained or stored
    container = OmegaConf.to_container(cfg, resolve=True)
    watch_sweep()
    store = PatientStore(run_cfg.store.url)
    row = identity.base_row(run_cfg, container, identity.sweep_label(run_cfg.store.sweep),
                            SCHEMA_VERSION)
    claimed = True
    try:
        state, holder = store.claim(row["config_hash"], row["run_id"], _owner(), LEASE_S,
                                    force=run_cfg.force)
    except Exception as exc:  # noqa: BLE001 - the store is unusable now; train and keep the result
        print(f"[harness] could not claim the run in the store ({one_line_error(exc)}); "
              f"training it anyway", file=sys.stderr)
        state, holder, claimed = "claimed", None, False
    if state == "finished":
        return {**row, "status": "skipped"}
    if state == "busy":
        return {**row, "status": "skipped",
                "skip_reason": f"being run by {holder['owner']} (claimed in the store)"}
    run_dir = (Path(work_dir) if work_dir else _job_dir()) / row["run_id"]
    run_dir.mkdir(parents=True, exist_ok=True)
    row["run_dir"] = str(run_dir.absolute())
    curves: list[dict] = []
    predictions: dict = {}
    try:
        with _Heartbeat(store, row, LEASE_S) if claimed else contextlib.nullcontext():
            if run_cfg.trainer.isolate:
                fields, curves, predictions = run_worker(WORKER_COMMAND, _without_password(container),
                                                         row, run_dir, run_cfg.trainer.timeout_s)
            else:
                fields, curves, predictions = run_tracked(run_cfg, isolated=False, work_dir=run_dir, row=row)
        row.update(fields, status="finished")
    except Exception as exc:  # noqa: BLE001 - any failure of the run is recorded
        row.update(status="failed", error=one_line_error(exc))
        if not isinstance(exc, WorkerError):
            traceback.print_exc()
        _release_memory()
    if "provenance_json" not in row:  # collected by the run's process (harness.run.tracked) unless it failed
        row.update(_provenance(run_cfg))
    return _record(store, row, curves, predictions, run_dir, claimed)
