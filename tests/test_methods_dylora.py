"""DyLoRA: the forward really uses rank b, the rank changes from step to step, ranks are scored."""
from __future__ import annotations

import pytest
import torch

from harness.config import ConfigError

from harness.job.validation import validate
from harness.methods.dylora import DyLoRALinear
from harness.models.load import load_model
from harness.training.loop import training_loss
from tests.conftest import tiny_config
from tests.method_helpers import build_config, build_from


def build(store_path, *overrides):
    cfg = build_config(store_path, "method=dylora", "method.dropout=0.0", *overrides)
    return build_from(cfg, load_model(cfg.model, cfg.quant, 2, torch.device("cpu")).model)


def batch(n=4, length=10):
    torch.manual_seed(1)
    return {"input_ids": torch.randint(5, 40, (n, length)),
            "attention_mask": torch.ones(n, length, dtype=torch.long), "labels": torch.arange(n) % 2}


@pytest.mark.parametrize("frozen", ["true", "false"])  # the mode changes gradients, not outputs
def test_forward_equals_a_manual_rank_b_computation(store_path, frozen):
    adapted = build(store_path, f"method.frozen={frozen}")
    name, layer = next(iter(adapted.layers.items()))
    with torch.no_grad():
        layer.lora_B.normal_()  # B starts at zero; give the update a value to check
    x = torch.randn(3, 5, layer.base.in_features)
    alpha = adapted.method.alpha
    layer.train()
    for b in (1, 3, 8):
        layer.train_rank = b
        manual = layer.base(x) + (alpha / b) * x @ layer.lora_A[:b].T @ layer.lora_B[:, :b].T
        assert torch.allclose(layer(x), manual, atol=1e-5), (name, b)
    # Rows beyond b do not take part: changing them leaves the output as it was.
    layer.train_rank = 3
    before = layer(x)
    with torch.no_grad():
        layer.lora_A[3:].normal_()
        layer.lora_B[:, 3:].normal_()
    assert torch.equal(layer(x), before)
    layer.eval()
    layer.eval_rank = 2
    manual = layer.base(x) + (alpha / 2) * x @ layer.lora_A[:2].T @ layer.lora_B[:, :2].T
    assert torch.allclose(layer(x), manual, atol=1e-5)


def test_default_mode_is_the_authors_frozen_training(store_path):
    adapted = build(store_path)
    assert adapted.method.frozen is True
    assert all(layer.frozen for layer in adapted.layers.values())


def test_sampled_ranks_vary_across_steps_within_the_range(store_path):
    adapted = build(store_path, "method.r=6", "method.r_min=2")
    for step in range(1, 41):
        adapted.after_optimizer_step(step, 40)
        ranks = {layer.train_rank for layer in adapted.layers.values()}
        assert ranks == {adapted.sampled[-1]}  # one rank for all layers at a step
    assert set(adapted.sampled) == {2, 3, 4, 5, 6}


@pytest.mark.parametrize("overrides,rows_with_grad", [
    (["method.frozen=false"], [0, 1, 2]),
    (["method.frozen=true"], [2]),
    ([], [2]),  # the default is the paper's mode: only row b of A / column b of B trains
])
def test_only_rows_up_to_b_get_gradients_and_frozen_mode_only_row_b(store_path, overrides, rows_with_grad):
    adapted = build(store_path, *overrides)
    layers = list(adapted.layers.values())
    with torch.no_grad():
        for layer in layers:
            layer.lora_B.normal_()
            layer.train_rank = 3
    adapted.model.train()
    training_loss(adapted, adapted.ctx.task_type, batch()).backward()
    for layer in layers:
        rows = [i for i in range(layer.lora_A.shape[0]) if layer.lora_A.grad[i].abs().sum() > 0]
        cols = [i for i in range(layer.lora_B.shape[1]) if layer.lora_B.grad[:, i].abs().sum() > 0]
        assert rows == rows_with_grad and cols == rows_with_grad


def test_trains_as_many_parameters_as_lora_of_the_same_rank(store_path):
    dy = build(store_path)
    cfg = build_config(store_path, "method=lora")
    lora = build_from(cfg, load_model(cfg.model, cfg.quant, 2, torch.device("cpu")).model)
    base = load_model(cfg.model, cfg.quant, 2, torch.device("cpu")).model
    targets = [m for n, m in base.named_modules() if isinstance(m, torch.nn.Linear)
               and n.split(".")[-1] in ("query", "key", "value", "dense")]
    head = sum(p.numel() for p in base.classifier.parameters())
    expected = sum(8 * (m.in_features + m.out_features) for m in targets) + head
    assert dy.count_parameters()[0] == lora.count_parameters()[0] == expected
    assert all(isinstance(m, DyLoRALinear) for m in dy.layers.values()) and len(dy.layers) == len(targets)


@pytest.mark.parametrize("overrides,needle", [
    (["method.r_min=9"], "method.r_min must be in [1, method.r=8]"),
    (["method.eval_ranks=[0,4]"], "method.eval_ranks must be in [1, method.r=8]"),
])
def test_bad_ranks_fail_with_one_line(store_path, overrides, needle):
    with pytest.raises(ConfigError) as info:
        validate(tiny_config(store_path, "method=dylora", *overrides))
    assert needle in str(info.value) and "\n" not in str(info.value)
