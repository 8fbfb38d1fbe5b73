"""What the terminal shows: one line per run, and the sweep's outcome when a command ends.

A sweep's outcome comes from the store, from the rows of the config hashes its command
launched (:class:`Launch` from the preflight), so it is right whichever launcher ran the jobs and
wherever they ran: nothing is collected from the jobs themselves.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness import fields
from harness.results import identity

# The file that holds the running command's plan (each job's store and config, start time), set by
# ``harness.__main__`` in the process that launches the sweep and read by its callbacks there.
LAUNCH_ENV = "PEFT_HARNESS_PLAN"


def print_row(row: dict, store: str | None = None) -> None:
    """A run's line on the terminal; then, for a run that trained, where its row and folder are."""
    _print_outcome(row)
    if row["status"] != "skipped" and not row.get("unrecorded") and store:
        from harness.results.store import redact

        folder = row.get("run_dir")
        if folder and Path(folder).is_relative_to(Path.cwd()):
            folder = Path(folder).relative_to(Path.cwd())
        print(f"          recorded as run {row['run_id']} in {redact(store)}"
              + (f"; files in {folder}" if folder else ""))


def _print_outcome(row: dict) -> None:
    if row["status"] == "skipped":
        why = (row.get("skip_reason") or "already finished in the store") + \
            f" (config {row['config_hash']})"
        if not row.get("skip_reason"):
            why += "; force=true runs it again"
        print(f"[harness] skipped {row['method']} on {row['task']} ({row['model']}, "
              f"quant={row['quant']}, r={row['r']}, seed {row['seed']}): {why}")
        return
    if row.get("unrecorded"):  # the runner said it, in one line with the command that records it
        return
    if row["status"] != "finished":
        print(f"[harness] run FAILED ({row['method']}, seed {row['seed']}): {row.get('error')}")
        return
    def num(key: str, spec: str, scale: float = 1.0) -> str:
        return "n/a" if row.get(key) is None else format(row[key] / scale, spec)

    speed = ("no training" if row.get("train_samples_per_s") is None
             else f"{row['train_samples_per_s']:.1f} samples/s")
    print(f"[harness] {row['method']} on {row['task']} ({row['model']}, quant={row['quant']}, "
          f"seed {row['seed']}): accuracy {num('accuracy', '.4f')}, macro-F1 {num('f1_macro', '.4f')} "
          f"(majority {num('majority_accuracy', '.4f')}); peak {row['memory_kind']} "
          f"{num('peak_memory_bytes', '.0f', 2**20)} MiB; {speed}; wall {row['wall_s']:.1f}s")


def comparison_table(df: pd.DataFrame) -> str:
    columns = fields.terminal_columns()
    if "stage" in df.columns and df["stage"].notna().any():  # a tuned protocol's search and finals
        at = [c for c, _ in columns].index("seed") + 1
        columns = columns[:at] + [("stage", "stage")] + columns[at:]
    df = fields.with_display_columns(df.copy())
    out = df[[c for c, _ in columns if c in df.columns]].rename(columns=dict(columns))
    return out.to_string(index=False, float_format=lambda v: f"{v:.4g}")


@dataclass
class Outcome:
    finished: pd.DataFrame  # one row per job whose config has a finished run
    failed: pd.DataFrame  # one row per job that failed or left no row (status "missing")
    earlier: int = 0  # finished before this command started (skipped by it)


def sweep_outcome(df: pd.DataFrame, hashes: list[str], since: str,
                  claims: pd.DataFrame | None = None) -> Outcome:
    """The outcome of the jobs with these config hashes, for a command started at ``since``.

    A job's rows written since the command started decide it (finished if one finished, else
    failed with its latest error); without any, a finished row from before counts (the command
    skipped it); without that, the job is failed with "no run recorded", or with "still running
    in <owner>" when another process holds its claim (``claims``, the store's claims table).
    """
    wanted = list(dict.fromkeys(hashes))
    rows = df[df["config_hash"].isin(wanted)].copy()
    rows["_now"] = (rows["created_at"].astype(str) >= since).astype(int)
    rows["_done"] = (rows["status"] == "finished").astype(int)
    rows["_order"] = range(len(rows))  # the store returns runs oldest first
    # Per hash, prefer this command's rows, then finished ones, then the latest.
    best = rows.sort_values(["_now", "_done", "_order"]).groupby("config_hash").tail(1)
    earlier = int(((best["_now"] == 0) & (best["_done"] == 1)).sum())
    best = best.drop(columns=["_now", "_done", "_order"])
    done, failed = best[best["status"] == "finished"], best[best["status"] != "finished"]
    missing = [h for h in wanted if h not in set(best["config_hash"])]
    if missing:
        held = {} if claims is None else dict(zip(claims["config_hash"], claims["owner"]))
        errors = [f"no run recorded: still running in {held[h]} (claimed in the store)" if h in held
                  else "no run recorded" for h in missing]
        failed = pd.concat([failed, pd.DataFrame({"config_hash": missing, "status": "missing",
                                                  "error": errors})])
    return Outcome(done, failed, earlier)


