"""AdaLoRA prunes ranks to its budget and its orthogonality penalty reaches the trainer's loss,
Delta-LoRA moves W by the adapter's delta, and two parallel LoRA updates of rank r are one LoRA
update of rank 2r."""
from __future__ import annotations

import pytest
import torch
from peft.tuners.lora import LoraLayer

from harness.methods.adalora import orthogonal_penalty
from harness.training.loop import training_loss
from tests.method_helpers import base_model, batch, build, build_config, build_from, train_steps


def test_adalora_ranks_shrink_during_training_to_the_target_budget(store_path):
    adapted = build(store_path, "method=adalora", "method.delta_t=1")
    layers = {n: m for n, m in adapted.model.named_modules() if hasattr(m, "lora_E")}
    init_budget, target = 12 * len(layers), 8 * len(layers)
    assert adapted.initial_budget() == init_budget
    totals = []
    train_steps(adapted, 8, on_step=lambda step: totals.append(sum(adapted.ranks().values())))
    # Pruning happens step by step, from the initial budget down to the target, then holds.
    assert len(set(totals)) >= 3 and totals == sorted(totals, reverse=True)
    assert init_budget > totals[0] and totals[-1] == target
    ranks = adapted.ranks()
    assert len(ranks) == len(layers) and len(set(ranks.values())) > 1  # allocated, not uniform
    # The pruned singular values are really zero in the model.
    for name, layer in layers.items():
        kept = int((layer.lora_E["default"] != 0).sum())
        assert kept == ranks[name.removeprefix("base_model.model.")]
    assert [t for _, t in adapted.budget_history] == sorted(set(totals), reverse=True)


def test_adalora_without_its_step_hook_would_keep_every_rank(store_path):
    adapted = build(store_path, "method=adalora", "method.delta_t=1")
    adapted.after_optimizer_step = lambda step, total: None  # the trap the hook avoids
    train_steps(adapted, 8)
    assert adapted.ranks() == {}
    assert all(bool((m.lora_E["default"] != 0).all()) for m in adapted.model.modules() if hasattr(m, "lora_E"))


def _peft_penalty(adalora_model) -> torch.Tensor:
    """peft's own penalty term: the model's loss with labels, less the same model's loss without
    the penalty (orth_reg_weight set to 0 for the second forward)."""
    config = adalora_model.peft_config[adalora_model.trainable_adapter_name]
    weight, b = config.orth_reg_weight, batch(3)
    with_penalty = adalora_model(**b).loss
    config.orth_reg_weight = 0.0
    try:
        without = adalora_model(**b).loss
    finally:
        config.orth_reg_weight = weight
    return with_penalty - without


