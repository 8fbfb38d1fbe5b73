"""Train/validation/test splits: from the data's own split column, or drawn from a seed."""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.tasks.data import TaskDataError

SPLITS = ("train", "validation", "test")
# The other names a file's split column may use (lower case), as datasets' own splits are named.
SPLIT_NAMES = {"training": "train", "dev": "validation", "val": "validation", "valid": "validation",
               "development": "validation", "testing": "test"}


def _take(df: pd.DataFrame, n: int | None, rng: np.random.Generator) -> pd.DataFrame:
    if n is None or n >= len(df):
        return df
    return df.iloc[np.sort(rng.choice(len(df), size=n, replace=False))]


def _carve(df: pd.DataFrame, fraction: float, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = rng.permutation(len(df))
    n = int(round(len(df) * fraction))
    return df.iloc[order[:n]], df.iloc[order[n:]]


def split_frame(frame: pd.DataFrame, cfg, short: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """The three splits, subsampled to the configured sizes; raises if one is empty.

    With a ``split`` column, its train/validation/test rows are used; a missing validation split
    is carved from train (``task.val_fraction``). Without one, test and validation are drawn
    from all rows with ``task.split_seed``. A configured size larger than its split takes the
    whole split; ``short``, when given, receives a line for each such split.
    """
    rng = np.random.default_rng(cfg.split_seed)
    if "split" in frame.columns:
        names = frame["split"].astype(str).str.strip().str.lower().replace(SPLIT_NAMES)
        unknown = sorted(set(frame["split"].astype(str)[~names.isin(SPLITS)]))
        if unknown:
            raise TaskDataError(f"task {cfg.name}: unknown split value(s) {unknown[:5]} in the split "
                                f"column; allowed (any case): train (or training), validation (or dev, "
                                f"val, valid, development), test (or testing)")
        parts = {s: frame[names == s] for s in SPLITS}
        if len(parts["validation"]) == 0 and len(parts["train"]) > 1:
            parts["validation"], parts["train"] = _carve(parts["train"], cfg.val_fraction, rng)
    else:
        order = rng.permutation(len(frame))
        n_test = int(round(len(frame) * cfg.test_fraction))
        n_val = int(round(len(frame) * cfg.val_fraction))
        parts = {"test": frame.iloc[order[:n_test]],
                 "validation": frame.iloc[order[n_test:n_test + n_val]],
                 "train": frame.iloc[order[n_test + n_val:]]}
    sizes = {"train": cfg.train_size, "validation": cfg.val_size, "test": cfg.test_size}
    have = ", ".join(f"{s} {len(parts[s])}" for s in SPLITS)
    for split, part in parts.items():
        if len(part) == 0:
            how = ("check the split column" if "split" in frame.columns else
                   "add rows, or raise task.val_fraction / task.test_fraction")
            raise TaskDataError(f"task {cfg.name}: the {split} split is empty "
                                f"({len(frame)} rows in all: {have}); {how}")
    for split, key in zip(SPLITS, ("train_size", "val_size", "test_size")):
        if short is not None and sizes[split] is not None and sizes[split] > len(parts[split]):
            short.append(f"task.{key}={sizes[split]} but the {split} split has {len(parts[split])} "
                         f"rows ({len(frame)} in all: {have}); all {len(parts[split])} are used")
    return {k: _take(parts[k], sizes[k], rng) for k in SPLITS}