def command_outcome(jobs: list[tuple[str, dict]], since: str, dynamic: bool = False) -> Outcome:
    """The outcome of a command's jobs, given as (store url, resolved config), from their stores:
    one run per job, or every run of a tuned protocol's grid point (harness.sweep.protocol). Under a
    ``dynamic`` sweeper (Optuna) the jobs are not known in advance: the configs with rows written
    since the command started are its jobs."""
    from harness.sweep.protocol import expected_hashes
    from harness.results.retry import PatientStore, load_patiently

    parts = []
    for url in dict.fromkeys(u for u, _ in jobs):  # each store waited for if unreachable
        df = load_patiently(url, decode=False)
        claims = PatientStore(url, create=False).claims()
        finished = df[df["status"] == "finished"]
        if dynamic:
            hashes = list(df.loc[df["created_at"].astype(str) >= since, "config_hash"])
        else:
            hashes = [h for u, config in jobs if u == url for h in expected_hashes(config, finished)]
        parts.append(sweep_outcome(df, hashes, since, claims))
    return Outcome(pd.concat([p.finished for p in parts]), pd.concat([p.failed for p in parts]),
                   sum(p.earlier for p in parts))


def write_launch(jobs: list[tuple[str, dict]], since: str, folder: Path) -> Path:
    path = folder / f"plan-{os.getpid()}.json"
    path.write_text(json.dumps({"jobs": jobs, "since": since}, default=str))
    os.environ[LAUNCH_ENV] = str(path)
    return path


def read_launch() -> tuple[list[tuple[str, dict]], str] | None:
    path = os.environ.get(LAUNCH_ENV)
    if not path or not Path(path).is_file():
        return None
    plan = json.loads(Path(path).read_text())
    return [tuple(j) for j in plan["jobs"]], plan["since"]


class SweepSummary(Callback):
    """At the end of a multirun, print the sweep's runs side by side and list what failed; with
    ``tracker=wandb`` the table also goes to one wandb summary run. The command's exit code is
    worked out from the same store rows by ``harness.__main__``."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from harness.results.store import StoreError
        from harness.job.unrecorded import settle_kept

        sweep = identity.sweep_label(config.store.sweep, config.get("hydra"))
        plan = read_launch()
        # Runs kept on disk while the store was unreachable are recorded first, if it is back.
        folder = ((config.get("hydra") or {}).get("sweep") or {}).get("dir")
        kept = settle_kept(Path(str(folder)), [u for u, _ in plan[0]] if plan else [config.store.url],
                           plan[1] if plan else "1970-01-01T00:00:00+00:00") if folder else []
        try:
            outcome = self._outcome(config, sweep, plan)
        except StoreError as exc:  # unreachable past the patience, or gone: said, not raised
            print(f"\n[harness] sweep {sweep}: the outcome cannot be read from the store: {exc}",
                  *kept, sep="\n")
            return
        done, failed = outcome.finished, outcome.failed
        if config.tracker.name == "wandb" and len(done) + len(failed):
            _log_to_tracker(config, sweep, done, failed)
        if not config.get("summary", True):
            return
        from harness.results.store import redact

        print(f"\n[harness] sweep {sweep}: {len(done)} finished"
              + (f" ({outcome.earlier} of them before this command, skipped)" if outcome.earlier else "")
              + f", {len(failed)} failed (store: {redact(config.store.url)})")
        if len(done):
            order = [c for c in ("method", "quant", "r", "stage", "lr", "seed") if c in done.columns]
            print(comparison_table(done.sort_values(order, na_position="first")))
        for _, row in failed.iterrows():
            what = (f"{row['method']} quant={row['quant']} r={row['r']} seed={row['seed']}"
                    if isinstance(row.get("method"), str) else f"config {row['config_hash']}")
            print(f"  FAILED {what}: {row['error']}")
        for line in kept:
            print(line)

    @staticmethod
    def _outcome(config: DictConfig, sweep: str, plan) -> Outcome:
        if plan is None:  # not started by ``python -m harness``: the sweep label selects
            from harness.results.retry import load_patiently

            df = load_patiently(config.store.url, decode=False)
            mine = df[df["sweep"] == sweep]
            return Outcome(mine[mine["status"] == "finished"], mine[mine["status"] != "finished"])
        return command_outcome(*plan, dynamic=is_dynamic(config))


def is_dynamic(config: DictConfig) -> bool:
    target = str(config.get("hydra", {}).get("sweeper", {}).get("_target_", ""))
    return bool(target) and not target.endswith("BasicSweeper")


def _log_to_tracker(config: DictConfig, sweep: str, done: pd.DataFrame, failed: pd.DataFrame) -> None:
    table = fields.with_display_columns(done.copy())
    table = table[["run_id", "task", "model"] + [c for c, _ in fields.terminal_columns() if c in table.columns]]
    errors = failed[[c for c in ("run_id", "method", "quant", "r", "seed", "config_hash", "error")
                     if c in failed.columns]]
    try:
        from harness.tracking.wandb_tracker import log_sweep_summary

        log_sweep_summary(config.tracker, sweep, table, errors, report_plots(config))
    except Exception as exc:  # noqa: BLE001 - tracking never fails a sweep
        print(f"[harness] could not log the sweep summary to {config.tracker.name} "
              f"({type(exc).__name__}: {exc}); the store has everything", file=sys.stderr)


def report_plots(config: DictConfig) -> list[Path]:
    """PNG plots to attach to the sweep's summary run: those in ``tracker.plots_dir`` if set,
    else the figures of the report this sweep just wrote (Hydra ends callbacks in reverse order,
    so the report callback, listed after this one, has run)."""
    folder = config.tracker.get("plots_dir")
    if not folder and config.get("report") is not None and config.report.get("enabled", True):
        folder = Path(config.report.get("out_dir") or Path(str(config.hydra.sweep.dir)) / "report") / "figures"
    return sorted(Path(folder).glob("*.png")) if folder and Path(folder).is_dir() else []
