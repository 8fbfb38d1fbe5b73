"""From a task config to its splits: load, check, encode the labels, split."""
from __future__ import annotations

import pandas as pd

from harness.tasks.data import TASK_LOADERS, Split, TaskData, TaskDataError
from harness.tasks.splits import split_frame
from harness.tasks.types import task_type


def load_rows(cfg) -> pd.DataFrame:
    """The loader's rows that have both a text and a label; ``attrs["dropped"]`` counts the rows
    left out, by reason ("no label", "no text"; a loader may add its own counts there)."""
    frame = TASK_LOADERS.get(cfg.loader)(cfg)
    kind = task_type(getattr(cfg, "task_type", "single_label"))
    needed = ["text", "label", *kind.columns]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise TaskDataError(f"task {cfg.name}: loader gave no column(s) {missing}")
    attrs = dict(frame.attrs)
    no_label, no_text = frame["label"].isna(), frame["text"].isna()
    by_loader = dict(attrs.get("dropped") or {})
    dropped = {"no label": by_loader.pop("no label", 0) + int(no_label.sum()),
               "no text": by_loader.pop("no text", 0) + int((no_text & ~no_label).sum()), **by_loader}
    n_rows = len(frame)
    # The loader's index stays: the task types name a bad row by it (labels.row_of), as the file counts.
    frame = frame[~(no_label | no_text)]
    frame.attrs.update(attrs)
    frame.attrs["dropped"] = {k: v for k, v in dropped.items() if v}
    if len(frame) == 0:
        raise TaskDataError(f"task {cfg.name}: no rows with both a text and a label ({n_rows} rows; "
                            f"{dropped['no label']} without a label in task.label_column="
                            f"{getattr(cfg, 'label_column', 'label')}, {dropped['no text']} without a text)")
    return frame


def load_task(cfg, rows: pd.DataFrame | None = None, short: list[str] | None = None) -> TaskData:
    """The task's splits. ``rows``: :func:`load_rows`'s result, when already loaded (the preflight
    loads a file once for every job that uses it). ``short``: receives a line for each configured
    split size (``task.train_size`` ...) larger than its split (the whole split is taken)."""
    frame = load_rows(cfg) if rows is None else rows
    if str(getattr(cfg, "duplicates", "keep")) == "drop":
        frame = drop_repeated(frame)
    kind = task_type(getattr(cfg, "task_type", "single_label")).for_task(cfg)
    label_names, encode = kind.encode_labels(frame, cfg)
    parts = split_frame(frame, cfg, short)

    # A multi-task loader adds a "task" column (see harness/tasks/multitask.py).
    task_names = list(dict.fromkeys(frame["task"])) if "task" in frame.columns else []

    def to_split(part: pd.DataFrame) -> Split:
        task_ids = [task_names.index(t) for t in part["task"]] if task_names else None
        extra = {c: [list(map(str, v)) for v in part[c]]
                 for c in (*kind.columns, *kind.optional_columns) if c in part.columns}
        return Split([str(t) for t in part["text"]], encode(part["label"]), task_ids, **extra)

    return TaskData(cfg.name, to_split(parts["train"]), to_split(parts["validation"]),
                    to_split(parts["test"]), label_names,
                    source=str(frame.attrs.get("source", cfg.loader)), task_names=task_names,
                    type=kind, dropped=dict(frame.attrs.get("dropped") or {}),
                    in_train=repeated_in_train(parts))


def _example_keys(frame: pd.DataFrame) -> pd.Series:
    """What makes two rows one example: the text with its whitespace collapsed, and the choices
    and the task where the data has them (a multiple-choice context with other choices is another
    question)."""
    key = frame["text"].astype(str).str.split().str.join(" ")
    for column in ("choices", "task"):
        if column in frame.columns:
            key = key + "\x1f" + frame[column].astype(str)
    return key


def repeated_in_train(parts: dict[str, pd.DataFrame]) -> dict[str, int]:
    """How many validation and test examples repeat a training example's text (exactly, up to
    whitespace): a file that holds a text twice, split at random, scores some test examples on
    texts the model trained on."""
    seen = set(_example_keys(parts["train"]))
    return {split: int(_example_keys(parts[split]).isin(seen).sum()) for split in ("validation", "test")}


def drop_repeated(frame: pd.DataFrame) -> pd.DataFrame:
    """``task.duplicates=drop``: one row per example (its first), before the splits are drawn; the
    rows left out are counted as "repeated text" (where copies disagree on the label, the first
    row's is kept: :func:`conflicting_labels` counts them)."""
    repeated = _example_keys(frame).duplicated()
    if not repeated.any():
        return frame
    out = frame[~repeated]
    out.attrs.update(frame.attrs)
    out.attrs["dropped"] = {**(frame.attrs.get("dropped") or {}), "repeated text": int(repeated.sum())}
    return out


def conflicting_labels(frame: pd.DataFrame) -> int:
    """How many of the data's examples (texts, up to whitespace) have copies with different labels."""
    return int((frame["label"].astype(str).groupby(_example_keys(frame)).nunique() > 1).sum())