@pytest.mark.parametrize("weight", [0.1, 0.5])
def test_adalora_orthogonality_penalty_is_added_to_the_trainers_loss(store_path, weight):
    adapted = build(store_path, "method=adalora", f"method.orth_reg_weight={weight}", "method.dropout=0")
    train_steps(adapted, 2)  # P and Q move away from their initialisation
    adapted.model.eval()  # no dropout: the same forward every time
    kind, b = adapted.ctx.task_type, batch(3)
    task_loss = kind.loss(kind.logits(adapted.model, b), b["labels"])
    penalty = orthogonal_penalty(adapted.model.base_model)
    assert float(penalty) > 0
    loss = training_loss(adapted, kind, b)
    torch.testing.assert_close(loss, task_loss + weight * penalty)
    assert not torch.isclose(loss, task_loss)
    # The same term as peft's AdaLoraModel adds when the model is given the labels itself.
    torch.testing.assert_close(adapted.extra_loss(), _peft_penalty(adapted.model.base_model),
                               rtol=1e-5, atol=1e-6)
    # And its gradient reaches P and Q.
    adapted.model.zero_grad()
    adapted.extra_loss().backward()
    grads = [p.grad for n, p in adapted.model.named_parameters() if "lora_A" in n or "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_adalora_without_orthogonality_weight_adds_nothing(store_path):
    adapted = build(store_path, "method=adalora", "method.orth_reg_weight=0")
    kind, b = adapted.ctx.task_type, batch(3)
    adapted.model.eval()
    assert adapted.extra_loss() is None
    torch.testing.assert_close(training_loss(adapted, kind, b),
                               kind.loss(kind.logits(adapted.model, b), b["labels"]))


def _delta_lora_factors(adapted):
    return {n: (l.lora_A["default"].weight.detach().clone(), l.lora_B["default"].weight.detach().clone(),
                l.get_base_layer().weight.detach().clone())
            for n, l in adapted.model.named_modules() if isinstance(l, LoraLayer)}


def test_delta_lora_moves_base_weights_by_exactly_the_scaled_delta(store_path):
    adapted = build(store_path, "method=delta_lora", "method.start_steps=1", "method.update_ratio=0.5")
    scale = 16 / 8
    states = []
    optimizer = train_steps(adapted, 3, on_step=lambda step: states.append(_delta_lora_factors(adapted)))
    weights = {id(l.get_base_layer().weight) for l in adapted.layers.values()}
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert weights and not weights & in_optimizer
    assert all(not l.get_base_layer().weight.requires_grad for l in adapted.layers.values())
    for name, (a1, b1, w1) in states[0].items():  # step 1 is the warm-up: W stays
        assert torch.equal(w1, base_model_weight(store_path, name))
    for before, after in [(states[0], states[1]), (states[1], states[2])]:
        for name, (a, b, w) in before.items():
            a2, b2, w2 = after[name]
            expected = w + 0.5 * scale * (b2 @ a2 - b @ a)
            assert not torch.equal(w2, w)
            torch.testing.assert_close(w2, expected, rtol=0, atol=1e-6)
    assert adapted.details()["delta_lora_moved_steps"] == 2


def base_model_weight(store_path, peft_name: str) -> torch.Tensor:
    model = base_model(build_config(store_path, "method=delta_lora"))
    return model.get_submodule(peft_name.removeprefix("base_model.model.")).weight.detach()


def test_delta_lora_best_epoch_snapshot_holds_the_moved_base_weights(store_path):
    adapted = build(store_path, "method=delta_lora", "method.start_steps=0")
    train_steps(adapted, 2)
    state = adapted.snapshot()
    weight = next(iter(adapted.layers.values())).get_base_layer().weight
    saved = weight.detach().clone()
    train_steps(adapted, 2)
    assert not torch.equal(weight, saved)
    adapted.restore(state)
    assert torch.equal(weight, saved)


def _one_rank_2r_lora(double, store_path, r: int, alpha: float):
    """A rank-2r LoRA whose A, B are the two updates' factors stacked: [A1; A2] and [B1 B2]."""
    cfg = build_config(store_path, "method=lora", f"method.r={2 * r}", f"method.alpha={2 * alpha}",
                       "method.dropout=0")
    single = build_from(cfg, base_model(cfg))
    doubles = {n.removeprefix("base_model.model."): l for n, l in double.model.named_modules()
               if isinstance(l, LoraLayer)}
    with torch.no_grad():
        for name, layer in single.model.named_modules():
            if isinstance(layer, LoraLayer):
                d = doubles[name.removeprefix("base_model.model.")]
                layer.lora_A["default"].weight.copy_(torch.cat([d.lora_A[k].weight for k in ("first", "second")]))
                layer.lora_B["default"].weight.copy_(torch.cat([d.lora_B[k].weight for k in ("first", "second")], 1))
        head = double.model.base_model.model.classifier.modules_to_save["first"]
        single.model.base_model.model.classifier.modules_to_save["default"].load_state_dict(head.state_dict())
    return single


def test_two_parallel_updates_are_one_rank_2r_lora_with_as_many_parameters(store_path):
    r, alpha = 4, 8
    double = build(store_path, "method=double_lora", f"method.r={r}", f"method.alpha={alpha}", "method.dropout=0")
    single_cfg = ["method=lora", f"method.r={2 * r}", f"method.alpha={2 * alpha}", "method.dropout=0"]
    assert double.count_parameters()[0] == build(store_path, *single_cfg).count_parameters()[0]
    train_steps(double, 2)  # B1, B2 nonzero
    single = _one_rank_2r_lora(double, store_path, r, alpha)
    for model in (double.model, single.model):
        model.eval()
    with torch.no_grad():
        torch.testing.assert_close(single.model(**batch(9)).logits, double.model(**batch(9)).logits)
    # Trained further from the same point, they stay the same model: AdamW is per-element, and the
    # rank-2r factors' gradients are the two updates' gradients side by side. (The seed gives both
    # the same masks of the base model's own dropout.)
    torch.manual_seed(1)
    train_steps(double, 3)
    torch.manual_seed(1)
    train_steps(single, 3)
    for model in (double.model, single.model):
        model.eval()
    with torch.no_grad():
        torch.testing.assert_close(single.model(**batch(9)).logits, double.model(**batch(9)).logits,
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["double_lora"])
def test_both_updates_are_active_and_train(store_path, method):
    adapted = build(store_path, f"method={method}")
    names = [n for n, p in adapted.model.named_parameters() if p.requires_grad]
    assert any(".first." in n and "lora_B" in n for n in names)
    assert any(".second." in n and "lora_B" in n for n in names)
    layer = next(m for m in adapted.model.modules() if isinstance(m, LoraLayer))
    assert sorted(layer.active_adapters) == ["first", "second"]
