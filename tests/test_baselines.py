"""The baselines every quality table carries: TF-IDF with a linear classifier (C chosen on the
validation split), the linear probe (only the head trains), zero-shot for causal LMs; each is a
row in the store with its own cost figures, and the report names them."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.results import load, open_store
from tests.conftest import TINY
from tests.method_helpers import base_model, build_config, build_from, head_size, train_steps
from tests.test_tasks import write_multilabel_jsonl


def test_tfidf_chooses_c_on_validation_and_scores_the_test_split_like_sklearn(run_tiny, store_path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from harness.tasks import load_task
    from harness.job.validation import validate
    from tests.conftest import tiny_config

    row = run_tiny("method=tfidf")
    assert row["status"] == "finished", row.get("error")
    details = json.loads(row["details_json"])
    search = {float(c): v for c, v in details["c_search"].items()}
    assert sorted(search) == [0.01, 0.1, 1.0, 10.0, 100.0]
    assert details["chosen_C"] == max(search, key=lambda c: (search[c], -c))  # first best on validation
    assert row["r"] is None and row["lr"] is None and row["baseline"] == "classical"
    assert row["optimizer_steps"] is None and row["train_s"] > 0 and row["infer_latency_ms"] > 0
    assert row["peak_memory_bytes"] > 0 and row["adapter_bytes"] > 0
    # The same pipeline fitted here, independently, predicts what the run stored.
    data = load_task(validate(tiny_config(store_path, "method=tfidf")).task)
    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2, max_features=200000)
    clf = LogisticRegression(C=details["chosen_C"], max_iter=2000).fit(vec.fit_transform(data.train.texts),
                                                                        data.train.labels)
    expected = clf.predict(vec.transform(data.test.texts))
    kept = open_store(str(store_path)).predictions([row["run_id"]])[row["run_id"]]
    assert np.array_equal(kept["predictions"], expected)
    assert row["accuracy"] == pytest.approx(float((expected == np.asarray(data.test.labels)).mean()))
    assert row["trainable_params"] == clf.coef_.size + clf.intercept_.size


def test_tfidf_on_multi_label_data(run_tiny, tmp_path):
    path = write_multilabel_jsonl(tmp_path / "ml.jsonl")
    row = run_tiny("method=tfidf", "task=jsonl", f"task.data_path={path}", "task.label_column=labels",
                   "task.task_type=multi_label")
    assert row["status"] == "finished", row.get("error")
    assert 0 <= row["f1_micro"] <= 1 and row["eval_loss"] > 0


def test_the_linear_probe_trains_the_head_alone(store_path):
    cfg = build_config(store_path, "method=head_only")
    adapted = build_from(cfg, base_model(cfg))
    trainable = {n for n, p in adapted.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("classifier.") for n in trainable)
    frozen = {n: p.detach().clone() for n, p in adapted.model.named_parameters() if not p.requires_grad}
    head = {n: p.detach().clone() for n, p in adapted.model.named_parameters() if p.requires_grad}
    train_steps(adapted, 2)
    params = dict(adapted.model.named_parameters())
    assert all(torch.equal(v, params[n]) for n, v in frozen.items())
    assert all(not torch.equal(v, params[n]) for n, v in head.items())
    assert adapted.count_parameters()[0] == head_size(cfg)


def test_the_linear_probe_is_a_row_with_its_own_costs(run_tiny):
    row = run_tiny("method=head_only")
    assert row["status"] == "finished", row.get("error")
    assert row["baseline"] == "probe" and row["r"] is None and row["lr"] == 2e-3
    assert row["optimizer_steps"] == 6 and row["train_samples_per_s"] > 0
    assert 0 < row["adapter_bytes"] < 10_000  # the head alone


def test_zero_shot_scores_the_untrained_model_as_trained_runs_are_scored(run_tiny):
    zero = run_tiny("method=zero_shot", "model=tiny_llama", "task=rotten_tomatoes_choice")
    assert zero["status"] == "finished", zero.get("error")
    assert zero["baseline"] == "untrained" and zero["optimizer_steps"] == 0
    assert zero["trainable_params"] == 0 and zero["adapter_bytes"] == 0 and zero["train_samples_per_s"] is None
    assert zero["select_value"] is not None and 0 <= zero["accuracy"] <= 1
    # A LoRA run that takes no step (its B starts at zero) computes the same function: same score.
    same = run_tiny("method=lora", "model=tiny_llama", "task=rotten_tomatoes_choice", "method.lr=1e-12")
    assert same["accuracy"] == pytest.approx(zero["accuracy"], abs=0.02)


@pytest.mark.parametrize("args,needle", [
    (["method=tfidf", "model=tiny_llama", "task=rotten_tomatoes_prompt"],
     "method=tfidf does not support task type generation"),
    (["method=tfidf", "protocol=tuned"], "method=tfidf has no learning rate to search: use protocol=fixed"),
    (["method=tfidf", "quant=nf4"], "method=tfidf cannot train a 4-bit base"),
    (["method=zero_shot"], "method=zero_shot does not support task type single_label"),
    (["method=head_only", "model=tiny_llama", "task=rotten_tomatoes_prompt"],
     "method=head_only does not support task type generation"),
    (["method=tfidf", "method.c_grid=[]"], "method.c_grid must be one or more values > 0"),
])
def test_baselines_refuse_what_they_cannot_run(tmp_path, args, needle):
    done = subprocess.run([sys.executable, "-m", "harness", *TINY, *args, f"store.url={tmp_path / 'r.db'}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and needle in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_report_shows_the_baselines_beside_the_methods(run_tiny, store_path, tmp_path):
    from harness.config import ReportConfig
    from harness.report import build_report

    for method in ("lora", "head_only", "tfidf"):
        for seed in (0, 1):
            assert run_tiny(f"method={method}", f"seed={seed}")["status"] == "finished"
    assert set(load(store_path)["baseline"].dropna()) == {"classical", "probe"}
    build_report(store_path, tmp_path / "out", options=ReportConfig(pdf=False))
    text = (tmp_path / "out" / "report.md").read_text()
    table = text[text.index("## 3. Tables"):]
    for row in ("| head_only |", "| lora (reference) |", "| tfidf |", "| majority class |"):
        assert row in table
    assert "Baselines: head_only: the linear probe" in table and "tfidf: a classical text classifier" in table
    assert "Baselines that train no network, outside the training budget: tfidf." in table
    assert "tfidf: no learning rate (a baseline that trains no network)" in text


def test_the_svm_baseline_gives_the_same_numbers_every_time(run_tiny):
    """liblinear shuffles with its own random state: fixed, so a rerun reproduces the run."""
    first = run_tiny("method=tfidf", "method.classifier=linear_svm", "task=multi_synthetic")
    again = run_tiny("method=tfidf", "method.classifier=linear_svm", "task=multi_synthetic", "force=true")
    assert first["status"] == again["status"] == "finished"
    assert (first["f1_macro"], first["accuracy"]) == (again["f1_macro"], again["accuracy"])
