"""Several tasks in one run: the data of each sub-task, tagged with its task, in one label space.

A multi-task config lists its sub-tasks as whole task configs (composed by Hydra from their own
YAML files, see ``conf/task/multi_synthetic.yaml``). Each sub-task is split as it would be on its
own; its labels become ``<task>:<label>`` in the union label space that one classification head
predicts, so every method runs on multi-task data unchanged. Each example carries its task's
index (``Split.task_ids``); the training loop hands it to the method (``Adapted.condition``), and
the runner records test metrics per task as curves rows with ``variant = "task:<name>"``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.config import ConfigError, TaskConfig, register_task_schema
from harness.tasks.data import TASK_LOADERS, Split, TaskData
from harness.tasks.load import load_task


@dataclass
class MultiTaskConfig(TaskConfig):
    loader: str = "multitask"
    # task name -> that task's config; the order here is the order of the task ids.
    subtasks: dict[str, TaskConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.subtasks) < 2:
            raise ConfigError(f"task.subtasks must list at least 2 tasks, got {list(self.subtasks)}")
        nested = [name for name, sub in self.subtasks.items() if sub.loader == "multitask"]
        if nested:
            raise ConfigError(f"task.subtasks.{nested[0]}: a sub-task cannot itself be multi-task")


register_task_schema("multitask", MultiTaskConfig)


def task_names(task_cfg) -> list[str]:
    """The tasks of a run in task-id order: the sub-tasks, or the one task of a plain config."""
    subtasks = getattr(task_cfg, "subtasks", None)
    return list(subtasks) if subtasks else [task_cfg.name]


@TASK_LOADERS.register("multitask")
def load_multitask(cfg) -> pd.DataFrame:
    """Each sub-task split on its own, labels prefixed by task name, a ``task`` column added."""
    frames, sources, dropped = [], [], {}
    for name, sub in cfg.subtasks.items():
        data = load_task(sub)
        sources.append(f"{name}={data.source}")
        for reason, n in data.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + n
        for split in ("train", "validation", "test"):
            part = getattr(data, split)
            frames.append(pd.DataFrame({
                "text": part.texts,
                "label": [f"{name}:{data.label_names[i]}" for i in part.labels],
                "split": split, "task": name}))
    out = pd.concat(frames, ignore_index=True)
    out.attrs["source"] = "multitask(" + ", ".join(sources) + ")"
    out.attrs["dropped"] = dropped  # the sub-tasks' rows left out, counted by load_task
    return out


def per_task_splits(data: TaskData, split: Split) -> list[tuple[str, Split, list[int]]]:
    """(task name, that task's examples, the label ids of that task) for multi-task data."""
    if not data.task_names or split.task_ids is None:
        return []
    ids = np.asarray(split.task_ids)
    out = []
    for i, name in enumerate(data.task_names):
        rows = np.flatnonzero(ids == i)
        labels = [j for j, label in enumerate(data.label_names) if label.startswith(f"{name}:")]
        out.append((name, Split([split.texts[r] for r in rows], [split.labels[r] for r in rows],
                                [i] * len(rows)), labels))
    return out


@TASK_LOADERS.register("synthetic_inverted")
def load_synthetic_inverted(cfg) -> pd.DataFrame:
    """The synthetic sentiment set with its labels swapped: the same texts as ``synthetic`` with
    the opposite answers, so that in a mix of the two only a model told the task can be right."""
    frame = TASK_LOADERS.get("synthetic")(cfg)
    swap = {"positive": "negative", "negative": "positive"}
    out = frame.assign(label=frame["label"].map(swap))
    out.attrs["source"] = frame.attrs.get("source", "synthetic") + ",labels=inverted"
    return out
