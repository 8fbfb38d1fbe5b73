"""One comparison of two groups (table rows): which runs pair up, which test fits, and what
else the comparison must say: the same configuration apart from the method (the group keys
without ``method.*``), the same budget (optimizer steps, examples and tokens seen), harness
versions mixed. :func:`compare_groups` and :func:`baseline_check` are what
:func:`harness.report.compare.analyze` runs for every pair and every row.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from harness.report.aggregate import BUDGET, UNTRAINED
from harness.report.budget import WORDS
from harness.report.groups import differing_settings, flatten, setting_name, setting_value
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


def _by_seed(runs: pd.DataFrame, metric: str) -> dict[int, float]:
    values = runs[["seed", metric]].dropna()
    if values["seed"].duplicated().any():  # the same seed twice: no pairing, keep every run
        return {i: v for i, v in enumerate(values[metric])}
    return dict(zip(values["seed"].astype(int), values[metric].astype(float)))


def group_key(runs: pd.DataFrame) -> dict:
    return json.loads(runs["group"].iloc[0]) if "group" in runs.columns and len(runs) else {}


def config_difference(a: dict, b: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """What differs between two group keys apart from the method (and ``ignore``, path
    prefixes): ["quant.name: nf4 vs none"]."""
    paths = differing_settings([a, b], METHOD_KEYS + ignore)
    if "_axes.quant" in paths and any(p.startswith("quant.") for p in paths):
        paths.remove("_axes.quant")  # said by the config's own quant settings
    fa, fb = flatten(a), flatten(b)
    missing = object()
    return [f"{setting_name(p)}: {_value(fa.get(p, missing), missing)} vs {_value(fb.get(p, missing), missing)}"
            for p in paths]


def _value(v, missing) -> str:
    return "unset" if v is missing else setting_value(v)


def _span(values: pd.Series) -> str:
    lo, hi = values.min(), values.max()
    return f"{int(lo):,}" if lo == hi else f"{int(lo):,} to {int(hi):,}"


def budget_difference(a: pd.DataFrame, b: pd.DataFrame) -> tuple[bool | None, str]:
    """(same budget?, what differs) of two groups: per seed where they share seeds, else over all
    their runs; None where a run predates the budget columns."""
    for side in (a, b):
        if "baseline" in side.columns and side["baseline"].isin(UNTRAINED).any():
            return None, f"{side['label'].iloc[0]} is a baseline that trains no network (no training budget)"
    cols = [c for c in BUDGET if c in a.columns and c in b.columns]
    if len(cols) < len(BUDGET) or a[cols].isna().any().any() or b[cols].isna().any().any():
        return None, "budget unknown (runs stored before the budget columns)"
    shared = sorted(set(a.seed) & set(b.seed))
    paired = shared and not a.seed.duplicated().any() and not b.seed.duplicated().any()
    ia, ib = (a.set_index("seed").loc[shared, cols], b.set_index("seed").loc[shared, cols]) if paired else (a, b)
    differ = []
    for col in cols:
        if paired:
            va, vb = ia[col], ib[col]
            same = bool((va.to_numpy() == vb.to_numpy()).all())
        else:
            va, vb = a[col], b[col]
            same = set(va) == set(vb)
        if not same:
            differ.append(f"{WORDS[col][1]} {_span(va)} vs {_span(vb)}")
    return (not differ), "; ".join(differ)


def _versions(a: pd.DataFrame, b: pd.DataFrame) -> str:
    if "harness_version" not in a.columns:
        return ""
    found = sorted({str(v) for v in pd.concat([a.harness_version, b.harness_version])
                    if v is not None and not pd.isna(v)})
    return " vs ".join(found) if len(found) > 1 else ""


def _plural(n: int, word: str) -> str:
    return f"{int(n)} {word}{'s' * (int(n) != 1)}"


def example_pairs(a: pd.DataFrame, b: pd.DataFrame, preds: dict[str, Predictions],
                  names: tuple[str, str] = ("base", "other")) -> tuple[list[tuple[Predictions, Predictions]], str]:
    """(base run, other run) predictions on each seed both groups ran, tested on the same
    examples; or ([], why not) for a seed-level test."""
    if a.seed.duplicated().any() or b.seed.duplicated().any():
        return [], "several runs of one seed in a configuration: seed-level test"
    shared = sorted(set(a.seed) & set(b.seed))
    if not shared:
        return [], "no seed in common: seed-level test"
    ra, rb = a.set_index("seed").loc[shared, "run_id"], b.set_index("seed").loc[shared, "run_id"]
    runs = list(ra) + list(rb)
    lacking = [r for r in runs if r not in preds]
    if lacking:
        return [], _lacking(len(lacking), len(runs))
    pairs = [(preds[x], preds[y]) for x, y in zip(ra, rb)]
    differ = [str(s) for s, (x, y) in zip(shared, pairs) if not x.same_examples(y)]
    if differ:
        return [], f"seed {', '.join(differ)}: the runs were tested on different examples: seed-level test"
    left = [f"{side} seed{'s' * (len(extra) > 1)} {', '.join(map(str, extra))}"
            for side, extra in ((names[0], sorted(set(a.seed) - set(shared))),
                                (names[1], sorted(set(b.seed) - set(shared)))) if extra]
    note = (f"on the {_plural(len(shared), 'seed')} both ran ({', '.join(map(str, shared))}; left out: "
            + "; ".join(left) + ")") if left else ""
    return pairs, note


def _lacking(lacking: int, runs: int) -> str:
    if lacking == runs:
        return "no test predictions stored (runs from before they were kept): seed-level test"
    return f"test predictions not stored for {lacking} of the {runs} runs: seed-level test"


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def pair_settings(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """What a comparison of groups ``a`` and ``b`` says besides its test: same configuration
    apart from the method, same budget, harness versions mixed."""
    diff = config_difference(group_key(a), group_key(b))
    same_budget, budget_diff = budget_difference(a, b)
    return dict(same_config=not diff, config_diff="; ".join(diff), same_budget=same_budget,
                budget_diff=budget_diff, versions=_versions(a, b))


def compare_groups(a: pd.DataFrame, b: pd.DataFrame, metric: str, preds: dict[str, Predictions],
                    resampler: Resampler, confidence: float, settings: dict | None = None) -> Comparison:
    c = None
    if metric in EXAMPLE_METRICS:
        pairs, why = example_pairs(a, b, preds, (str(a.label.iloc[0]), str(b.label.iloc[0])))
        if pairs:
            c = compare_examples(pairs, metric, confidence, resampler)
            c.note = _join(why, c.note)
    if c is None:
        c = compare(_by_seed(a, metric), _by_seed(b, metric), confidence)
        if metric in EXAMPLE_METRICS:
            c.note = why
        n_test = pd.concat([a.get("n_test", pd.Series(dtype=float)), b.get("n_test", pd.Series(dtype=float))])
        if len(n_test) and n_test.notna().all() and n_test.nunique() == 1:
            c.n_examples = int(n_test.iloc[0])  # a seed-level test: examples per run
    for k, v in (settings or pair_settings(a, b)).items():
        setattr(c, k, v)
    return c


def pick_reference(groups: pd.DataFrame, reference: str, row: pd.Series) -> str | None:
    """A group of the reference method: the one with the same r, then a full-precision base,
    then the same configuration apart from the method (and the base precision), then the same
    learning rate, then the most runs. So every rank and every other setting of the reference
    method is its own reference, and a 4-bit variant is compared with the full-precision one."""
    refs = groups[groups.method == reference]
    if refs.empty:
        return None
    mine = json.loads(row.group) if isinstance(row.get("group"), str) else {}
    alike = pd.Series([bool(mine) and not config_difference(json.loads(g), mine, ("quant", "_axes.quant"))
                       for g in refs.group], index=refs.index, dtype=int) if "group" in refs else 0
    same_r = (refs.r == row.r).fillna(False).astype(int)
    same_lr = (refs.lr == row.lr).fillna(False).astype(int) if "lr" in refs else 0
    score = (same_r * 16 + (refs.quant == "none").astype(int) * 8 + alike * 4 + same_lr * 2
             + refs.n / (refs.n.max() + 1))
    return str(refs.loc[pd.Series(score, index=refs.index).astype(float).idxmax(), "label"])


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
        check.note = (_lacking(lacking, len(runs)) if lacking else
                      "several runs of one seed: seed-level test" if runs.seed.duplicated().any() else "")
    n_test = runs.get("n_test", pd.Series(dtype=float))
    if len(n_test) and n_test.notna().all():
        check.n_examples = int(n_test.sum())
    return check
