"""LoRA+ (Hayou et al. 2024): LoRA whose B matrices learn λ times faster than its A matrices.

The adapters are plain LoRA; only the optimizer differs. peft's ``create_loraplus_optimizer``
puts A (and other matrices, such as the head's weight) at ``lr`` and B (and every 1-D parameter,
such as the head's bias) at ``lr * lr_ratio``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from peft import get_peft_model
from peft.optimizers import create_loraplus_optimizer

from harness.config import MethodConfig, _check, register_method_schema
from harness.methods.spec import register_method
from harness.methods.base import Adapted, MethodContext
from harness.methods.lora import PeftAdapted, lora_config, prepare_base


@dataclass
class LoraPlusMethodConfig(MethodConfig):
    lr_ratio: float = 16.0  # η_B / η_A; the paper's default is 2^4

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.lr_ratio >= 1, f"method.lr_ratio (η_B/η_A) must be >= 1, got {self.lr_ratio}")


register_method_schema("loraplus", LoraPlusMethodConfig)


class LoraPlusAdapted(PeftAdapted):
    def make_optimizer(self) -> torch.optim.Optimizer:
        m = self.method
        return create_loraplus_optimizer(self.model, torch.optim.AdamW, lr=m.lr,
                                         loraplus_lr_ratio=m.lr_ratio,
                                         loraplus_weight_decay=m.weight_decay)


@register_method("loraplus", four_bit=True)
def build(model, method: LoraPlusMethodConfig, ctx: MethodContext) -> Adapted:
    return LoraPlusAdapted(get_peft_model(prepare_base(model, ctx), lora_config(method, ctx)), method, ctx)
