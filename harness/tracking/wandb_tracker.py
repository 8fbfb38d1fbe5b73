"""wandb: one run per job, grouped by sweep, and one summary run per multirun.

Without an API key (``WANDB_API_KEY`` or a ``~/.netrc`` entry) runs are written offline, which is
said once, with the ``wandb sync`` command that uploads them later; an online start that fails
(no network) falls back to offline too. ``WANDB_MODE`` in the environment wins over
``tracker.mode``.
"""
from __future__ import annotations

import netrc
import os
import shlex
import sys
from pathlib import Path
from urllib.parse import urlparse

_said_offline = False


def has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(tracker_cfg) -> str:
    """online, offline or disabled: WANDB_MODE, else tracker.mode, else whether a key exists."""
    env = os.environ.get("WANDB_MODE")
    if env:
        return "offline" if env == "dryrun" else env
    mode = getattr(tracker_cfg.mode, "value", tracker_cfg.mode)
    if mode != "auto":
        return mode
    return "online" if has_api_key() else "offline"


def _say_offline(root: Path, why: str) -> None:
    global _said_offline
    if not _said_offline:
        print(f"[harness] wandb: {why}; logging offline under {root / 'wandb'}; upload later with "
              f"`wandb sync {shlex.quote(str(root / 'wandb'))}/offline-run-*`", file=sys.stderr)
        _said_offline = True


def init_run(tracker_cfg, **kwargs):
    """``wandb.init`` in the resolved mode; offline (and saying so) when online cannot start."""
    import wandb

    root = Path(tracker_cfg.dir or os.environ.get("WANDB_DIR") or os.getcwd())
    root.mkdir(parents=True, exist_ok=True)
    mode = resolve_mode(tracker_cfg)
    settings = wandb.Settings(quiet=True, reinit="finish_previous", init_timeout=60)
    common = dict(project=tracker_cfg.project, entity=tracker_cfg.entity, dir=str(root),
                  settings=settings, **kwargs)
    if mode == "offline":
        _say_offline(root, "WANDB_MODE=offline" if os.environ.get("WANDB_MODE") else
                     "no API key found (set WANDB_API_KEY or run `wandb login`)")
    if mode == "online":
        try:
            return wandb.init(mode="online", **common)
        except Exception as exc:  # noqa: BLE001 - unreachable server, bad key...
            _say_offline(root, f"online start failed ({type(exc).__name__})")
            mode = "offline"
    return wandb.init(mode=mode, **common)


def run_name(row: dict) -> str:
    rank = "" if row.get("r") is None else f"-r{row['r']}"
    return f"{row['method']}-{row['task']}-{row['model']}-{row['quant']}{rank}-s{row['seed']}"


def run_tags(row: dict, extra: list[str]) -> list[str]:
    axes = ("method", "task", "model", "quant", "r", "seed")
    return [f"{k}:{row[k]}" for k in axes if row.get(k) is not None] + list(extra)


class WandbTracker:
    def __init__(self, tracker_cfg) -> None:
        self.cfg = tracker_cfg
        self.run = None

    def on_run_start(self, row: dict, config: dict) -> None:
        self.row = row
        self.run = init_run(self.cfg, id=row["run_id"], name=run_name(row),
                            group=(row.get("sweep") or "")[-128:] or None, job_type="train",
                            tags=run_tags(row, self.cfg.tags), config=config)
        self.run.define_metric("train/step")
        self.run.define_metric("train/*", step_metric="train/step")
        self.run.define_metric("epoch")
        self.run.define_metric("validation/*", step_metric="epoch")
        self.run.define_metric("train/epoch_loss", step_metric="epoch")

    def log_step(self, step: int, loss: float, lr: float) -> None:
        self.run.log({"train/step": step, "train/loss": loss, "train/lr": lr})

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.run.log({"epoch": epoch, **metrics})

    def on_run_end(self, summary: dict, adapter_dir: Path | None = None,
                   error: str | None = None) -> None:
        import wandb

        if self.run is None:
            return
        self.run.summary.update({**summary, "run_id": self.row["run_id"],
                                 "config_hash": self.row.get("config_hash"),
                                 "status": "failed" if error else "finished",
                                 **({"error": error} if error else {})})
        if self.cfg.log_adapter and adapter_dir is not None and Path(adapter_dir).is_dir():
            artifact = wandb.Artifact(f"adapter-{self.row['run_id']}", type="model",
                                      metadata={k: self.row.get(k) for k in ("method", "model", "r")})
            artifact.add_dir(str(adapter_dir))
            self.run.log_artifact(artifact)
        self.run.finish(exit_code=1 if error else 0)
        self.run = None


def log_sweep_summary(tracker_cfg, sweep: str, table, failed, plots: list[Path]) -> None:
    """One run holding a multirun's comparison table, its failures and the report's plots."""
    import wandb

    run = init_run(tracker_cfg, name=f"summary {Path(sweep).name}", group=sweep[-128:],
                   job_type="sweep-summary", tags=["sweep-summary", *tracker_cfg.tags])
    run.log({"comparison": wandb.Table(dataframe=table.reset_index(drop=True))})
    if len(failed):
        run.log({"failed": wandb.Table(dataframe=failed.reset_index(drop=True))})
    for png in plots:
        run.log({f"plots/{png.stem}": wandb.Image(str(png))})
    run.summary.update({"finished": int(len(table)), "failed": int(len(failed))})
    run.finish()
