"""What the report says about the data a run saw, beside its numbers: examples cut to
``task.max_length`` (a run past :data:`~harness.tasks.encoding.CUT_FLAG_SHARE` of a split is
flagged), and, for generation runs, a few test answers the model got wrong, as it wrote them.
"""
from __future__ import annotations

import json

import pandas as pd

from harness.tasks.encoding import CUT_FLAG_SHARE

SPLITS = ("train", "validation", "test")
MISSES_SHOWN = 5


def _share(run, split: str) -> float:
    cut, n = getattr(run, f"n_truncated_{split}", None), getattr(run, f"n_{split}", None)
    if cut is None or n is None or pd.isna(cut) or pd.isna(n) or not n:
        return 0.0
    return float(cut) / float(n)


def _how_much(details_json, split: str) -> str:
    try:
        t = json.loads(details_json)["truncation"]
        s = t["splits"][split]
        return (f", by {s['tokens_cut_median']:g} tokens (median; at most {s['tokens_cut_max']}) "
                f"keeping {t['strategy']} of max_length {t['max_length']}")
    except (TypeError, ValueError, KeyError):
        return ""


def flagged(finished: pd.DataFrame) -> list[tuple[str, str]]:
    """(run, what was cut) for each run with more than ``CUT_FLAG_SHARE`` of a split cut."""
    out = []
    for run in finished.itertuples():
        worst = max(SPLITS, key=lambda s: _share(run, s))
        if _share(run, worst) > CUT_FLAG_SHARE:
            label = f"{run.method} seed {run.seed} on {run.task} ({run.model})"
            out.append((label, f"{_share(run, worst):.0%} of its {worst} examples cut to task.max_length"
                               f"{_how_much(getattr(run, 'details_json', None), worst)}; its numbers "
                               f"may not measure the task as meant"))
    return out


def _in_train(run) -> tuple[int, int]:
    """(test examples that repeat a training text, test examples) of a run; (0, 0) unknown."""
    try:
        repeated = int(json.loads(run.details_json)["in_train"]["test"])
    except (TypeError, ValueError, KeyError, AttributeError):
        return 0, 0
    n = getattr(run, "n_test", None)
    return (repeated, int(n)) if n is not None and not pd.isna(n) and n else (0, 0)


def repeated_flagged(finished: pd.DataFrame) -> list[tuple[str, str]]:
    """(run, what repeats) for each run with more than ``CUT_FLAG_SHARE`` of its test examples
    repeating a training text (the data held them twice and a random split put one copy in each)."""
    out = []
    for run in finished.itertuples():
        repeated, n = _in_train(run)
        if n and repeated / n > CUT_FLAG_SHARE:
            out.append((f"{run.method} seed {run.seed} on {run.task} ({run.model})",
                        f"{repeated} of its {n} test examples ({repeated / n:.0%}) repeat a training text, "
                        f"so its test score partly measures recall (task.duplicates=drop keeps one row per text)"))
    return out


def repeated_setup_row(finished: pd.DataFrame) -> tuple[str, str]:
    """The report's Setup line on test texts that are training texts too."""
    runs = repeated_flagged(finished)
    if not runs:
        return ("Test texts also in train", f"no run had more than {CUT_FLAG_SHARE:.0%} of its test examples "
                                            f"repeat a training text")
    return ("Test texts also in train", f"FLAGGED: {len(runs)} of {len(finished)} runs had more than "
                                        f"{CUT_FLAG_SHARE:.0%} of their test examples repeat a training text "
                                        f"(listed under Findings)")


def cut_setup_row(finished: pd.DataFrame) -> tuple[str, str]:
    """The report's Setup line on cut examples."""
    runs = flagged(finished)
    if not runs:
        return ("Cut to task.max_length", f"no run had more than {CUT_FLAG_SHARE:.0%} of a split cut")
    return ("Cut to task.max_length", f"FLAGGED: {len(runs)} of {len(finished)} runs had more than "
                                      f"{CUT_FLAG_SHARE:.0%} of a split cut (listed under Findings); "
                                      f"raise task.max_length or shorten the texts")


FLAGS_SHOWN = 10


def cut_findings(finished: pd.DataFrame, task: str, model: str, which=None) -> list[str]:
    """The flagged runs of (task, model), the first :data:`FLAGS_SHOWN` named, the rest counted
    (``which``: :func:`flagged`, or :func:`repeated_flagged`)."""
    mine = finished[(finished.task == task) & (finished.model == model)]
    runs = (which or flagged)(mine)
    shown = [f"Flagged: {label}: {text}." for label, text in runs[:FLAGS_SHOWN]]
    rest = len(runs) - FLAGS_SHOWN
    where = "n_truncated_*" if which in (None, flagged) else "details_json's in_train"
    return shown + ([f"… and {rest} more runs of this table flagged the same way ({where} in "
                     f"the runs table: harness.results.load)."] if rest > 0 else [])


def misses(finished: pd.DataFrame, predictions: dict, task: str, model: str) -> list[str]:
    """Up to :data:`MISSES_SHOWN` test answers that one generation run of (task, model) got wrong
    (its run with the most stored answers, first in the table's order), as written."""
    mine = finished[(finished.task == task) & (finished.model == model)]
    for run in mine.itertuples():
        arrays = (predictions or {}).get(run.run_id) or {}
        if "generated" not in arrays or "reference" not in arrays:
            continue
        pairs = [(str(r), str(g)) for r, g in zip(arrays["reference"], arrays["generated"]) if str(r) != str(g)]
        if not pairs:
            return [f"{run.method} seed {run.seed} wrote every reference answer exactly."]
        shown = [f"{run.method} seed {run.seed}, expected {_short(r)!r}, wrote {_short(g)!r}"
                 for r, g in pairs[:MISSES_SHOWN]]
        return shown + [f"({len(pairs)} of {len(arrays['generated'])} test answers differ from the "
                        f"reference as written; all of them: harness.results.load_answers)"]
    return []


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def data_findings(finished: pd.DataFrame, predictions: dict, task: str, model: str) -> dict[str, list[str]]:
    """The Findings headings this module adds for (task, model), empty ones included."""
    return {"Examples cut to task.max_length": cut_findings(finished, task, model),
            "Test texts also in train": cut_findings(finished, task, model, repeated_flagged),
            "Generated answers that missed (as written)": misses(finished, predictions, task, model)}


def split_by_data(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs of one task name on different data (two files of one name, a file edited between
    runs: their ``data_fingerprint`` differs) are never pooled: each data version's task is
    labelled with the start of its fingerprint, e.g. ``reviews [data 3f2a9c1e]``."""
    if runs.empty or "data_fingerprint" not in runs.columns:
        return runs
    fingerprints = runs["data_fingerprint"]  # a row without one (a failure before its data) keeps its name
    versions = fingerprints.groupby(runs["task"]).transform("nunique")
    mixed = (versions > 1) & fingerprints.notna()
    if not mixed.any():
        return runs
    out = runs.copy()
    out.loc[mixed, "task"] = [f"{t} [data {str(f)[:8]}]"
                              for t, f in zip(runs.loc[mixed, "task"], fingerprints[mixed])]
    return out
