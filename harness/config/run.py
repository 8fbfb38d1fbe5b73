"""The whole composed config of one run: every group's schema, and the fields of no group."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from harness.config.checks import check
from harness.config.method import MethodConfig
from harness.config.model import ModelConfig
from harness.config.protocol import ProtocolConfig
from harness.config.quant import QuantConfig
from harness.config.report import ReportConfig
from harness.config.store import StoreConfig, TrackerConfig
from harness.config.task import TaskConfig
from harness.config.trainer import TrainerConfig


@dataclass
class RunConfig:
    method: MethodConfig = field(default_factory=MethodConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    seed: int = 0
    # Re-run jobs whose config is already recorded as finished in the store (default: skip them).
    force: bool = False
    # Print the comparison table of this sweep's runs when a multirun ends.
    summary: bool = True
    # Modules (or .py files) of the user's own plug-ins, imported before the config is checked.
    plugins: list[str] = field(default_factory=list)

    @property
    def fsdp_every_process_loads(self) -> Optional[str]:
        """Why every process of an FSDP run must load the weights itself (None: the first one can
        read them and send each process its shards, harness.run.fsdp)."""
        if self.quant.load_in_4bit:
            return "bitsandbytes' 4-bit weights cannot be built without their data (on the meta device)"
        if self.method.reads_data_before_training:
            return f"method={self.method.name} passes training data through the loaded weights before training"
        return None

    def __post_init__(self) -> None:
        check(self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")
        for task in [self.task, *getattr(self.task, "subtasks", {}).values()]:
            check(task.split_seed >= 0, f"task.split_seed must be an integer >= 0, got {task.split_seed!r}")
