"""LoRA (Hu et al. 2021) and DoRA (Liu et al. 2024) through peft, on a full or a 4-bit base.

QLoRA (Dettmers et al. 2023) and QDoRA are the same adapters on a base that the model loader put
in 4-bit NF4 with double quantization; the quant config group decides that, not this module.
DoRA, QLoRA and QDoRA are configs of this method (``builder: lora`` in their YAML), not code.
"""
from __future__ import annotations

from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

from harness.methods.spec import register_method
from harness.methods.base import Adapted, MethodContext


def lora_config(m, ctx: MethodContext, **overrides) -> LoraConfig:
    """peft's LoraConfig for method config ``m``, on the context's target and head modules."""
    kwargs = dict(r=m.r, lora_alpha=m.alpha, lora_dropout=m.dropout, use_dora=m.use_dora,
                  target_modules=list(ctx.target_modules), modules_to_save=list(ctx.head_modules),
                  task_type=ctx.task_type.peft_task_type)
    kwargs.update(overrides)
    return LoraConfig(**kwargs)


def prepare_base(model, ctx: MethodContext):
    """On a 4-bit base, peft's k-bit preparation (norms in fp32, input grads); else the model as
    it is (peft freezes the base when it adds the adapters)."""
    if ctx.four_bit:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=ctx.gradient_checkpointing)
    return model


class PeftAdapted(Adapted):
    def inference(self):
        """DoRA: peft's cache of the weight norm and of B·A while the model is in eval mode
        (cleared when it trains again), so an evaluation pass does not recompute them per batch."""
        if getattr(self.method, "use_dora", False):
            from peft.helpers import DoraCaching

            return DoraCaching()
        return super().inference()

    def merge(self) -> bool:
        self.model = self.model.merge_and_unload()
        return True


@register_method("lora", four_bit=True)
def build(model, method, ctx: MethodContext) -> Adapted:
    model = get_peft_model(prepare_base(model, ctx), lora_config(method, ctx))
    return PeftAdapted(model, method, ctx)
