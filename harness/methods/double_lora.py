"""Two parallel LoRA updates, ΔW = (α/r)·(B₁A₁ + B₂A₂), each of rank r.

One write-up in the comparison calls this "DoRA". It is not DoRA (Liu et al. 2024), which splits
each weight into a trained magnitude vector and a LoRA-updated direction. It exists as a method
so that the claim can be tested: B₁A₁ + B₂A₂ = [B₁ B₂]·[A₁; A₂] is one LoRA update of rank 2r
with the same number of parameters, and at scale α/r the same function of its factors as LoRA
with r' = 2r, α' = 2α.

Trained, the two are the same model trained the same way only at ``dropout`` 0: peft keeps one
dropout module per adapter, so with dropout > 0 (lora.yaml's default is 0.05) each of the two
updates sees its own dropout mask of the layer input, where a rank-2r LoRA applies one mask to
all 2r rows. The gradients, and so the training, then differ (in eval mode, without dropout, the
outputs are still those of the stacked rank-2r factors).

The two updates are two peft adapters, ``first`` and ``second``, active together.
"""
from __future__ import annotations

from peft import get_peft_model
from peft.tuners.lora import LoraLayer

from harness.methods.spec import register_method
from harness.methods.base import Adapted, MethodContext
from harness.methods.lora import PeftAdapted, lora_config, prepare_base

ADAPTERS = ("first", "second")


class DoubleLoraAdapted(PeftAdapted):
    def details(self) -> dict:
        return {"double_lora_adapters": list(ADAPTERS), "double_lora_equivalent_rank": 2 * self.method.r}


@register_method("double_lora", four_bit=True)
def build(model, method, ctx: MethodContext) -> Adapted:
    model = get_peft_model(prepare_base(model, ctx), lora_config(method, ctx), adapter_name=ADAPTERS[0])
    model.add_adapter(ADAPTERS[1], lora_config(method, ctx))
    # Both updates are active in every adapted layer; the head (peft's modules_to_save, which
    # allows one active copy) trains once, as the first adapter's.
    for layer in model.modules():
        if isinstance(layer, LoraLayer):
            layer.set_adapter(list(ADAPTERS))
    for name, param in model.named_parameters():
        if f"modules_to_save.{ADAPTERS[1]}." in name:
            param.requires_grad_(False)
    return DoubleLoraAdapted(model, method, ctx)
