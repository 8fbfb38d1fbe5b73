"""Tasks: a loader per data source, and one function that turns a task config into splits.

A loader returns a DataFrame with a ``text`` and a ``label`` column, the columns its task type
needs (``TaskType.columns``: ``choices`` for multiple choice), and an optional ``split`` column
(train/validation/test). The label is a class name (single-label), a list of class names
(multi-label) or the index of the right choice (multiple choice). :func:`load_task` draws the
splits from ``task.split_seed``, has the task's type (:mod:`harness.tasks.types`) encode the
labels and checks that nothing is empty or unknown; every problem is a :class:`TaskDataError`
with a one-line message.

A loader declares what it needs where it is registered (:mod:`harness.tasks.data`). This package
imports every module in its folder, so a new loader is one module here and one YAML file; each loader imports the registry from
:mod:`harness.tasks.data`, never from the package, so there is no import circle.

This module imports neither torch nor transformers: the preflight imports it and stays fast.
"""
from __future__ import annotations

from harness.registry import import_submodules
from harness.tasks.data import TASK_LOADERS, Split, TaskData, TaskDataError, data_path_hint
from harness.tasks.load import load_task

import_submodules(__name__, __path__)  # every loader module in this folder registers itself

__all__ = ["TASK_LOADERS", "Split", "TaskData", "TaskDataError", "data_path_hint", "load_task"]
