"""trainer.compile: the training forward through torch.compile (inductor), the same training up
to float rounding, recorded in the run's identity and details."""
from __future__ import annotations

import json
import math

FAST = ["method=lora", "trainer.autocast=off", "trainer.latency_batches=1"]


def test_a_compiled_run_trains_as_the_eager_one_does(run_tiny):
    eager = run_tiny(*FAST)
    compiled = run_tiny(*FAST, "trainer.compile=true")
    assert compiled["status"] == "finished", compiled.get("error")
    assert compiled["config_hash"] != eager["config_hash"]
    assert json.loads(compiled["details_json"])["compile"] is True
    assert compiled["optimizer_steps"] == eager["optimizer_steps"]
    # the same steps on the same batches: the selected validation value and the test loss agree
    # to float rounding (inductor fuses and reorders, so not to the bit)
    assert math.isclose(compiled["eval_loss"], eager["eval_loss"], rel_tol=1e-3)
    assert math.isclose(compiled["select_value"], eager["select_value"], abs_tol=1e-9)
