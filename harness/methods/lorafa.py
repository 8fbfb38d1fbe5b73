"""LoRA-FA (Zhang et al. 2023): LoRA with A frozen at its random initialization; only B trains.

A frozen A needs no gradient and no optimizer state, and the layer input it multiplies need not be
kept for a weight gradient, which is where the memory goes. peft's ``LoraFAOptimizer`` also
projects B's gradient, g_B ← (1/s²)·g_B·(AAᵀ)⁻¹, so that B's step best approximates the full-weight
gradient step (the paper's LoRA-FA optimizer).
"""
from __future__ import annotations

import torch
from peft import get_peft_model
from peft.optimizers import create_lorafa_optimizer

from harness.methods.spec import register_method
from harness.methods.base import Adapted, MethodContext
from harness.methods.lora import PeftAdapted, lora_config, prepare_base


class LoraFaAdapted(PeftAdapted):
    def make_optimizer(self) -> torch.optim.Optimizer:
        m = self.method
        return create_lorafa_optimizer(self.model, r=m.r, lora_alpha=m.alpha, lr=m.lr,
                                       weight_decay=m.weight_decay)


@register_method("lorafa", four_bit=True)
def build(model, method, ctx: MethodContext) -> Adapted:
    model = get_peft_model(prepare_base(model, ctx), lora_config(method, ctx))
    for name, param in model.named_parameters():
        if "lora_A" in name:
            param.requires_grad_(False)
    return LoraFaAdapted(model, method, ctx)
