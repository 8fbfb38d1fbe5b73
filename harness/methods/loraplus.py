"""LoRA+ (Hayou et al. 2024): LoRA whose B matrices learn λ times faster than its A matrices.

The adapters are plain LoRA; only the optimizer differs: the B matrices train at
``lr * lr_ratio``, everything else (the A matrices and the new task head) at ``lr``, the LoRA
family's shared rate (lora.yaml). The paper's ratio is about the adapter's B matrices. The
reference code (and peft's ``create_loraplus_optimizer``, which follows it) also puts every 1-D
trainable parameter, the new classification head's bias included, at the ratio: with
``ratio_on_1d: true`` the harness does the same. On the embedded default at the shared rate that
head bias at 16x the rate sends the classifier to the majority class (docs/methods.md).
"""
from __future__ import annotations

import math

from dataclasses import dataclass

import torch
from peft import get_peft_model
from peft.optimizers import create_loraplus_optimizer

from harness.config import MethodConfig, check, register_method_schema
from harness.methods.spec import register_method
from harness.methods.base import Adapted, MethodContext
from harness.methods.lora import PeftAdapted, lora_config, prepare_base


@dataclass
class LoraPlusMethodConfig(MethodConfig):
    lr_ratio: float = 16.0  # η_B / η_A; the paper's default is 2^4
    # Also give every 1-D trainable parameter (biases, the head's bias) the ratio, as the
    # reference code's parameter grouping does; false: only the LoRA B matrices.
    ratio_on_1d: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check(math.isfinite(self.lr_ratio) and self.lr_ratio >= 1,
              f"method.lr_ratio (η_B/η_A) must be a finite number >= 1, got {self.lr_ratio}")


register_method_schema("loraplus", LoraPlusMethodConfig)


class LoraPlusAdapted(PeftAdapted):
    def make_optimizer(self) -> torch.optim.Optimizer:
        m = self.method
        if m.ratio_on_1d:
            return create_loraplus_optimizer(self.model, self.optimizer_class(), lr=m.lr,
                                             loraplus_lr_ratio=m.lr_ratio,
                                             loraplus_weight_decay=m.weight_decay)
        return self.optimizer_class()(self.param_groups())

    def param_groups(self) -> list[dict]:
        """B matrices at lr * lr_ratio; A matrices and the head at lr."""
        m = self.method
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        fast = [p for n, p in named if "lora_B" in n]
        slow = [p for n, p in named if "lora_B" not in n]
        return [{"params": slow, "lr": m.lr, "weight_decay": m.weight_decay},
                {"params": fast, "lr": m.lr * m.lr_ratio, "weight_decay": m.weight_decay}]


@register_method("loraplus", four_bit=True)
def build(model, method: LoraPlusMethodConfig, ctx: MethodContext) -> Adapted:
    return LoraPlusAdapted(get_peft_model(prepare_base(model, ctx), lora_config(method, ctx)), method, ctx)
