"""One comparison of two groups (table rows): which runs pair up, which test fits, and what
else the comparison must say: the same configuration apart from the method (the group keys
without ``method.*``), the same budget (optimizer steps, examples and tokens seen), harness
versions mixed. :func:`compare_groups` and :func:`baseline_check` are what
:func:`harness.report.compare.analyze` runs for every pair and every row.
"""
from __future__ import annotations

import json
from dataclasses import replace
from functools import lru_cache

import numpy as np
import pandas as pd

from harness.report import sides
from harness.report.groups import differing_paths, dumped, flatten, setting_name, setting_value
from harness.report.sides import Side, as_side, lacking_text, versions_text
from harness.report.stats import (EXAMPLE_METRICS, Comparison, Predictions, Resampler, above_majority,
                                  compare, compare_examples, majority_check)

# Left out when two groups' configurations are compared "apart from the method": the method's
# own settings (its name, rank, learning rate, ...), the axes the table is already split by, and
# under protocol=tuned the search each method's rate came from (one per method by design).
METHOD_KEYS = ("method", "_axes.method", "_axes.r", "_axes.task", "_axes.model", "protocol.search_id")


_INTS = ("n_base", "n_other", "n_seeds", "n_examples")
_BOOLS = ("same_config", "same_budget")
_TEXTS = ("test", "note", "config_diff", "budget_diff", "versions")


def plain(values: dict) -> dict:
    """A Comparison's fields as read back from the pairs frame, as Python values (NaN text: '')."""
    out = {}
    for k, v in values.items():
        if k in _BOOLS:
            out[k] = None if v is None or pd.isna(v) else bool(v)
        elif k in _INTS:
            out[k] = 0 if v is None or pd.isna(v) else int(v)
        elif k in _TEXTS:
            out[k] = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
        else:
            out[k] = float(v)
    return out


def group_key(runs: pd.DataFrame) -> dict:
    return json.loads(runs["group"].iloc[0]) if "group" in runs.columns and len(runs) else {}


@lru_cache(maxsize=4096)
def _key_texts(group: str) -> tuple[dict, dict]:
    """(flattened key, its values as JSON) of a group key given as JSON (read once each)."""
    flat = flatten(json.loads(group))
    return flat, dumped(flat)


