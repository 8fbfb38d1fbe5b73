"""What a task's data is: the loader registry, the splits, and the one error every loader raises.

A loader declares what it needs where it is registered::

    @TASK_LOADERS.register("scotus_outcome", data_path="required", example="path/to/scotus.csv")

``data_path``: ``"required"`` (it cannot run without ``task.data_path``; ``example`` is the path
the error messages suggest, ``<task>`` in it stands for the task's name), ``"optional"`` (it
reads ``task.data_path`` when set), or left out (it never reads one). See :func:`data_path_hint`.

``reads``: ``"file"`` when the loader reads ``task.data_path`` as one local file with pandas or
the standard library (no model libraries, no network): the preflight then loads it with the
loader and checks the task's data before anything trains (:mod:`harness.tasks.check`).
``"folder"`` when it reads a local folder; ``check`` (a function of the task config) is then the
preflight's cheap look at it. Left out: the preflight only checks that the path exists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pandas as pd

from harness.registry import Registry

TASK_LOADERS: Registry[Callable[..., pd.DataFrame]] = Registry("task loader")


class TaskDataError(ValueError):
    """Data that cannot make a task (missing file or column, empty split); message is one line."""


@dataclass
class Split:
    texts: list[str]
    labels: list  # class indices; 0/1 vectors (multi-label); the right choice (multiple choice)
    # Multi-task data: the index into TaskData.task_names of each example's task.
    task_ids: list[int] | None = None
    choices: Optional[list[list[str]]] = None  # candidate answers per text (multiple choice)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class TaskData:
    name: str
    train: Split
    validation: Split
    test: Split
    label_names: list[str]
    source: str  # where the data came from, for provenance
    task_names: list[str] = field(default_factory=list)  # multi-task data only
    # The task type (harness.tasks.types.TaskType) that encoded the labels and scores them.
    type: Any = None
    # Rows of the data left out, by reason ("no label", "no text"): see load_task.
    dropped: dict[str, int] = field(default_factory=dict)
    # Validation and test examples whose text (and choices) a training example has too: see
    # harness.tasks.load.repeated_in_train.
    in_train: dict[str, int] = field(default_factory=dict)

    @property
    def dropped_rows(self) -> int:
        """Rows of the data left out for a missing label or text (recorded as ``dropped_rows``)."""
        return sum(self.dropped.values())

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def task_type(self) -> str:
        return self.type.name

    def majority_metrics(self) -> dict[str, float]:
        """Test metrics of always predicting the train split's most common label (or label set)."""
        return self.type.majority_metrics(self.train.labels, self.test.labels, self.num_labels)

    def majority_accuracy(self) -> float:
        return self.majority_metrics()["accuracy"]


def data_path_hint(loader: str, task: str | None = None) -> str | None:
    """The example ``task.data_path`` of a loader that needs a data file, else None.

    ``<task>`` in the example becomes ``task`` (the task's name) when given. Unknown loaders give
    None (the config check names them).
    """
    if loader not in TASK_LOADERS:
        return None
    info = TASK_LOADERS.info(loader)
    if info.get("data_path") != "required":
        return None
    example = str(info.get("example") or "path/to/data")
    return example.replace("<task>", task) if task else example
