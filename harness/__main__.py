"""Entry point: ``python -m harness [overrides]`` or ``python -m harness -m method=lora,dora``.

Exit codes: 0 when every run finished (or was already finished in the store), 1 when a run
failed (it is recorded, and a multirun still runs the others), 2 for bad input, which is
reported in one line before anything trains. The exit code comes from the store's rows for the
command's jobs, whichever launcher ran them.
"""
from __future__ import annotations

import math
import os
import socket
import sys
import tempfile
from pathlib import Path

from harness.quiet import quiet_libraries

quiet_libraries()

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from harness.errors import ConfigError  # noqa: E402
from harness.identity import now_utc  # noqa: E402
from harness.paths import conf_dir  # noqa: E402
from harness.plugins import plugins_in_overrides  # noqa: E402
from harness.preflight import PreflightError, preflight  # noqa: E402
from harness.results.store import StoreError  # noqa: E402
from harness.validation import register_schemas  # noqa: E402

BAD_INPUT = (ConfigError, PreflightError, StoreError)


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def _job(cfg: DictConfig) -> float:
    """One grid point (one run, or a tuned protocol's runs); returns its validation value of
    ``trainer.select_metric`` (the best search trial's under protocol=tuned; NaN if none
    finished), so that a Hydra sweeper that optimizes an objective (Optuna) can use it."""
    from harness.fields import better
    from harness.protocol import run_grid_point
    from harness.results import load
    from harness.summary import print_row

    try:
        rows = run_grid_point(cfg)
    except BAD_INPUT as exc:  # only reached when the preflight was skipped
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    for row in rows:
        print_row(row)
    finished = load(cfg.store.url, status="finished", decode=False).drop_duplicates("config_hash", keep="last")
    values = finished.set_index("config_hash")["select_value"]
    best = None
    for row in rows:
        if row["status"] != "failed" and row.get("stage") != "final" and row["config_hash"] in values.index:
            value = values[row["config_hash"]]
            if value is not None and not math.isnan(value) and better(cfg.trainer.select_metric, value, best):
                best = float(value)
    return math.nan if best is None else best


def _runs_workers_here(argv: list[str], plan) -> bool:
    """Whether this process starts the runs' workers: some job is isolated and the launcher is
    Hydra's basic one (another launcher runs the jobs in processes of its own)."""
    from harness.fingerprint import device_kind
    from harness.launchers import launcher_of

    if launcher_of(argv) != "basic":
        return False
    # CUDA runs start fresh interpreters (harness.isolation): no fork server for them.
    return any((c.get("trainer") or {}).get("isolate", True)
               and device_kind((c.get("trainer") or {}).get("device", "auto")) != "cuda"
               for c in plan.configs)


def main() -> None:
    from harness.summary import PLAN_ENV, command_outcome, write_plan

    from harness.isolation import SWEEP_HOST_ENV, SWEEP_PID_ENV

    argv = sys.argv[1:]
    since = now_utc()
    # A launcher's worker processes (joblib, ...) end with this process (harness.runner).
    os.environ[SWEEP_PID_ENV], os.environ[SWEEP_HOST_ENV] = str(os.getpid()), socket.gethostname()
    try:
        register_schemas(plugins_in_overrides(argv))
        plan = preflight(argv)
    except BAD_INPUT as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if plan is not None and _runs_workers_here(argv, plan):
        from harness.isolation import warm_up

        warm_up()  # the fork server imports torch while Hydra composes the jobs
    with tempfile.TemporaryDirectory(prefix="harness-plan-") as folder:
        try:
            if plan is not None:
                write_plan(plan.jobs_in_stores, since, Path(folder))
            _job()
        finally:
            os.environ.pop(PLAN_ENV, None)
    if plan is not None and len(command_outcome(plan.jobs_in_stores, since, plan.dynamic).failed):
        sys.exit(1)


if __name__ == "__main__":
    main()
