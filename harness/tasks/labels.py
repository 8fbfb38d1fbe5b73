"""Helpers the task types (:mod:`harness.tasks.types`) share to name and index their labels,
with clear errors for unknown labels. Each type decides itself how its labels are read."""
from __future__ import annotations

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
    found = sorted({v for vs in values for v in vs})
    names = [str(n) for n in given] or found
    index = {n: i for i, n in enumerate(names)}
    unknown = [v for v in found if v not in index]
    if unknown:
        raise TaskDataError(f"task {cfg.name}: unknown label(s) {unknown[:5]} in the data; "
                            f"allowed (task.labels): {names}")
    if len(names) < 2:
        raise TaskDataError(f"task {cfg.name}: needs at least 2 labels, found {names}")
    return names, index


def require_two_classes(labels, names: list[str], cfg) -> None:
    """TaskDataError unless the data holds at least two classes (``task.labels`` may name more)."""
    from harness.tasks.data import TaskDataError

    found = sorted({name_of(v) for v in labels})
    if len(found) < 2:
        raise TaskDataError(f"task {cfg.name}: every row has the label {found[0]!r}; a classifier "
                            f"needs at least 2 classes in the data (allowed: {names})")
