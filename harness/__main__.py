"""Entry point: ``python -m harness [overrides]`` or ``python -m harness -m method=lora,dora``.

Exit codes: 0 when every run finished (or was already finished in the store), 1 when a run
failed (it is recorded, and a multirun still runs the others), 2 for bad input, which is
reported in one line before anything trains. The exit code comes from the store's rows for the
command's jobs, whichever launcher ran them; a run kept in its folder because the store could not
take it (``unrecorded.json``) counts as not recorded (1). A store that goes unreachable mid-sweep
is waited for (``$PEFT_HARNESS_STORE_RETRY_S``, :mod:`harness.results.retry`): an outage is not
bad input and never exits 2 (a store that cannot be reached when the command starts is reported
by the preflight, like a wrong address, before anything runs).

A password in a PostgreSQL ``store.url`` is taken off the command line before Hydra or anything
else reads it (:mod:`harness.results.secrets`): no file, log or record of the command holds it.
"""
from __future__ import annotations

import gc
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
from harness.results.identity import now_utc  # noqa: E402
from harness.paths import conf_dir  # noqa: E402
from harness.job.plugins import plugins_in_overrides  # noqa: E402
from harness.sweep.preflight import PreflightError, preflight  # noqa: E402
from harness.results.retry import load_patiently, retry_budget  # noqa: E402
from harness.results.secrets import hide_passwords  # noqa: E402
from harness.results.store import StoreError, StoreUnreachable  # noqa: E402
from harness.job.validation import register_schemas  # noqa: E402

BAD_INPUT = (ConfigError, PreflightError, StoreError)


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def _job(cfg: DictConfig) -> float:
    """One grid point (one run, or a tuned protocol's runs); returns its validation value of
    ``trainer.select_metric`` (the best search trial's under protocol=tuned; NaN if none
    finished), so that a Hydra sweeper that optimizes an objective (Optuna) can use it."""
    from harness.fields import better
    from harness.sweep.protocol import run_grid_point
    from harness.sweep.summary import print_row

    try:
        rows = run_grid_point(cfg)
    except StoreUnreachable as exc:  # a tuned protocol's choice needs the store: the others go on
        print(f"[harness] this job stopped: {exc}", file=sys.stderr)
        return math.nan
    except BAD_INPUT as exc:  # only reached when the preflight was skipped
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    for row in rows:
        print_row(row, cfg.store.url)
    try:
        finished = load_patiently(cfg.store.url, status="finished", decode=False)
    except StoreError:  # the store is unreachable or gone: the runs said so, the sweep goes on
        return math.nan
    finished = finished.drop_duplicates("config_hash", keep="last")
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
    from harness.device import device_kind
    from harness.sweep.launchers import launcher_of

    if launcher_of(argv) != "basic":
        return False
    # CUDA runs start fresh interpreters (harness.job.isolation): no fork server for them.
    return any((c.get("trainer") or {}).get("isolate", True)
               and device_kind((c.get("trainer") or {}).get("device", "auto")) != "cuda"
               for c in plan.configs)


def interrupted_line(plan, since: str) -> str:
    """What Ctrl-C leaves: how many of the command's configurations the store holds finished, and
    that the same command resumes (finished configurations are skipped, the one cut off re-runs)."""
    from harness.results.store import redact
    from harness.sweep.summary import command_outcome

    stores = ", ".join(dict.fromkeys(redact(u) for u in (plan.stores if plan else [])))
    os.environ["PEFT_HARNESS_STORE_RETRY_S"] = "0"  # a store that is down now is not waited for
    try:
        outcome = command_outcome(plan.jobs_in_stores, since, plan.dynamic)
        kept = f"{len(outcome.finished)} of {len(outcome.finished) + len(outcome.failed)} configurations " \
               f"are recorded as finished in {stores}"
    except (Exception, KeyboardInterrupt):  # noqa: BLE001 - the line is written whatever happens
        kept = f"what finished is recorded in {stores or 'the store'}"
    return (f"[harness] interrupted: {kept}; the run in progress was not recorded. "
            f"Run the same command again to resume: finished configurations are skipped.")


def main() -> None:
    from harness.sweep.summary import LAUNCH_ENV, command_outcome, write_launch

    from harness.job.isolation import SWEEP_HOST_ENV, SWEEP_PID_ENV

    sys.argv[1:] = hide_passwords(sys.argv[1:])  # before Hydra logs or writes the overrides
    argv = sys.argv[1:]
    since = now_utc()
    # A launcher's worker processes (joblib, ...) end with this process (harness.job.runner).
    os.environ[SWEEP_PID_ENV], os.environ[SWEEP_HOST_ENV] = str(os.getpid()), socket.gethostname()
    try:
        retry_budget()  # a bad $PEFT_HARNESS_STORE_RETRY_S is bad input, said before anything runs
        register_schemas(plugins_in_overrides(argv))
        plan = preflight(argv)
    except BAD_INPUT as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\n[harness] interrupted while checking the command line; nothing ran", file=sys.stderr)
        sys.exit(130)
    if plan is not None and _runs_workers_here(argv, plan):
        from harness.job.isolation import warm_up

        warm_up()  # the fork server imports torch while Hydra composes the jobs
    with tempfile.TemporaryDirectory(prefix="harness-plan-") as folder:
        try:
            if plan is not None:
                write_launch(plan.jobs_in_stores, since, Path(folder))
            _job()
        except KeyboardInterrupt:
            print(f"\n{interrupted_line(plan, since)}", file=sys.stderr)
            sys.exit(130)
        finally:
            os.environ.pop(LAUNCH_ENV, None)
    if plan is None:
        return
    try:
        failed = len(command_outcome(plan.jobs_in_stores, since, plan.dynamic).failed)
    except StoreError as exc:  # unreachable past the patience, or gone (the run said so): not bad input
        if isinstance(exc, StoreUnreachable) and not {"-m", "--multirun"} & set(argv):  # else summed up
            print(f"[harness] the command's outcome cannot be read from the store: {exc}", file=sys.stderr)
        sys.exit(1)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    finally:
        # Python's last garbage collection at exit walks every object of torch, transformers,
        # pandas and matplotlib: about 3 s on 2 CPU cores, for memory the process gives back anyway.
        gc.freeze()
