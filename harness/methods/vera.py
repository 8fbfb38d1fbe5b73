"""VeRA (Kopiczko et al. 2024): one pair of frozen random matrices shared by every adapted layer.

Each layer's update is Λ_b·B·Λ_d·A, where A (r×in) and B (out×r) are drawn once from a seed and
shared (peft slices them to each layer's shape), and only the diagonal scaling vectors
λ_d (r) and λ_b (out) train, with the classification head. A rank far above LoRA's costs little,
since trainable parameters grow with r only through λ_d.
"""
from __future__ import annotations

import math

from dataclasses import dataclass

from peft import VeraConfig, get_peft_model

from harness.config import MethodConfig, check, register_method_schema
from harness.methods.spec import register_method
from harness.methods.base import Adapted, MethodContext
from harness.methods.lora import PeftAdapted, prepare_base


@dataclass
class VeraMethodConfig(MethodConfig):
    d_initial: float = 0.1  # initial value of every λ_d entry (λ_b starts at zero)
    save_projection: bool = True  # store A and B with the adapter instead of only their seed

    def __post_init__(self) -> None:
        super().__post_init__()
        check(not self.use_dora, "method=vera has no DoRA variant: set method.use_dora=false")
        check(math.isfinite(self.d_initial) and self.d_initial > 0,
              f"method.d_initial must be a finite number > 0, got {self.d_initial}")


register_method_schema("vera", VeraMethodConfig)


@register_method("vera", four_bit=True)
def build(model, m: VeraMethodConfig, ctx: MethodContext) -> Adapted:
    config = VeraConfig(
        r=m.r, vera_dropout=m.dropout, d_initial=m.d_initial, projection_prng_key=int(ctx.seed),
        save_projection=m.save_projection, target_modules=list(ctx.target_modules),
        modules_to_save=list(ctx.head_modules), task_type=ctx.task_type.peft_task_type)
    return PeftAdapted(get_peft_model(prepare_base(model, ctx), config), m, ctx)
