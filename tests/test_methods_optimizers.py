"""VeRA trains only its scaling vectors over shared frozen projections; LoRA+ gives B a faster
learning rate; LoRA-FA never moves A; the variants that allow it run on a 4-bit NF4 base."""
from __future__ import annotations

import bitsandbytes as bnb
import pytest
import torch

from tests.method_helpers import build, build_config, expected_trainable, train_steps


def _snapshot(adapted, word: str) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in adapted.model.named_parameters() if word in n}


def test_vera_shares_one_frozen_pair_and_trains_only_the_scaling_vectors(store_path):
    adapted = build(store_path, "method=vera", "method.r=32")
    layers = [m for m in adapted.model.modules() if hasattr(m, "vera_lambda_b")]
    assert len(layers) > 1
    a, b = layers[0].vera_A["default"], layers[0].vera_B["default"]
    assert all(l.vera_A["default"] is a and l.vera_B["default"] is b for l in layers)  # shared
    assert not a.requires_grad and not b.requires_grad
    assert {id(a), id(b)}.isdisjoint(id(p) for p in adapted.model.parameters())  # not parameters
    trainable = [n for n, p in adapted.model.named_parameters() if p.requires_grad]
    assert trainable and all("vera_lambda" in n or "classifier" in n for n in trainable)
    a0, b0, lambdas = a.clone(), b.clone(), _snapshot(adapted, "vera_lambda_b")
    train_steps(adapted, 2)
    assert torch.equal(a, a0) and torch.equal(b, b0)
    assert any(not torch.equal(p, lambdas[n]) for n, p in adapted.model.named_parameters() if n in lambdas)
    cfg = build_config(store_path, "method=vera", "method.r=32")
    assert adapted.count_parameters()[0] == expected_trainable(cfg)


def test_loraplus_optimizer_gives_b_lr_ratio_times_a_learning_rate(store_path):
    adapted = build(store_path, "method=loraplus", "method.lr=1e-4", "method.lr_ratio=16")
    optimizer = adapted.make_optimizer()
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(adapted.model.named_parameters())
    a = [lr_of[id(p)] for n, p in named.items() if "lora_A" in n]
    b = [lr_of[id(p)] for n, p in named.items() if "lora_B" in n]
    assert a and b and set(a) == {1e-4} and set(b) == {1e-4 * 16}
    trainable = {id(p) for p in adapted.trainable_parameters()}
    assert set(lr_of) == trainable  # every trainable parameter, once


def test_lorafa_never_moves_a_and_trains_b(store_path):
    adapted = build(store_path, "method=lorafa")
    assert all(not p.requires_grad for n, p in adapted.model.named_parameters() if "lora_A" in n)
    a0, b0 = _snapshot(adapted, "lora_A"), _snapshot(adapted, "lora_B")
    seen = []
    train_steps(adapted, 3, on_step=lambda step: seen.append((_snapshot(adapted, "lora_A"),
                                                                _snapshot(adapted, "lora_B"))))
    for a, b in seen:
        assert all(torch.equal(a[n], a0[n]) for n in a0)
        assert any(not torch.equal(b[n], b0[n]) for n in b0)
    assert any(not torch.equal(seen[1][1][n], seen[0][1][n]) for n in b0)  # B keeps moving
    cfg = build_config(store_path, "method=lorafa")
    assert adapted.count_parameters()[0] == expected_trainable(cfg)


@pytest.mark.parametrize("method", ["vera", "loraplus", "lorafa", "adalora", "double_lora"])
def test_variants_train_on_a_4bit_nf4_base(store_path, method):
    adapted = build(store_path, f"method={method}", "quant=nf4", "method.r=8", "method.delta_t=1"
                    if method == "adalora" else "method.dropout=0")
    bases = [m for m in adapted.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert bases and all(b.weight.quant_state.quant_type == "nf4" for b in bases)
    packed = [b.weight.detach().clone() for b in bases]
    trainable = _snapshot(adapted, "")
    trainable = {n: v for n, v in trainable.items() if dict(adapted.model.named_parameters())[n].requires_grad}
    train_steps(adapted, 2)
    assert all(torch.equal(b.weight, w) for b, w in zip(bases, packed))  # the base stays 4-bit, fixed
    params = dict(adapted.model.named_parameters())
    assert any(not torch.equal(params[n], v) for n, v in trainable.items())
    plain = build(store_path, f"method={method}", "method.r=8")
    assert adapted.count_parameters()[0] == plain.count_parameters()[0]
