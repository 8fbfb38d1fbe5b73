"""MFU on every row: the FLOPs of a training step counted on the run's own model and batch, checked
against a hand count on a tiny model; methods' own work counted; peaks recorded; the run's
numbers unchanged by the count."""
from __future__ import annotations

import math

import pytest
import torch

from harness.job.validation import validate
from harness.run.pipeline import setup
from harness.training import flops
from tests.conftest import compose_config

TINY_LLAMA = ["model=tiny_llama", "task=synthetic", "trainer=smoke", "trainer.autocast=off"]


def _setup(*overrides: str):
    cfg = validate(compose_config([*TINY_LLAMA, *overrides]))
    s = setup(cfg, torch.device("cpu"))
    return s, next(iter(s.batches["train"]))


def hand_count(model, batch: dict, trainable_all: bool) -> int:
    """FLOPs of one forward and backward pass of a Llama for sequence classification with every
    weight trained: each linear layer 2 FLOPs per weight per token forward and 4 backward (the
    input's and the weight's gradients); attention's two matmuls (scores and the weighted sum)
    4·T·d per token per layer forward, 8 backward, over the padded length T."""
    assert trainable_all
    config = model.config
    tokens = batch["input_ids"].numel()
    length = batch["input_ids"].shape[1]
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    d = config.num_attention_heads * (config.hidden_size // config.num_attention_heads)
    return 6 * linear * tokens + 12 * config.num_hidden_layers * length * d * tokens


def test_the_counted_flops_of_full_fine_tuning_equal_a_hand_count():
    s, batch = _setup("method=full")
    counted = flops.step_flops(s.adapted, s.kind, batch, s.device, bf16=False)
    assert counted == hand_count(s.adapted.model, batch, trainable_all=True)
    assert not any(p.grad is not None for p in s.adapted.model.parameters())  # gradients cleared


def test_frozen_weights_cost_no_weight_gradient_and_doras_extra_work_counts():
    full, batch = _setup("method=full")
    lora, _ = _setup("method=lora")
    dora, _ = _setup("method=dora")
    f = flops.step_flops(full.adapted, full.kind, batch, full.device, bf16=False)
    lo = flops.step_flops(lora.adapted, lora.kind, batch, lora.device, bf16=False)
    do = flops.step_flops(dora.adapted, dora.kind, batch, dora.device, bf16=False)
    # A frozen linear layer computes no weight gradient (2 FLOPs per weight per token saved), and
    # at most its input's gradient too (4); LoRA adds its factors' 6 per trained weight per token.
    model, tokens = lora.adapted.model, batch["input_ids"].numel()
    frozen = sum(m.weight.numel() for m in model.modules()
                 if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad)
    factors = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "lora_" in n)
    assert frozen > 0 and factors > 0
    assert f - 4 * frozen * tokens <= lo <= f - 2 * frozen * tokens + 6 * factors * tokens
    assert do > lo  # DoRA's weight-norm work is counted


def test_mfu_fields_follow_from_the_count_the_rate_and_the_peak(monkeypatch, tmp_path):
    monkeypatch.setenv("PEFT_HARNESS_CACHE", str(tmp_path))
    s, batch = _setup("method=lora")
    counted = flops.count_training_step(s.adapted, s.kind, s.encoded["train"].examples,
                                        s.batches["train"].collate_fn, 8, s.device, False)
    fields = flops.mfu_fields(counted, 1000.0, s.device, False)
    first = s.batches["train"].collate_fn(s.encoded["train"].examples[:8])
    per_token = flops.step_flops(s.adapted, s.kind, first, s.device, False) / first["input_ids"].numel()
    assert fields["train_flops_per_token"] == pytest.approx(per_token)
    assert fields["achieved_tflops"] == pytest.approx(per_token * 1000.0 / 1e12)
    assert fields["peak_source"] == "measured" and fields["peak_tflops_datasheet"] is None
    assert fields["mfu"] == pytest.approx(fields["achieved_tflops"] / fields["peak_tflops_measured"])
    assert (tmp_path / "peak_tflops.json").is_file()  # measured once per device, then cached
    assert flops.measured_tflops(s.device, False) == fields["peak_tflops_measured"]


def test_datasheet_peaks_are_matched_by_name_most_specific_first():
    assert flops.datasheet_tflops("NVIDIA H100 80GB HBM3", bf16=True) == 989.4
    assert flops.datasheet_tflops("NVIDIA H100 PCIe", bf16=True) == 756.0
    assert flops.datasheet_tflops("NVIDIA A100-SXM4-80GB", bf16=True) == 312.0
    assert flops.datasheet_tflops("NVIDIA L40S", bf16=True) == 362.1
    assert flops.datasheet_tflops("NVIDIA L4", bf16=True) == 121.0
    assert flops.datasheet_tflops("NVIDIA L40", bf16=True) == 181.0  # not the L4's
    assert flops.datasheet_tflops("NVIDIA H200", bf16=True) == 989.4
    assert flops.datasheet_tflops("NVIDIA GH200 480GB", bf16=True) == 989.4
    assert flops.datasheet_tflops("NVIDIA H200 NVL", bf16=True) == 835.0
    assert flops.datasheet_tflops("NVIDIA A10G", bf16=True) is None  # no datasheet figure: measured
    assert flops.datasheet_tflops("NVIDIA A10", bf16=True) == 125.0
    assert flops.datasheet_tflops("NVIDIA H100 80GB HBM3", bf16=False) is None  # fp32: measured
    assert flops.datasheet_tflops("Tesla T4", bf16=True) is None


def test_every_row_records_mfu_and_the_count_changes_no_number(run_tiny, store_path, monkeypatch, tmp_path):
    monkeypatch.setenv("PEFT_HARNESS_CACHE", str(tmp_path / "cache"))
    row = run_tiny("method=lora", "trainer.autocast=off")
    assert row["train_flops_per_token"] > 0 and row["achieved_tflops"] > 0
    assert 0 < row["mfu"] < 1 and row["peak_source"] == "measured"
    assert math.isclose(row["achieved_tflops"], row["train_flops_per_token"] * row["train_tokens_per_s"] / 1e12)
    from harness.config import ReportConfig
    from harness.report import build_report

    report = build_report(store_path, tmp_path / "report",
                          options=ReportConfig(pdf=False, formats=["md"]))
    assert any(p.name.endswith("_pareto_flops.png") for p in report.files)
    assert "Accuracy vs training compute" in (tmp_path / "report" / "report.md").read_text()
    monkeypatch.setattr(flops, "mfu_fields", lambda *a, **k: {})
    again = run_tiny("method=lora", "trainer.autocast=off", "force=true")
    assert again["accuracy"] == row["accuracy"] and again["eval_loss"] == row["eval_loss"]


def test_a_4bit_base_counts_as_the_dense_matmuls_it_stands_for():
    """bitsandbytes' fused 4-bit matmul is no aten op: counted by its shape, QLoRA's step costs
    what LoRA's does on the same model and batch (the dequantisation is not model FLOPs)."""
    lora, batch = _setup("method=lora", "model=tiny_bert")
    qlora, _ = _setup("method=qlora", "model=tiny_bert")
    assert flops.step_flops(qlora.adapted, qlora.kind, batch, qlora.device, False) == \
        flops.step_flops(lora.adapted, lora.kind, batch, lora.device, False)
