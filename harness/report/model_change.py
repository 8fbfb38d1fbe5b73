"""What the cost view says of what fine-tuning did to the model (:mod:`harness.run.model_change`):
its forgetting of general text and the shape of its weight update, where the runs recorded them."""
from __future__ import annotations

import pandas as pd


def _has(runs: pd.DataFrame, column: str) -> bool:
    return column in runs and runs[column].notna().any()


def model_change_notes(runs: pd.DataFrame) -> list[str]:
    """The notes under a cost table about its forgetting and update-shape columns, if shown."""
    notes = []
    if _has(runs, "forgetting"):
        notes.append("Forgetting: the causal LM's mean token loss on general text (trainer.forgetting_probe; "
                     "by default 200 Guardian headlines) after training minus before, as peft's method "
                     "comparison measures it; lower is better, negative: the model got better at that text; "
                     "— for a run without a language-model head (classification).")
    if _has(runs, "update_rel_norm_mean") or _has(runs, "update_erank_mean"):
        notes.append("‖ΔW‖/‖W‖ and ΔW erank: the mean over the adapted weight matrices of the update's "
                     "Frobenius norm relative to the weight and of its effective rank (Roy & Vetterli 2007: "
                     "the exponential of the entropy of its normalised singular values; a rank-k update "
                     "with equal singular values has k); described, not ranked; per layer in each run "
                     "folder's model_change.json; — where the update is not a weight matrix (prompt "
                     "tuning, baselines) or not measured (see the run's details).")
    return notes
