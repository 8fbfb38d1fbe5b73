"""What the terminal shows: one line per run, and a comparison table when a multirun ends."""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

# Filled by the callback, read by ``harness.__main__`` to choose the exit code of a multirun.
SWEEP_FAILURES: list[dict] = []
# Config hashes of the jobs this command launches (set by ``harness.__main__`` from its preflight);
# with them a sweep's outcome includes the jobs skipped because the store already had them.
EXPECTED_HASHES: list[str] = []

TABLE = [("method", "method"), ("quant", "quant"), ("r", "r"), ("seed", "seed"),
         ("accuracy", "acc"), ("f1_macro", "f1_macro"), ("majority_accuracy", "majority"),
         ("trainable_params", "trainable"), ("peak_memory_mib", "peak_MiB"),
         ("train_samples_per_s", "samples/s"), ("infer_latency_ms", "latency_ms"),
         ("wall_s", "wall_s")]


def print_row(row: dict) -> None:
    if row["status"] == "skipped":
        print(f"[harness] skipped {row['method']} on {row['task']} ({row['model']}, "
              f"quant={row['quant']}, r={row['r']}, seed {row['seed']}): already finished in the "
              f"store (config {row['config_hash']}); force=true runs it again")
        return
    if row["status"] != "finished":
        print(f"[harness] run FAILED ({row['method']}, seed {row['seed']}): {row.get('error')}")
        return
    print(f"[harness] {row['method']} on {row['task']} ({row['model']}, quant={row['quant']}, "
          f"seed {row['seed']}): accuracy {row['accuracy']:.4f}, macro-F1 {row['f1_macro']:.4f} "
          f"(majority {row['majority_accuracy']:.4f}); peak {row['memory_kind']} "
          f"{row['peak_memory_bytes'] / 2**20:.0f} MiB; {row['train_samples_per_s']:.1f} samples/s; "
          f"wall {row['wall_s']:.1f}s")


def comparison_table(df: pd.DataFrame) -> str:
    df = df.copy()
    df["peak_memory_mib"] = df["peak_memory_bytes"] / 2**20
    cols = [c for c, _ in TABLE if c in df.columns]
    out = df[cols].rename(columns=dict(TABLE))
    return out.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def sweep_outcome(df: pd.DataFrame, sweep: str, hashes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(finished, failed) runs of a sweep, one row per job.

    With the jobs' config hashes, a job counts as finished if the store holds a finished run of
    its config from any sweep (a re-run skips those), else as failed with its latest error, or
    with "no run recorded" if it has none. Without them, the sweep label selects the rows.
    """
    if not hashes:
        mine = df[df["sweep"] == sweep]
        return mine[mine["status"] == "finished"], mine[mine["status"] == "failed"]
    rows = df[df["config_hash"].isin(hashes)].copy()
    rows["_rank"] = (rows["status"] == "finished").astype(int)
    rows["_order"] = range(len(rows))  # the store returns runs oldest first
    best = rows.sort_values(["_rank", "_order"]).groupby("config_hash").tail(1)
    best = best.drop(columns=["_rank", "_order"])
    done, failed = best[best["status"] == "finished"], best[best["status"] == "failed"]
    missing = [h for h in dict.fromkeys(hashes) if h not in set(best["config_hash"])]
    if missing:
        failed = pd.concat([failed, pd.DataFrame({"config_hash": missing, "status": "missing",
                                                  "error": "no run recorded"})])
    return done, failed


class SweepSummary(Callback):
    """At the end of a multirun, print this sweep's runs side by side and list what failed.

    Its failures (also kept in :data:`SWEEP_FAILURES`) make the command exit non-zero. With
    ``tracker=wandb`` the table also goes to one wandb summary run.
    """

    started_at = ""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from harness.results import load

        sweep = config.store.sweep or str(config.hydra.sweep.dir)
        df = load(config.store.url, decode=False)
        done, failed = sweep_outcome(df, sweep, list(EXPECTED_HASHES))
        SWEEP_FAILURES.extend(failed.to_dict("records"))
        if config.tracker.name == "wandb" and len(done) + len(failed):
            _log_to_tracker(config, sweep, done, failed)
        if not config.get("summary", True):
            return
        earlier = int((done["created_at"] < self.started_at).sum())
        print(f"\n[harness] sweep {sweep}: {len(done)} finished"
              + (f" ({earlier} of them before this command, skipped)" if earlier else "")
              + f", {len(failed)} failed (store: {config.store.url})")
        if len(done):
            print(comparison_table(done.sort_values(["method", "quant", "r", "seed"])))
        for _, row in failed.iterrows():
            what = (f"{row['method']} quant={row['quant']} r={row['r']} seed={row['seed']}"
                    if isinstance(row.get("method"), str) else f"config {row['config_hash']}")
            print(f"  FAILED {what}: {row['error']}")


def _log_to_tracker(config: DictConfig, sweep: str, done: pd.DataFrame, failed: pd.DataFrame) -> None:
    table = done.copy()
    table["peak_memory_mib"] = table["peak_memory_bytes"] / 2**20
    table = table[["run_id", "task", "model"] + [c for c, _ in TABLE if c in table.columns]]
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
