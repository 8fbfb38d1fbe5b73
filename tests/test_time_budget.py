"""Equal training seconds as a budget: trainer.time_budget_s plans the steps that fit from the
run's own timed batches, stops the run when its training time reaches the budget, and the
report's budget check names the budget (and refuses seconds measured on different devices)."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from harness.job.validation import validate
from harness.report.budget import DIFFER, EQUAL, check_budget
from harness.run.pipeline import setup
from harness.training import clock
from tests.conftest import TINY, compose_config
from tests.test_bad_input import BASE, run_harness

BUDGETED = ["trainer.autocast=off", "trainer.latency_batches=1", "trainer.max_steps=null"]


def test_the_steps_that_fit_are_counted_step_by_step_over_epochs():
    assert clock.steps_in_seconds(10.0, [3.0, 2.0, 4.0]) == 3  # 9 s
    assert clock.steps_in_seconds(20.0, [3.0, 2.0, 4.0]) == 6  # two epochs, 18 s: the next 3 s do not fit
    assert clock.steps_in_seconds(23.0, [3.0, 2.0, 4.0]) == 8  # 18 + 3 + 2
    with pytest.raises(clock.TimeBudgetError, match=r"trainer.time_budget_s=2 is less than one training step"):
        clock.steps_in_seconds(2.0, [3.0, 1.0])
    assert clock.out_of_time(5.0, 5.0) and not clock.out_of_time(5.0, 4.9) and not clock.out_of_time(None, 1e9)


def test_planning_draws_nothing_the_run_draws_afterwards():
    cfg = validate(compose_config([*TINY, "method=lora", *BUDGETED, "trainer.time_budget_s=100"]))
    s = setup(cfg, torch.device("cpu"))
    batches = s.batches["train"]
    rng, generator = torch.get_rng_state(), batches.sampler.generator.get_state()
    order = clock.batch_indices(batches)
    steps = clock.plan_steps(s.adapted, s.kind, batches, s.device, False, 100.0, packed=False)
    assert steps >= 1
    assert torch.equal(torch.get_rng_state(), rng) and torch.equal(batches.sampler.generator.get_state(), generator)
    assert [list(b) for b in batches.batch_sampler] == order  # the epoch the run trains on is the one timed
    assert all(p.grad is None for p in s.adapted.model.parameters())


def test_a_run_stops_when_its_training_seconds_reach_the_budget(run_tiny):
    free = run_tiny("method=lora", *BUDGETED, "trainer.epochs=50")
    step_s = free["train_s"] / free["optimizer_steps"]
    budget = round(max(0.5, 6 * step_s), 2)  # a few steps, well short of 50 epochs
    row = run_tiny("method=lora", *BUDGETED, "trainer.epochs=50", f"trainer.time_budget_s={budget}")
    assert row["status"] == "finished" and row["time_budget_s"] == budget
    assert 1 <= row["optimizer_steps"] < free["optimizer_steps"]
    last_step = row["train_s"] / row["optimizer_steps"]
    assert budget - 3 * last_step <= row["train_s"] <= budget + 3 * last_step


def test_the_check_names_a_time_budget_and_refuses_seconds_from_two_devices():
    base = {"seed": 0, "n_train": 64, "n_validation": 16, "n_test": 32, "train_examples_seen": 8,
            "train_tokens": 100, "time_budget_s": 10.0, "device": "cpu: AMD EPYC"}
    runs = pd.DataFrame([
        {**base, "label": "lora", "train_s": 10.2, "optimizer_steps": 20},
        {**base, "label": "dora", "train_s": 10.4, "optimizer_steps": 12},
    ])
    check = check_budget(runs)
    assert check.status == EQUAL, check.sentence
    assert check.sentence.startswith("All 2 runs had the same time budget, 10.0 training seconds "
                                     "(trainer.time_budget_s), and spent 10.2 to 10.4 of it")
    assert "dora 12; lora 20" in check.sentence
    runs.loc[1, "device"] = "cuda: NVIDIA H100"
    other = check_budget(runs)
    assert other.status == DIFFER and "ran on different devices" in other.sentence
    runs.loc[1, ["device", "train_s"]] = ["cpu: AMD EPYC", 6.0]
    short = check_budget(runs)
    assert short.status == DIFFER and "dora stopped more than a step short of the budget" in short.sentence
    assert "within its last step" not in short.sentence


@pytest.mark.parametrize("extra, needle", [
    (["trainer.time_budget_s=60", "trainer.max_steps=3"], "trainer.time_budget_s set with trainer.max_steps"),
    (["trainer.time_budget_s=60", "trainer.flops_budget=1e12"], "a run has one budget"),
    (["trainer.time_budget_s=0"], "trainer.time_budget_s must be a finite number > 0, got 0"),
    (["trainer.time_budget_s=60", "trainer.processes=2", "trainer.isolate=true", "trainer.max_steps=null"], "trainer.time_budget_s stops a run by its own clock"),
])
def test_a_bad_time_budget_is_refused_in_one_line_before_anything_trains(extra, needle, tmp_path):
    store = tmp_path / "s.sqlite"
    ran = run_harness([*BASE, f"store.url={store}", *extra], tmp_path)
    assert ran.code == 2 and len(ran.err_lines) == 1 and needle in ran.err and not store.exists()
