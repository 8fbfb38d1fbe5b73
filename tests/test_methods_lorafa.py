"""LoRA-FA's optimizer steps B along the *projected* gradient, not the raw one.

LoRA-FA (Zhang et al. 2023) freezes A and, so that B's step best approximates the full-weight
gradient step, replaces B's gradient by

    g_B  <-  (1/s²) · g_B · (A Aᵀ)⁻¹          (s = alpha / r, the LoRA scale)

before an otherwise ordinary AdamW step. peft's ``LoraFAOptimizer`` (the method's optimizer,
``harness/methods/lorafa.py``) is "adamw-hf": beta = (0.9, 0.999), eps = 1e-6 added to √v
*without* bias correction (step size lr·√(1−β₂ᵗ)/(1−β₁ᵗ)), and weight decay applied after the
Adam update to the updated weight, p ← p − lr·wd·p. It computes the projection under bf16
autocast whenever accelerate reports bf16 available, which on a CPU is always: the projected
gradient carries bf16's 8-bit mantissa (relative error up to ~2⁻⁸ per element).

The test takes one step of the harness's LoRA-FA (built through the registry, the trainer's loss
and gradient clipping) and recomputes, in float64 and independently of peft, the AdamW step on
the projected gradient and on the raw one. The update applied to B must match the first and
not the second; A must not move at all; the head (no LoRA) takes the plain AdamW step.
"""
from __future__ import annotations

import math

import pytest
import torch

from harness.training.loop import training_loss
from tests.method_helpers import batch, build, start

LR, R, ALPHA = 1e-2, 4, 16.0


def adamw_hf_first_step(p0: torch.Tensor, g: torch.Tensor, group: dict) -> torch.Tensor:
    """The parameter after the first step of HF-style AdamW from zero moments, in float64.

    m₁ = (1−β₁)g, v₁ = (1−β₂)g², step = lr·√(1−β₂)/(1−β₁) (bias-corrected), so the Adam part is
    lr·g/(|g| + eps/√(1−β₂)) elementwise: about lr·sign(g) where |g| ≫ eps/√(1−β₂) ≈ 3e-5,
    linear in g (lr·√(1−β₂)·g/eps) where |g| ≪ it. Then weight decay on the updated weight."""
    lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    p0, g = p0.double(), g.double()
    m, v = (1 - beta1) * g, (1 - beta2) * g * g
    step_size = lr
    if group.get("correct_bias", True):
        step_size = lr * math.sqrt(1 - beta2) / (1 - beta1)
    p1 = p0 - step_size * m / (v.sqrt() + eps)
    if wd > 0:
        p1 = p1 - lr * wd * p1
    return p1


def projected(g_b: torch.Tensor, a: torch.Tensor, scale: float) -> torch.Tensor:
    """LoRA-FA's gradient for B: (1/s²)·g_B·(AAᵀ)⁻¹, in float64."""
    a = a.double()
    return g_b.double() @ torch.linalg.inv(a @ a.T) / scale ** 2


def lora_pairs(model) -> dict[str, tuple[torch.nn.Parameter, torch.nn.Parameter, float]]:
    """{adapted layer: (A, B, s)} of a peft LoRA model."""
    out = {}
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            out[name] = (module.lora_A["default"].weight, module.lora_B["default"].weight,
                         float(module.scaling["default"]))
    return out


REGIMES = {
    # The optimizer's own eps (1e-6): Adam's first step is nearly lr·sign(g), so the projection
    # shows in the signs (its (AAᵀ)⁻¹ mixes B's columns). B starts away from zero, and the decay
    # is strong enough (lr·wd·|B| ≈ 5% of the step) that leaving it out would show.
    "sign": dict(eps=None, weight_decay=0.5, b_scale=0.1),
    # eps = 1 ≫ √(1−β₂)·|g|: Adam's first step is linear in g, so the 1/s² factor and the
    # magnitudes of the projection show too. B at its LoRA start (zero), no decay: the step is
    # small (~lr·3e-2·|g|) and must not drown in B's float32 rounding.
    "linear": dict(eps=1.0, weight_decay=0.0, b_scale=0.0),
}


@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_lorafa_steps_b_along_the_projected_gradient(store_path, regime):
    eps, weight_decay, b_scale = REGIMES[regime].values()
    adapted = build(store_path, "method=lorafa", f"method.r={R}", f"method.alpha={ALPHA}",
                    f"method.lr={LR}", f"method.weight_decay={weight_decay}", "method.dropout=0.0")
    start(adapted, 1)
    pairs = lora_pairs(adapted.model)
    assert pairs and all(not a.requires_grad and b.requires_grad for a, b, _ in pairs.values())
    assert all(s == pytest.approx(ALPHA / R) for _, _, s in pairs.values())
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for _, b, _ in pairs.values():
            b.copy_(b_scale * torch.randn(b.shape, generator=g))

    optimizer = adapted.make_optimizer()
    (group,) = optimizer.param_groups
    assert group["lr"] == LR and group["weight_decay"] == weight_decay
    if eps is not None:
        group["eps"] = eps

    # One step as harness.training.loop.train takes it: the trainer's loss, clipping, the step.
    adapted.model.train()
    training_loss(adapted, adapted.ctx.task_type, batch(1)).backward()
    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                   adapted.ctx.max_grad_norm)
    before = {n: (a.detach().clone(), b.detach().clone(), b.grad.detach().clone(), s)
              for n, (a, b, s) in pairs.items()}
    head = {n: (p.detach().clone(), p.grad.detach().clone())
            for n, p in adapted.model.named_parameters() if p.requires_grad and "lora" not in n}
    assert head  # the classifier trains beside B
    optimizer.step()

    for n, (a0, b0, g_raw, s) in before.items():
        a, b = pairs[n][0], pairs[n][1]
        assert torch.equal(a, a0), f"{n}: A moved"
        assert a.grad is None, f"{n}: A got a gradient"
        want = adamw_hf_first_step(b0, projected(g_raw, a0, s), group)
        plain = adamw_hf_first_step(b0, g_raw, group)  # what plain AdamW would do
        got = b.detach().double()
        err, update = float((got - want).norm()), float((want - b0.double()).norm())
        apart = float((want - plain).norm())
        # The projection is computed in bf16 (~2^-8 relative per element, more where its sum
        # cancels; in the sign regime that can flip the sign of a near-zero entry): 2% of the
        # step allowed, <= 0.34% observed.
        assert err <= 2e-2 * update, (n, err / update)
        # Not the plain AdamW step on the raw gradient: the two candidates are far apart here,
        # and the step taken is far closer to the projected one.
        assert apart >= 0.05 * update, (n, apart / update)  # observed >= 0.25 (sign), 3.4 (linear)
        assert err <= 0.1 * apart, (n, err / apart)
        if weight_decay:
            no_decay = adamw_hf_first_step(b0, projected(g_raw, a0, s), {**group, "weight_decay": 0.0})
            assert err <= 0.2 * float((want - no_decay).norm()), n

    # The parameters outside LoRA (the new head) take the plain AdamW step on their gradient.
    params = dict(adapted.model.named_parameters())
    for n, (p0, g_raw) in head.items():
        torch.testing.assert_close(params[n].detach().double(), adamw_hf_first_step(p0, g_raw, group),
                                   atol=1e-6, rtol=1e-5, msg=n)
