"""The run of a classical baseline (:mod:`harness.methods.tfidf`): fit, choose C on the validation
split, test, time, and the same row fields a neural run records (those that apply)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.fields import better


def _classifier(m, c: float, multi_label: bool):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    # liblinear shuffles with a random state of its own: fixed, so that a rerun gives the run's numbers
    base = (LogisticRegression(C=c, max_iter=2000) if m.classifier == "logistic"
            else LinearSVC(C=c, max_iter=5000, random_state=0))
    return OneVsRestClassifier(base) if multi_label else base


def _scores(clf, x, num_labels: int, multi_label: bool) -> np.ndarray | None:
    """Probabilities per label (columns 0..num_labels-1, a class unseen in training at 0), or
    None for a classifier without them (the SVM)."""
    if not hasattr(clf, "predict_proba"):
        return None
    proba = clf.predict_proba(x)
    if multi_label:
        return proba
    out = np.zeros((x.shape[0], num_labels))
    out[:, np.asarray(clf.classes_, dtype=int)] = proba
    return out


def _loss(proba: np.ndarray | None, labels: list, multi_label: bool) -> float | None:
    """Mean cross-entropy, as the neural runs' eval_loss (binary cross-entropy per label for
    multi-label data), from the classifier's probabilities."""
    if proba is None:
        return None
    p = np.clip(proba, 1e-12, 1 - 1e-12)
    y = np.asarray(labels)
    if multi_label:
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    return float(-np.log(p[np.arange(len(y)), y.astype(int)]).mean())


def _evaluate(clf, x, split, kind, num_labels: int, multi_label: bool) -> tuple[dict, list]:
    predictions = clf.predict(x)
    predictions = [list(map(int, p)) for p in predictions] if multi_label else [int(p) for p in predictions]
    metrics = kind.metrics(predictions, split.labels, num_labels)
    metrics["eval_loss"] = _loss(_scores(clf, x, num_labels, multi_label), split.labels, multi_label)
    return metrics, predictions


# ``held`` (both classes below): the step's own data (feature matrices, the last fit's scores),
# referenced until the run ends as when the steps were one function: the eval phase's memory
# peak (peak_memory_eval_bytes) counts them.

@dataclass
class _Search:
    """The validation search over ``method.c_grid``: the fitted vectorizer, each C's value of
    ``trainer.select_metric``, and the best fit (C, classifier, validation metrics)."""
    vectorizer: object
    search: dict = field(default_factory=dict)  # str(C) -> the value (None where not computed)
    best: tuple | None = None
    best_value: float | None = None
    train_s: float = 0.0
    held: tuple = ()  # x_train, y_train, x_val, the last C's validation metrics and predictions


@dataclass
class _Tested:
    """The chosen classifier on the test split: metrics, predictions, latency, saved size."""
    metrics: dict
    predictions: list
    times: list  # ms per latency batch
    saved: int  # bytes of the saved vectorizer and classifier
    held: tuple = ()  # x_test, the latency batch


def run_classical(cfg, isolated: bool, work_dir: Path, tracker) -> tuple[dict, list, dict]:
    """The run's fields, curves (none: there are no epochs) and test predictions."""
    # Imported before the clock starts: their import time is no part of the run's figures.
    import joblib  # noqa: F401
    from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: F401

    from harness.training.energy import EnergyMeter
    from harness.training.memory import PeakMemory
    from harness.tasks import load_task

    t0 = time.perf_counter()
    import torch

    memory = PeakMemory(torch.device("cpu"), isolated).start()
    energy = EnergyMeter("cpu")
    energy.start()
    m, t = cfg.method, cfg.trainer
    with memory.phase("setup"):
        data = load_task(cfg.task)
        kind = data.type
    multi_label = np.asarray(data.train.labels).ndim == 2  # a 0/1 vector of labels per text
    with memory.phase("train"):
        found = _search_c(data, kind, m, t, multi_label, tracker)
    if found.best is None:
        raise ValueError(f"trainer.select_metric={t.select_metric} is not computed by method={m.name}; "
                         "use accuracy, f1_macro or f1_micro")
    with memory.phase("eval"):
        tested = _test(found, data, kind, t, multi_label, work_dir)
    n_weights = _n_weights(found.best[1])
    guess = kind.majority_prediction(data.train.labels)
    fields = _fields(found, tested, n_weights, data, kind, m, t, memory)
    fields.update(energy.stop())
    fields["wall_s"] = time.perf_counter() - t0
    labels = kind.prediction_ids(data.test.labels)
    kept = {"labels": np.asarray(labels), "predictions": np.asarray(kind.prediction_ids(tested.predictions)),
            "majority": np.asarray(kind.prediction_ids([guess] * len(labels)))}
    return fields, [], {"test": kept}


