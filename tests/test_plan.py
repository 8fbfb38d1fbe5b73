"""The memory planner (python -m harness.plan): its counts are the run's own, its 4-bit weights
are bitsandbytes' bytes, its activations are what autograd really saves, and its error against
the store and the published anchors is printed by one command."""
from __future__ import annotations

import math

import pytest
import torch

from harness.plan import GIB, estimate, saved_for_backward
from harness.plan.__main__ import main as plan_cli
from harness.plan.compose import configs
from tests.conftest import TINY

LM = ["model=tiny_llama", "task=rotten_tomatoes_prompt", "trainer=smoke"]


@pytest.mark.parametrize("method", ["lora", "dora", "vera", "lorafa", "full", "hyperlora"])
def test_the_plan_counts_the_parameters_the_run_trains(run_tiny, method):
    row = run_tiny(f"method={method}")
    assert row["status"] == "finished", row.get("error")
    planned = estimate(configs([*TINY, f"method={method}"])[0])
    assert planned.trainable == row["trainable_params"]


def test_four_bit_weights_are_the_bytes_bitsandbytes_stores():
    from harness.models import load_model

    for double in (True, False):
        cfg = configs([*LM, "method=qlora", f"quant.double_quant={double}"])[0]
        loaded = load_model(cfg.model, cfg.quant, 0, torch.device("cpu"), causal_lm=True)
        stored = 0
        for p in loaded.model.parameters():
            stored += p.numel() * p.element_size()  # 4-bit weights: packed, two to a byte
            state = getattr(p, "quant_state", None)
            if state is not None:
                stored += state.absmax.numel() * state.absmax.element_size()
                if state.nested:
                    stored += state.state2.absmax.numel() * state.state2.absmax.element_size()
        planned = estimate(cfg).weights
        assert planned == pytest.approx(stored, rel=0.01), (double, planned, stored)
    full = estimate(configs([*LM, "method=lora"])[0]).weights
    assert planned < full  # and the unquantized base is larger


def test_activations_are_what_a_real_backward_pass_keeps():
    from harness.models import load_model
    from harness.pipeline import build_method, method_context
    from harness.plan import meta_model

    cfg = configs([*TINY, "method=lora", "trainer.autocast=off"])[0]
    config, kind, _, _, adapted = meta_model(cfg)
    planned, _, _ = saved_for_backward(adapted.model, 4, 16, causal_lm=False)
    loaded = load_model(cfg.model, cfg.quant, 2, torch.device("cpu"))
    model = build_method(cfg, loaded.model, method_context(cfg, kind, torch.device("cpu"))).model
    model.train()
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    seen: dict[int, int] = {}

    def keep(t):
        key = t.untyped_storage()._cdata
        if key not in params and t.is_floating_point():
            seen[key] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model(input_ids=torch.randint(5, config.vocab_size, (4, 16)))
    assert planned == sum(seen.values()) and planned > 0


def test_an_eight_bit_optimizer_and_gradient_checkpointing_cut_what_they_should():
    plain = estimate(configs([*LM, "method=full"])[0])
    eight = estimate(configs([*LM, "method=full", "trainer.optimizer=adamw_8bit"])[0])
    # bitsandbytes keeps tensors under 4,096 elements in 32-bit: states shrink, not to a quarter
    assert plain.optimizer / 4 < eight.optimizer < plain.optimizer
    ckpt = estimate(configs([*LM, "method=lora", "trainer.gradient_checkpointing=true",
                             "trainer.batch_size=16", "task.max_length=64"])[0])
    full_act = estimate(configs([*LM, "method=lora", "trainer.batch_size=16", "task.max_length=64"])[0])
    assert ckpt.activations < full_act.activations


def test_the_cli_tells_what_fits_and_refuses_a_bad_override_in_one_line(capsys):
    assert plan_cli([*LM, "method=lora,qlora", "--budget-gib", "100"]) == 0
    out = capsys.readouterr().out
    assert "lora" in out and "qlora" in out and "fits" in out and "total_GiB" in out
    assert plan_cli([*LM, "method=lorra"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown method 'lorra'" in err


def test_a_gpu_run_is_planned_on_a_machine_without_one(capsys):
    cfg = configs([*LM, "method=qlora", "trainer.device=cuda", "trainer.optimizer=paged_adamw_8bit"])[0]
    planned = estimate(cfg)
    assert planned.paged > 0 and planned.optimizer == 0  # unified memory, outside the allocator


def test_validate_compares_the_stores_runs_and_the_published_anchors(run_tiny, store_path):
    from harness.plan.check import ANCHORS, validate_against_anchors, validate_against_store

    assert run_tiny("method=lora")["status"] == "finished"
    table = validate_against_store(str(store_path))
    row = table.set_index("method").loc["lora"]
    assert row["runs"] == 1 and row["memory"] == "cpu_rss" and math.isfinite(row["measured_GiB"])
    litgpt = [a for a in ANCHORS if a.name.startswith("litgpt Llama-2-7B LoRA")]
    ANCHORS[:] , kept = litgpt, list(ANCHORS)
    try:
        anchors = validate_against_anchors()
    finally:
        ANCHORS[:] = kept
    predicted = anchors.loc[0, "predicted_GiB"]
    assert abs(predicted / (19.77e9 / GIB) - 1) < 0.10  # within 10% of litgpt's measured peak


def test_planning_for_a_gpu_leaves_this_machines_device_alone():
    from harness.fingerprint import PLAN_DEVICE_ENV, device_kind

    here = device_kind("auto")
    configs([*LM, "method=lora", "trainer.device=cuda"])
    assert device_kind("auto") == here and PLAN_DEVICE_ENV not in __import__("os").environ


def test_the_report_adds_what_fits_the_budget_for_its_methods(run_tiny, store_path, tmp_path):
    from harness.config import ReportConfig
    from harness.report.build import build_report

    for method in ("lora", "dora"):
        assert run_tiny(f"method={method}")["status"] == "finished"
    options = ReportConfig(pdf=False, formats=["md"], plan="model=tiny_bert task=synthetic", budget_gib=64)
    build_report(store_path, tmp_path / "report", options=options)
    text = (tmp_path / "report" / "report.md").read_text()
    section = text[text.index("What fits 64 GiB: model=tiny_bert task=synthetic"):]
    assert "| dora |" in section and "| lora |" in section and "| yes |" in section
