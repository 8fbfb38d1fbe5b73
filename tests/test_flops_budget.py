"""Equal compute as a budget: trainer.flops_budget gives every run the same training FLOPs; each
takes the steps its counted step fits, and the report's budget check names the budget."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from harness.job.validation import validate
from harness.report.budget import DIFFER, EQUAL, check_budget
from harness.run.pipeline import setup
from harness.training import flops
from tests.conftest import TINY, compose_config
from tests.test_bad_input import BASE, run_harness

FP32 = ["trainer.autocast=off", "trainer.latency_batches=1"]
BUDGETED = [*FP32, "trainer.max_steps=null"]  # trainer=smoke caps the steps; a FLOPs budget replaces that


def counted_step(method: str) -> int:
    cfg = validate(compose_config([*TINY, f"method={method}", *FP32]))
    s = setup(cfg, torch.device("cpu"))
    return flops.count_training_step(s.adapted, s.kind, s.encoded["train"].examples,
                                     s.batches["train"].collate_fn, cfg.trainer.batch_size,
                                     s.device, False)[0]


def test_each_method_takes_the_steps_its_counted_step_fits_and_the_check_names_the_budget(run_tiny):
    lora, dora = counted_step("lora"), counted_step("dora")
    assert dora > lora
    budget = 7.5 * lora  # more than the smoke trainer's epochs hold: the run takes what it needs
    rows = {m: run_tiny(f"method={m}", *BUDGETED, f"trainer.flops_budget={budget}") for m in ("lora", "dora")}
    assert rows["lora"]["optimizer_steps"] == 7 and rows["dora"]["optimizer_steps"] == int(budget // dora)
    for method, row in rows.items():
        step = {"lora": lora, "dora": dora}[method]
        assert row["train_flops"] == step * row["optimizer_steps"] and row["flops_budget"] == budget
        assert budget - step < row["train_flops"] <= budget
    runs = pd.DataFrame([{**r, "label": m} for m, r in rows.items()])
    check = check_budget(runs)
    assert check.status == EQUAL and check.equal
    assert f"the same compute budget, {budget:.3g} training FLOPs (trainer.flops_budget)" in check.sentence
    assert f"dora {int(budget // dora)}; lora 7" in check.sentence


def test_the_budgets_counted_step_runs_apart_from_the_runs_peak_memory(monkeypatch):
    """setup's ``apart``: the memory phase the pipeline keeps out of the run's peak (as the FLOP
    count's); the budget's counting step runs inside it."""
    import contextlib

    state = {"inside": False, "counted inside": 0, "counted outside": 0}

    @contextlib.contextmanager
    def apart():
        state["inside"] = True
        try:
            yield
        finally:
            state["inside"] = False

    original = flops.count_training_step

    def counting(*args, **kwargs):
        state["counted inside" if state["inside"] else "counted outside"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(flops, "count_training_step", counting)
    cfg = validate(compose_config([*TINY, "method=lora", *BUDGETED, "trainer.flops_budget=1e12"]))
    setup(cfg, torch.device("cpu"), apart=apart)
    assert state == {"inside": False, "counted inside": 1, "counted outside": 0}


def test_a_run_short_of_the_budget_or_another_budget_is_not_equal_compute():
    base = {"seed": 0, "n_train": 64, "n_validation": 16, "n_test": 32, "train_examples_seen": 8,
            "train_tokens": 100}
    runs = pd.DataFrame([
        {**base, "label": "lora", "flops_budget": 1e9, "train_flops": 0.95e9, "optimizer_steps": 10},
        {**base, "label": "dora", "flops_budget": 1e9, "train_flops": 0.5e9, "optimizer_steps": 5},
    ])
    short = check_budget(runs)
    assert short.status == DIFFER and "dora stopped more than a step short of the budget" in short.sentence
    runs.loc[1, ["flops_budget", "train_flops"]] = [2e9, 1.9e9]
    other = check_budget(runs)
    assert other.status == DIFFER and "FLOPs budgets differ (dora 2e+09; lora 1e+09)" in other.sentence


@pytest.mark.parametrize("extra, needle", [
    (["trainer.flops_budget=1e12", "trainer.max_steps=3"], "trainer.flops_budget and trainer.max_steps both set"),
    (["trainer.flops_budget=-5"], "trainer.flops_budget must be a finite number > 0, got -5"),
    (["trainer.flops_budget=nan"], "trainer.flops_budget must be a finite number > 0, got nan"),
])
def test_a_bad_budget_is_refused_in_one_line_before_anything_trains(extra, needle, tmp_path):
    store = tmp_path / "s.sqlite"
    ran = run_harness([*BASE, f"store.url={store}", *extra], tmp_path)
    assert ran.code == 2 and len(ran.err_lines) == 1 and needle in ran.err and not store.exists()


def test_a_budget_under_one_step_fails_the_run_with_one_line(run_tiny):
    row = run_tiny("method=lora", *BUDGETED, "trainer.flops_budget=1000")
    assert row["status"] == "failed"
    assert row["error"].startswith("BudgetError: trainer.flops_budget=1e+03 is less than one training step")


def test_a_pair_at_one_flops_budget_is_at_the_same_budget_whatever_its_steps():
    from harness.report.pairing import budget_difference

    base = {"seed": 0, "n_train": 64, "n_validation": 16, "n_test": 32, "train_examples_seen": 8,
            "train_tokens": 100, "flops_budget": 1e9}
    lora = pd.DataFrame([{**base, "run_id": "a", "label": "lora", "train_flops": 0.95e9, "optimizer_steps": 10}])
    dora = pd.DataFrame([{**base, "run_id": "b", "label": "dora", "train_flops": 0.9e9, "optimizer_steps": 5}])
    assert budget_difference(lora, dora) == (True, "")
    stepped = dora.assign(flops_budget=float("nan"))
    assert budget_difference(lora, stepped) == (False, "a FLOPs budget vs a step budget")
    short = dora.assign(train_flops=0.7e9)
    assert budget_difference(lora, short) == (False, "dora stopped more than a step short of the FLOPs budget 1e+09")
