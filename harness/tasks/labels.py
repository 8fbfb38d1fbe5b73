"""Helpers the task types (:mod:`harness.tasks.types`) share to name and index their labels,
with clear errors for unknown labels. Each type decides itself how its labels are read."""
from __future__ import annotations

import json
import numbers
import re
from typing import Iterable

import numpy as np
import pandas as pd

from harness.tasks.data import TaskDataError


def name_list(value) -> list[str]:
    """A multi-label cell as label names: a list, or ``"a|b"`` in a CSV cell."""
    if isinstance(value, str):
        return [v.strip() for v in value.split("|") if v.strip()]
    return [str(v) for v in value]


def name_of(value) -> str:
    """A single label as a name; '1.0' from a float column read with missing values is '1'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def refuse_float_labels(values: Iterable, cfg) -> None:
    """Labels are class names: integers or strings. A float that is not a whole number (``0.5``,
    ``inf``) is a regression target or a corrupt cell, which no task type declares; whole floats
    (``1.0``, from an integer column with missing values) are their integer."""
    for value in values:
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, (float, np.floating)) and not float(v).is_integer():
                raise TaskDataError(f"task {cfg.name}: label {float(v)!r} is not a whole number; "
                                    f"labels must be integers or strings "
                                    f"(task.label_column={getattr(cfg, 'label_column', 'label')})")


def label_space(frame: pd.DataFrame, cfg, values: Iterable[list[str]]) -> tuple[list[str], dict[str, int]]:
    """(label names, name -> index) for the label names found in the data (``values``: the
    names of each row).

    The names are ``task.labels`` when set (any other value in the data is an error), else the
    loader's (``frame.attrs["label_names"]``, e.g. from the hub's features), else the sorted
    values found in the data. Fewer than two labels is an error.
    """
    given = list(getattr(cfg, "labels", None) or frame.attrs.get("label_names") or [])
    values = [list(vs) for vs in values]
    found = sorted({v for vs in values for v in vs})
    if not given:
        refuse_text_as_labels(values, found, cfg)
    names = [str(n) for n in given] or found
    index = {n: i for i, n in enumerate(names)}
    unknown = [v for v in found if v not in index]
    if unknown:
        raise TaskDataError(f"task {cfg.name}: unknown label(s) {unknown[:5]} in the data; "
                            f"allowed (task.labels): {names}")
    if len(names) < 2:
        raise TaskDataError(f"task {cfg.name}: needs at least 2 labels, found {names}")
    return names, index


# Labels read from the data that are this many or more, more than half of them on one row only,
# are a text column, not classes (columns swapped, or the wrong column named).
MANY_LABELS = 20


def refuse_text_as_labels(values: list[list[str]], found: list[str], cfg) -> None:
    """TaskDataError when the label column looks like text: at least ``MANY_LABELS`` distinct
    labels, more than half of them on a single row. ``task.labels`` (naming the classes) or
    ``task.label_words`` (an answer per class) lifts it."""
    from collections import Counter

    from harness.tasks.data import TaskDataError

    if len(found) < MANY_LABELS or getattr(cfg, "label_words", None):
        return
    counts = Counter(v for vs in values for v in vs)
    once = sum(1 for n in counts.values() if n == 1)
    if once * 2 > len(found):
        column = getattr(cfg, "label_column", None) or "label"
        raise TaskDataError(
            f"task {cfg.name}: the label column {column!r} holds {len(found)} distinct values in "
            f"{len(values)} rows, {once} of them on one row only (e.g. {preview(found[0], 40)}): it "
            "looks like text, not classes; check task.label_column and task.text_column, or name the "
            "classes with task.labels")


def require_two_classes(labels, names: list[str], cfg) -> None:
    """TaskDataError unless the data holds at least two classes (``task.labels`` may name more)."""
    from harness.tasks.data import TaskDataError

    found = sorted({name_of(v) for v in labels})
    if len(found) < 2:
        raise TaskDataError(f"task {cfg.name}: every row has the label {found[0]!r}; a classifier "
                            f"needs at least 2 classes in the data (allowed: {names})")


def row_of(frame: pd.DataFrame, position: int) -> str:
    """Where a user finds the row at ``position``: "row 6 of data.csv", counted from 1 as the
    loader numbered its rows (``frame.index``: a file's records, header and blank lines not
    counted). A loader may count lines (``attrs["row_unit"] = "line"``) or number rows per split
    (``attrs["split_rows"]``: split -> (index of its first row, where that split comes from))."""
    index = frame.index[position]
    number = int(index) + 1 if isinstance(index, (int, np.integer)) else position + 1
    split_rows = frame.attrs.get("split_rows")
    if split_rows and "split" in frame.columns:
        split = str(frame["split"].iloc[position])
        start, where = split_rows.get(split, (0, split))
        return f"row {number - start} of the {split} split ({where})"
    source = str(frame.attrs.get("source") or "")
    where = re.sub(r"#\w+$", "", source.removeprefix("file:")) if source.startswith("file:") else source
    return f"{frame.attrs.get('row_unit', 'row')} {number}" + (f" of {where}" if where else "")


def kind_of(value) -> str | None:
    """None for a string or a number (what an answer or a choice may be); else what it is."""
    if isinstance(value, (str, numbers.Number, np.number, np.bool_)):  # True/False: a CSV's bools
        return None
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return "a JSON list"
    return f"a {type(value).__name__}"


def preview(value, width: int = 60) -> str:
    """A value as a message shows it: JSON where it can be, cut to ``width`` characters."""
    try:
        text = json.dumps(value.tolist() if isinstance(value, np.ndarray) else value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def refuse_nested(frame: pd.DataFrame, cfg, what: str = "answer") -> None:
    """Answers are strings or numbers. A JSON object or list in the label column would be
    trained on as its Python text ("{'a': 1}") and scored against itself, so it is refused here,
    where preflight and run both read the labels, naming the row."""
    for position, value in enumerate(frame["label"]):
        kind = kind_of(value)
        if kind:  # a hub split names its own column: row_of names the split
            column = "" if frame.attrs.get("split_rows") else f" (task.label_column={cfg.label_column})"
            raise TaskDataError(f"task {cfg.name}: {row_of(frame, position)}: the {what}{column} is "
                                f"{kind}, {preview(value)}; it must be a string or a number")


def refuse_long(frame: pd.DataFrame, texts: Iterable[str], cfg, what: str = "answer") -> None:
    """An answer is trained on whole, so one that cannot fit ``task.max_length`` tokens fails
    the run (after tokenizing megabytes). Checked in characters, with no tokenizer (the
    preflight has none): more than ``CHARS_PER_TOKEN`` characters per token of the context
    cannot fit in any tokenizer's tokens."""
    from harness.tasks.cutting import CHARS_PER_TOKEN

    limit = CHARS_PER_TOKEN * cfg.max_length
    for position, text in enumerate(texts):
        if len(text) > limit:
            raise TaskDataError(f"task {cfg.name}: {row_of(frame, position)}: the {what} is {len(text)} "
                                f"characters, more than task.max_length={cfg.max_length} tokens can hold "
                                f"(counted in characters, no tokenizer: over {limit} = {CHARS_PER_TOKEN} "
                                f"per token); shorten it or raise task.max_length")