def _search_c(data, kind, m, t, multi_label: bool, tracker) -> _Search:
    """TF-IDF fitted on the training texts, one classifier per C of ``method.c_grid``, each scored
    on the validation split (logged as an epoch); the best by ``trainer.select_metric``, timed."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    started = time.perf_counter()
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, m.ngram_max), min_df=m.min_df,
                                 max_features=m.max_features)
    found = _Search(vectorizer)
    x_train = vectorizer.fit_transform(data.train.texts)
    y_train = np.asarray(data.train.labels)
    x_val = vectorizer.transform(data.validation.texts)
    for c in m.c_grid:
        clf = _classifier(m, float(c), multi_label).fit(x_train, y_train)
        metrics, predictions = _evaluate(clf, x_val, data.validation, kind, data.num_labels, multi_label)
        found.held = (x_train, y_train, x_val, metrics, predictions)
        value = metrics.get(t.select_metric)
        found.search[str(float(c))] = value
        tracker.log_epoch(len(found.search), {f"validation/{k}": v for k, v in metrics.items() if v is not None})
        if value is not None and better(t.select_metric, value, found.best_value):
            found.best, found.best_value = (float(c), clf, metrics), value
    found.train_s = time.perf_counter() - started
    return found


def _test(found: _Search, data, kind, t, multi_label: bool, work_dir: Path) -> _Tested:
    """The chosen classifier on the test split; the median latency's samples (vectorizing and
    classifying ``trainer.latency_batch_size`` texts, after a warm-up); the saved model's size."""
    import joblib

    vectorizer, clf = found.vectorizer, found.best[1]
    x_test = vectorizer.transform(data.test.texts)
    metrics, predictions = _evaluate(clf, x_test, data.test, kind, data.num_labels, multi_label)
    batch = data.test.texts[:t.latency_batch_size]
    clf.predict(vectorizer.transform(batch))  # warm-up
    times = []
    for _ in range(t.latency_batches):
        s = time.perf_counter()
        clf.predict(vectorizer.transform(batch))
        times.append((time.perf_counter() - s) * 1000.0)
    folder = Path(work_dir) / "adapter"
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump({"vectorizer": vectorizer, "classifier": clf}, folder / "tfidf.joblib")
    return _Tested(metrics, predictions, times, (folder / "tfidf.joblib").stat().st_size, (x_test, batch))


def _n_weights(clf) -> int:
    """The classifier's coefficients and intercepts (of every label's, one-vs-rest)."""
    return int(sum(np.asarray(e.coef_).size + np.asarray(e.intercept_).size
                   for e in getattr(clf, "estimators_", [clf])))


def _fields(found: _Search, tested: _Tested, n_weights: int, data, kind, m, t, memory) -> dict:
    """The row's fields, those of a neural run that apply (the memory meter stopped here)."""
    c, _, val_metrics = found.best
    train_s = found.train_s
    majority = data.majority_metrics()
    return {
        **{k: (None if v is None else float(v)) for k, v in tested.metrics.items()},
        "best_epoch": None, "select_metric": t.select_metric, "select_value": float(found.best_value),
        "precision": "fp64", "majority_accuracy": majority["accuracy"],
        "majority_f1_macro": majority.get("f1_macro"),
        **{f"n_truncated_{s}": 0 for s in ("train", "validation", "test")},
        "trainable_params": n_weights, "total_params": n_weights, "trainable_pct": 100.0,
        "adapter_bytes": int(tested.saved), **memory.stop(),
        "train_samples_per_s": len(data.train) * len(m.c_grid) / train_s, "train_tokens_per_s": None,
        "infer_latency_ms": float(sorted(tested.times)[len(tested.times) // 2]), "infer_latency_merged_ms": None,
        "train_s": train_s, "optimizer_steps": None,
        "train_examples_seen": len(data.train) * len(m.c_grid), "train_tokens": None,
        "n_train": len(data.train), "n_validation": len(data.validation), "n_test": len(data.test),
        "dropped_rows": data.dropped_rows, "world_size": 1, "baseline": "classical",
        "details_json": json.dumps({
            "data_source": data.source, "label_names": data.label_names, "task_type": kind.name,
            "majority": majority, "model_used": False, "whole_texts": True, "chosen_C": c,
            "c_search": found.search, "vocabulary": len(found.vectorizer.vocabulary_), "classifier": m.classifier,
            "validation": val_metrics}, sort_keys=True, default=str),
    }