def config_difference(a: dict, b: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """What differs between two group keys apart from the method (and ``ignore``, path
    prefixes): ["quant.name: nf4 vs none"]."""
    fa, fb = flatten(a), flatten(b)
    return _difference(fa, fb, dumped(fa), dumped(fb), ignore)


def side_difference(a: Side, b: Side, ignore: tuple[str, ...] = ()) -> list[str]:
    """:func:`config_difference` of two sides' keys, flattened once per side."""
    return _difference(a.flat, b.flat, a.texts, b.texts, ignore)


def _difference(fa: dict, fb: dict, ta: dict, tb: dict, ignore: tuple[str, ...]) -> list[str]:
    paths = differing_paths([ta, tb], METHOD_KEYS + ignore)
    if "_axes.quant" in paths and any(p.startswith("quant.") for p in paths):
        paths.remove("_axes.quant")  # said by the config's own quant settings
    missing = object()
    return [f"{setting_name(p)}: {_value(fa.get(p, missing), missing)} vs {_value(fb.get(p, missing), missing)}"
            for p in paths]


def _value(v, missing) -> str:
    return "unset" if v is missing else setting_value(v)


def budget_difference(a: "pd.DataFrame | Side", b: "pd.DataFrame | Side") -> tuple[bool | None, str]:
    """(same budget?, what differs) of two groups: per seed where they share seeds, else over all
    their runs; None where a run predates the budget columns."""
    return sides.budget_difference(as_side(a), as_side(b))


def example_pairs(a: "pd.DataFrame | Side", b: "pd.DataFrame | Side", preds: dict[str, Predictions],
                  names: tuple[str, str] | None = None) -> tuple[list[tuple[Predictions, Predictions]], str]:
    """(base run, other run) predictions on each seed both groups ran, tested on the same
    examples; or ([], why not) for a seed-level test. ``names``: the sides' names in the note
    (default: their labels)."""
    a, b = as_side(a), as_side(b)
    if names is not None:
        a, b = replace(a, label=names[0]), replace(b, label=names[1])
    return sides.example_pairs(a, b, preds)


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def pair_settings(a: "pd.DataFrame | Side", b: "pd.DataFrame | Side") -> dict:
    """What a comparison of groups ``a`` and ``b`` says besides its test: same configuration
    apart from the method, same budget, harness versions mixed."""
    a, b = as_side(a), as_side(b)
    diff = side_difference(a, b)
    same_budget, budget_diff = sides.budget_difference(a, b)
    return dict(same_config=not diff, config_diff="; ".join(diff), same_budget=same_budget,
                budget_diff=budget_diff, versions=versions_text(a, b))


def compare_groups(a: "pd.DataFrame | Side", b: "pd.DataFrame | Side", metric: str,
                   preds: dict[str, Predictions], resampler: Resampler, confidence: float,
                   settings: dict | None = None, examples: tuple[list, str] | None = None) -> Comparison:
    """``b`` minus ``a`` on ``metric``; ``settings`` (:func:`pair_settings`) and ``examples``
    (:func:`example_pairs`) when already known for this pair."""
    a, b = as_side(a), as_side(b)
    c = None
    if metric in EXAMPLE_METRICS:
        pairs, why = examples if examples is not None else sides.example_pairs(a, b, preds)
        if pairs:
            c = compare_examples(pairs, metric, confidence, resampler)
            c.note = _join(why, c.note)
    if c is None:
        c = compare(a.sample(metric), b.sample(metric), confidence)
        if metric in EXAMPLE_METRICS:
            c.note = why
        (na, missing_a, sizes_a), (nb, missing_b, sizes_b) = a.test_sizes, b.test_sizes
        sizes = sizes_a | sizes_b
        if na + nb and not (missing_a or missing_b) and len(sizes) == 1:
            c.n_examples = int(next(iter(sizes)))  # a seed-level test: examples per run
    for k, v in (settings or pair_settings(a, b)).items():
        setattr(c, k, v)
    return c


def pick_reference(groups: pd.DataFrame, reference: str, row: pd.Series) -> str | None:
    """A group of the reference method: the one with the same r, then a full-precision base,
    then the same configuration apart from the method (and the base precision), then the same
    learning rate, then the most runs. So every rank and every other setting of the reference
    method is its own reference, and a 4-bit variant is compared with the full-precision one."""
    return _pick(_references(groups, reference), dict(row))


def pick_references(groups: pd.DataFrame, reference: str) -> dict[str, str | None]:
    """{label: its reference} for every row of ``groups`` (:func:`pick_reference`, the
    reference method's groups read once)."""
    refs = _references(groups, reference)
    return {str(row["label"]): _pick(refs, row) for row in groups.to_dict("records")}


def _references(groups: pd.DataFrame, reference: str) -> list[dict]:
    refs = groups[groups.method == reference].to_dict("records")
    most = max((r["n"] for r in refs), default=0)
    return [{**r, "_share": r["n"] / (most + 1)} for r in refs]


def _equal(a, b) -> int:
    """1 where both are known and equal (pandas' ``==`` then ``fillna(False)``), else 0."""
    return 0 if pd.isna(a) or pd.isna(b) else int(a == b)


def _pick(refs: list[dict], row: dict) -> str | None:
    if not refs:
        return None
    mine = _key_texts(row["group"]) if isinstance(row.get("group"), str) else ({}, {})

    def alike(group) -> int:  # the same configuration apart from method and quant
        if not mine[0] or not isinstance(group, str):
            return 0
        flat, texts = _key_texts(group)
        return int(not _difference(flat, mine[0], texts, mine[1], ("quant", "_axes.quant")))

    best, label = None, None
    for r in refs:  # the first of the best scores, as idxmax
        score = (_equal(r["r"], row.get("r")) * 16 + int(r["quant"] == "none") * 8
                 + (alike(r["group"]) * 4 if "group" in r else 0)
                 + (_equal(r["lr"], row.get("lr")) * 2 if "lr" in r else 0) + r["_share"])
        if best is None or score > best:
            best, label = score, str(r["label"])
    return label


def baseline_check(g: pd.DataFrame, preds: dict[str, Predictions], alpha: float, confidence: float,
              resampler: Resampler):
    runs = g.sort_values("seed")
    ok = (not runs.seed.duplicated().any() and all(r in preds and preds[r].majority is not None
                                                 and np.shape(preds[r].majority) == np.shape(preds[r].labels)
                                                 for r in runs.run_id))
    if ok and len(runs):
        return majority_check([preds[r] for r in runs.run_id], alpha, confidence, resampler)
    check = above_majority(runs["accuracy"].to_numpy(), runs["majority_accuracy"].to_numpy(), alpha, confidence)
    if preds is not None and len(runs):
        lacking = sum(r not in preds for r in runs.run_id)
        check.note = (lacking_text(lacking, len(runs)) if lacking else
                      "several runs of one seed: seed-level test" if runs.seed.duplicated().any() else "")
    n_test = runs.get("n_test", pd.Series(dtype=float))
    if len(n_test) and n_test.notna().all():
        check.n_examples = int(n_test.sum())
    return check
