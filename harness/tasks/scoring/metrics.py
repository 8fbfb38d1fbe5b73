"""Task-quality metrics through `evaluate`, from metric modules shipped with the package.

``evaluate.load("accuracy")`` fetches the module from the hub; these are the same definitions
loaded from local files, so metrics work offline and do not change under a run.
"""
from __future__ import annotations

from functools import lru_cache

import evaluate

from harness.fields import LiveMapping, better, metric_directions  # noqa: F401 - re-exported
from harness.paths import PACKAGE_DIR

# Every metric the harness records and whether higher is better, derived from the field
# declarations (harness/fields.py); it follows fields declared later too.
HIGHER_IS_BETTER = LiveMapping(metric_directions)


@lru_cache(maxsize=None)
def _module(name: str, config_name: str = "default"):
    return evaluate.load(str(PACKAGE_DIR / "metric_scripts" / f"{name}.py"), config_name)


def classification_metrics(predictions, references, num_labels: int,
                           labels: list[int] | None = None) -> dict[str, float]:
    """Accuracy and F1; F1 averages over ``labels`` (default: all ``num_labels``), e.g. one
    task's labels in a multi-task label space."""
    preds, refs = [int(p) for p in predictions], [int(r) for r in references]
    labels = list(range(num_labels)) if labels is None else list(labels)
    f1 = _module("f1")
    return {
        "accuracy": _module("accuracy").compute(predictions=preds, references=refs)["accuracy"],
        "f1_macro": f1.compute(predictions=preds, references=refs, labels=labels, average="macro")["f1"],
        "f1_micro": f1.compute(predictions=preds, references=refs, labels=labels, average="micro")["f1"],
    }


def multilabel_metrics(predictions, references) -> dict[str, float]:
    """Subset accuracy, and micro/macro-F1 over the labels plus a "no label" column.

    LexGLUE scores ECtHR and UNFAIR-ToS this way: a text with no label counts as a hit of an
    extra "none" class, so that correctly predicting "nothing" is rewarded and predicting
    nothing for everything is not free.
    """
    preds, refs = [[int(v) for v in p] for p in predictions], [[int(v) for v in r] for r in references]
    preds = [p + [int(not any(p))] for p in preds]
    refs = [r + [int(not any(r))] for r in refs]
    f1 = _module("f1", "multilabel")
    return {
        "accuracy": _module("accuracy", "multilabel").compute(predictions=preds, references=refs)["accuracy"],
        "f1_macro": f1.compute(predictions=preds, references=refs, average="macro")["f1"],
        "f1_micro": f1.compute(predictions=preds, references=refs, average="micro")["f1"],
    }
