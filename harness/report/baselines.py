"""Baselines in the report: which rows are baselines (the ``baseline`` column a baseline run
records: tfidf, head_only, zero_shot) and what the note under each table says of them. The
majority class is not a run: it is a column of every row and a row of its own in the tables."""
from __future__ import annotations

import pandas as pd

BASELINE_WORDS = {"classical": "a classical text classifier (TF-IDF and a linear model, C chosen on "
                                "the validation split), no network",
                  "probe": "the linear probe: the frozen base with only its new head trained",
                  "untrained": "the base model scored with no training (zero-shot)"}


def baseline_notes(runs: pd.DataFrame) -> list[str]:
    """One line naming the baseline rows among ``runs`` (one table's) and what each is."""
    if "baseline" not in runs.columns:
        return []
    kinds = runs.dropna(subset=["baseline"]).groupby("label")["baseline"].first()
    if kinds.empty:
        return []
    return ["Baselines: " + "; ".join(f"{label}: {BASELINE_WORDS.get(kind, kind)}"
                                      for label, kind in kinds.items()) + "."]
