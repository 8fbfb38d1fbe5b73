"""From a task config to its splits: load, check, encode the labels, split."""
from __future__ import annotations

import pandas as pd

from harness.tasks.data import TASK_LOADERS, Split, TaskData, TaskDataError
from harness.tasks.splits import split_frame
from harness.tasks.types import task_type


def load_task(cfg) -> TaskData:
    frame = TASK_LOADERS.get(cfg.loader)(cfg)
    kind = task_type(getattr(cfg, "task_type", "single_label"))
    needed = ["text", "label", *kind.columns]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise TaskDataError(f"task {cfg.name}: loader gave no column(s) {missing}")
    attrs = dict(frame.attrs)
    frame = frame.dropna(subset=["text", "label"]).reset_index(drop=True)
    frame.attrs.update(attrs)
    if len(frame) == 0:
        raise TaskDataError(f"task {cfg.name}: no rows with both a text and a label")
    label_names, encode = kind.encode_labels(frame, cfg)
    parts = split_frame(frame, cfg)

    # A multi-task loader adds a "task" column (see harness/tasks/multitask.py).
    task_names = list(dict.fromkeys(frame["task"])) if "task" in frame.columns else []

    def to_split(part: pd.DataFrame) -> Split:
        task_ids = [task_names.index(t) for t in part["task"]] if task_names else None
        extra = {c: [list(map(str, v)) for v in part[c]] for c in kind.columns}
        return Split([str(t) for t in part["text"]], encode(part["label"]), task_ids, **extra)

    return TaskData(cfg.name, to_split(parts["train"]), to_split(parts["validation"]),
                    to_split(parts["test"]), label_names,
                    source=str(frame.attrs.get("source", cfg.loader)), task_names=task_names,
                    type=kind)
