"""One run in this process: train and measure it with its tracker, and the payload a worker
hands back (its error as one line, its predictions as JSON can hold them).

Used by :mod:`harness.job.runner` (a run in the command's own process) and :mod:`harness.job.worker` (a run
in a worker process); it imports neither.
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.config import RunConfig
from harness.errors import first_line


def one_line_error(exc: BaseException) -> str:
    """``Type: message``, the message cut to its first line that is not blank (``Type`` alone
    when it has none)."""
    return (f"{type(exc).__name__}: {first_line(exc)}" if str(exc).strip() else type(exc).__name__)[:2000]


def run_tracked(cfg: RunConfig, isolated: bool, work_dir: Path,
            row: dict | None = None) -> tuple[dict, list[dict], dict] | None:
    """Train and measure one run; return its fields, curves and predictions (no store access).

    With the run's identity ``row``, the configured tracker follows the run from here (the
    process that trains), and is told how it ended, failure included.
    """
    from harness.run.pipeline import execute as run_pipeline
    from harness.tracking import Tracker, make_tracker

    from harness.run.parallel import rank

    # A data-parallel run is followed once, from its first process.
    tracker = make_tracker(cfg.tracker) if row and rank() == 0 else Tracker()
    if row:
        tracker.on_run_start(row, json.loads(row["config_json"]))
    try:
        result = run_pipeline(cfg, isolated, work_dir, tracker)
    except BaseException as exc:
        tracker.on_run_end({}, error=one_line_error(exc))
        raise
    if result is None:  # a data-parallel run's other processes: rank 0 reports the run
        return None
    tracker.on_run_end(result.fields, adapter_dir=work_dir / "adapter")
    from harness.run.provenance import run_provenance

    return {**result.fields, **run_provenance(cfg.trainer.device.value)}, result.curves, result.predictions


def arrays(predictions: dict) -> dict:
    """Predictions read back from JSON (the inverse of :func:`lists`)."""
    import numpy as np

    return {split: {k: np.asarray(v) for k, v in arrays.items()} for split, arrays in predictions.items()}


def lists(predictions: dict) -> dict:
    """Predictions as JSON can hold them."""
    return {split: {k: v.tolist() if hasattr(v, "tolist") else list(v) for k, v in arrays.items()}
            for split, arrays in predictions.items()}
