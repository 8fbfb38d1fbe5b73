"""TF-IDF features with a linear classifier: the classical text baseline (``method=tfidf``).

Word n-gram TF-IDF (scikit-learn's ``TfidfVectorizer``, sublinear term frequency) fitted on the
training split, and a logistic regression (or a linear SVM, ``method.classifier``) whose inverse
regularization ``C`` is chosen on the validation split by ``trainer.select_metric``, one fit per
value of ``method.c_grid``; the chosen model is scored on the test split exactly as the neural
runs are (the task type's metrics, the same majority baseline, per-example predictions for the
paired statistics). LexGLUE (Chalkidis et al. 2022) reports TF-IDF with a linear SVM at 74.0
micro-F1 on SCOTUS against BERT's 68.3: on long legal texts this baseline is not a formality.

It reads whole texts (no ``task.max_length``: nothing is truncated, recorded as such) and uses no
neural model (``model`` is recorded only to place the row beside the runs it is compared with).
Its cost figures are its own: peak memory and wall time of the whole run, the search's fitting
time as ``train_s``, and the latency of vectorizing and classifying one latency batch on CPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.config import MethodConfig, check, register_method_schema
from harness.methods.spec import register_method


@dataclass
class TfidfMethodConfig(MethodConfig):
    classifier: str = "logistic"  # logistic (log loss recorded) | linear_svm (LexGLUE's choice)
    c_grid: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0, 100.0])
    ngram_max: int = 2  # word n-grams from 1 to this
    min_df: int = 2  # a term must appear in this many training texts
    max_features: int = 200000

    @property
    def ranked(self) -> bool:
        return False

    @property
    def baseline(self) -> str:
        return "classical"

    @property
    def learned_rate(self) -> bool:
        return False

    def __post_init__(self) -> None:
        super().__post_init__()
        classifiers = ("logistic", "linear_svm")  # (literal: the schema is built from this source)
        check(self.classifier in classifiers,
              f"method.classifier must be one of {', '.join(classifiers)}; got {self.classifier!r}")
        check(len(self.c_grid) > 0 and all(c > 0 for c in self.c_grid),
              f"method.c_grid must be one or more values > 0, got {list(self.c_grid)!r}")
        for key in ("ngram_max", "min_df", "max_features"):
            check(getattr(self, key) >= 1, f"method.{key} must be >= 1, got {getattr(self, key)!r}")

    def check_run(self, run) -> None:
        check(run.protocol.name != "tuned", f"method={self.name} has no learning rate to search: "
                                            "use protocol=fixed (it chooses C on the validation split itself)")
        check(run.trainer.processes == 1, f"method={self.name} runs in one process: set trainer.processes=1")


register_method_schema("tfidf", TfidfMethodConfig)


@register_method("tfidf", four_bit=False, task_types=("single_label", "multi_label"), standalone=True)
def run(cfg, isolated: bool, work_dir, tracker):
    from harness.methods.classical import run_classical

    return run_classical(cfg, isolated, work_dir, tracker)
