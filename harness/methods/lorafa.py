"""LoRA-FA (Zhang et al. 2023): LoRA with A frozen at its random initialization; only B trains.

A frozen A needs no gradient and no optimizer state, and the layer input it multiplies need not be
kept for a weight gradient, which is where the memory goes. peft's ``LoraFAOptimizer`` also
projects B's gradient, g_B ← (1/s²)·g_B·(AAᵀ)⁻¹, so that B's step best approximates the full-weight
gradient step (the paper's LoRA-FA optimizer).

Unlike every other method's arithmetic here, that projection may run in bfloat16: peft computes it
under ``torch.autocast(infer_device(), bfloat16)`` whenever accelerate's ``is_bf16_available()``
says so, which is always true on a machine without an accelerator. The precision it takes on this
machine is recorded with the run (``details()["lorafa_projection_dtype"]``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from peft import get_peft_model
from peft.optimizers import create_lorafa_optimizer
from peft.optimizers import lorafa as peft_lorafa

from harness.config import MethodConfig, check, register_method_schema
from harness.methods.spec import register_method
from harness.methods.base import Adapted, MethodContext
from harness.methods.lora import PeftAdapted, lora_config, prepare_base


@dataclass
class LoraFaMethodConfig(MethodConfig):
    @property
    def unshardable(self) -> Optional[str]:
        return ("its optimizer projects B's gradient with the whole frozen A (A·Aᵀ), which FSDP splits over "
                "the processes")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(not self.use_dora, "method=lorafa has no DoRA variant (peft's LoRA-FA optimizer "
                                 "projects B's gradient only): set method.use_dora=false")


register_method_schema("lorafa", LoraFaMethodConfig)


def projection_dtype(b: torch.Tensor) -> torch.dtype:
    """The dtype of peft's projection g_B·(AAᵀ)⁻¹ for a ``lora_B`` parameter like ``b``: the same
    decision and context as ``peft.optimizers.lorafa.LoraFAOptimizer.step`` (their own functions,
    looked up in that module), applied to a product of tensors with ``b``'s dtype and device."""
    x = torch.zeros(1, 1, dtype=b.dtype, device=b.device)
    if peft_lorafa.is_bf16_available():
        with peft_lorafa.autocast(device_type=peft_lorafa.infer_device(), dtype=torch.bfloat16):
            return (x @ x).dtype
    return (x @ x).dtype


class LoraFaAdapted(PeftAdapted):
    def __init__(self, model, method, ctx: MethodContext) -> None:
        super().__init__(model, method, ctx)
        b = next(p for n, p in model.named_parameters() if "lora_B" in n)
        self.projection_dtype = projection_dtype(b)  # kept: merge() replaces the model

    def make_optimizer(self) -> torch.optim.Optimizer:
        m = self.method
        return create_lorafa_optimizer(self.model, r=m.r, lora_alpha=m.alpha, lr=m.lr,
                                       weight_decay=m.weight_decay)

    def details(self) -> dict:
        return {"lorafa_projection_dtype": str(self.projection_dtype).removeprefix("torch.")}


@register_method("lorafa", four_bit=True, own_optimizer=True)
def build(model, method, ctx: MethodContext) -> Adapted:
    model = get_peft_model(prepare_base(model, ctx), lora_config(method, ctx))
    for name, param in model.named_parameters():
        if "lora_A" in name:
            param.requires_grad_(False)
    return LoraFaAdapted(model, method, ctx)
