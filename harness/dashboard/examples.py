"""The test examples two runs were scored on, as the report's tests see them, and their texts.

The store keeps each run's test predictions but not the examples' texts; these are read again
from the task's data with the run's own task config (:func:`harness.tasks.load_task`, the split
drawn from its recorded ``split_seed``), never from the network (the dashboard runs with the
hub offline). They are shown only when the data's fingerprint is the run's and the labels read
now are, example by example, the labels the run was tested on; otherwise the page says why not.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from harness.errors import first_line
from harness.report.example_tests import Predictions, correct
from harness.report.select import run_predictions


@dataclass
class Side:
    """One run's answers on the test examples: ``right`` per example, ``shown`` as the page
    prints its prediction, ``generated`` where it wrote text (generation tasks)."""

    run_id: str
    right: np.ndarray
    shown: list[str]
    key: np.ndarray  # what "the same prediction" compares
    labels: list[str]
    reference: np.ndarray  # the labels (or references) the run was tested on, to check they match
    generated: list[str] | None = None


def label_names(row: dict) -> list[str]:
    try:
        names = json.loads(row.get("details_json") or "{}").get("label_names")
    except (TypeError, ValueError, AttributeError):
        names = None
    return [str(n) for n in names] if isinstance(names, list) else []


def _name(value, names: list[str]) -> str:
    if np.ndim(value):  # multi-label: the names of the labels set
        return ", ".join(names[i] if i < len(names) else str(i) for i in np.flatnonzero(value)) or "(none)"
    v = int(value)
    return names[v] if 0 <= v < len(names) else f"other ({v})"


def side(row: dict, arrays: dict) -> Side | None:
    """A run's :class:`Side` from its stored test arrays; None where it kept none."""
    names = label_names(row)
    generated = [str(t) for t in arrays["generated"]] if "generated" in arrays else None
    preds = run_predictions(pd.DataFrame([row]), {row["run_id"]: arrays})
    p: Predictions | None = preds.get(row["run_id"])
    if p is not None:
        shown = [_name(v, names) for v in p.predictions]
        return Side(row["run_id"], correct(p), shown, np.asarray(p.predictions), [_name(v, names) for v in p.labels],
                    np.asarray(p.labels), generated)
    if generated is not None and "reference" in arrays:  # open-ended generations: their texts only
        reference = np.asarray([str(t) for t in arrays["reference"]])
        return Side(row["run_id"], np.asarray(generated) == reference, generated, np.asarray(generated),
                    list(reference), reference, generated)
    return None


def same_examples(a: Side, b: Side) -> bool:
    return np.shape(a.reference) == np.shape(b.reference) and bool(np.array_equal(a.reference, b.reference))


def disagreements(a: Side, b: Side) -> np.ndarray:
    """Positions where the two runs' predictions (or generated texts) differ."""
    differ = a.key != b.key
    differ = differ.any(axis=1) if differ.ndim == 2 else differ
    if a.generated is not None and b.generated is not None:
        differ |= np.asarray(a.generated) != np.asarray(b.generated)
    return np.flatnonzero(differ)


@lru_cache(maxsize=8)
def _task_texts(task_json: str, recorded_fingerprint: str) -> tuple[tuple[str, ...], tuple, str]:
    """(texts, labels, why none) of a task config's test split, read again."""
    from omegaconf import OmegaConf

    from harness import config
    from harness.results.fingerprint import data_fingerprint
    from harness.tasks import load_task  # its loaders register their task schemas too

    task = json.loads(task_json)
    try:
        if recorded_fingerprint and data_fingerprint(task) != recorded_fingerprint:
            return (), (), "the task's data changed since the run (its fingerprint differs)"
        schema = config.TASK_SCHEMAS.get(task.get("loader"), config.TaskConfig)
        data = load_task(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), task)))
    except Exception as exc:  # noqa: BLE001 - any reason the data cannot be read is shown, not raised
        return (), (), f"the task's data could not be read here ({first_line(exc)})"
    return tuple(data.test.texts), tuple(map(repr, data.test.labels)), ""


def test_texts(row: dict, reference: np.ndarray) -> tuple[list[str] | None, str]:
    """The run's test texts in its split's order, or (None, why not)."""
    try:
        task = json.loads(row["config_json"])["task"]
    except (TypeError, ValueError, KeyError):
        return None, "the run's config holds no task"
    fingerprint = row.get("data_fingerprint")
    texts, labels, why = _task_texts(json.dumps(task, sort_keys=True),
                                     "" if fingerprint is None or pd.isna(fingerprint) else str(fingerprint))
    if why:
        return None, why
    if len(texts) != len(reference):
        return None, f"the test split read now has {len(texts)} examples, the run was tested on {len(reference)}"
    if reference.dtype.kind in "iub":
        # the labels as the run stored them (indices), or their names (a prompt task reads its
        # classes as the answers' texts)
        names = label_names(row)
        ways = [[repr(v) for v in reference.tolist()]]
        if names and reference.ndim == 1 and all(0 <= int(v) < len(names) for v in reference.tolist()):
            ways.append([repr(names[int(v)]) for v in reference.tolist()])
        if list(labels) not in ways:
            return None, "the test split read now is not the one the run was tested on (its labels differ)"
    if task.get("messages_column"):  # a conversation's prompt turns, as a reader would write them
        from harness.tasks.conversations import readable

        texts = [readable(t) for t in texts]
    return list(texts), ""
