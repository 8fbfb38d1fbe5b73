"""What the steps of one run hand each other: the set-up run (model, method, data, batches),
the test's results, and what the store records of a finished run."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

    from harness.methods import Adapted
    from harness.models.load import LoadedModel
    from harness.tasks import TaskData
    from harness.tasks.cutting import Encoded
    from harness.tasks.types import TaskType

SPLITS = ("train", "validation", "test")

@dataclass
class Setup:
    """Everything a run trains and measures, built from its config."""

    device: torch.device
    use_bf16: bool
    data: TaskData
    kind: TaskType
    loaded: LoadedModel
    adapted: Adapted
    encoded: dict[str, Encoded]
    batches: dict[str, DataLoader]
    trainable: int = 0  # counted after the method's "before training" hook
    total: int = 0


@dataclass
class Tested:
    metrics: dict[str, float]  # test split, the selected epoch's weights
    curves: list[dict] = field(default_factory=list)  # per-task and per-variant test scores
    # {split: {"labels", "predictions", "majority": one entry per example, in split order}}
    predictions: dict = field(default_factory=dict)


@dataclass
class RunResult:
    """What the store records for a finished run: its fields and its curves."""

    fields: dict
    curves: list[dict]
    predictions: dict = field(default_factory=dict)  # Tested.predictions
