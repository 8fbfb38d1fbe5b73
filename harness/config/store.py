"""The ``store`` and ``tracker`` config groups: where runs are recorded, and where they are also
logged for browsing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from harness.config.enums import TrackerMode


@dataclass
class StoreConfig:
    # Where results go: a file path or sqlite:///path (relative paths are taken from the directory
    # the command was started in); other schemes pick other backends (harness.results.store.STORE_BACKENDS).
    url: str = "results/results.sqlite"
    sweep: Optional[str] = None  # a label to select this sweep's runs by; default: Hydra's sweep dir


@dataclass
class TrackerConfig:
    """Where runs are also logged for browsing (``harness.tracking``); never changes results."""

    name: str = "none"
    project: str = "peft-harness"
    entity: Optional[str] = None
    mode: TrackerMode = TrackerMode.auto
    # Folder under which wandb writes its runs (null: WANDB_DIR, else the working directory).
    dir: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    log_adapter: bool = False  # upload each run's adapter as a model artifact
    # PNGs in this folder are logged with the sweep's summary run (e.g. the report's plots).
    plots_dir: Optional[str] = None
