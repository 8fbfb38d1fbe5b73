"""Full fine-tuning: every weight of the base model and the head trains (the baseline)."""
from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_model

from harness.methods.spec import register_method
from harness.methods.base import Adapted, MethodContext


class FullFineTuning(Adapted):
    def save(self, folder: Path) -> int:
        # The "adapter" of full fine-tuning is the whole model; a tensor that several modules
        # share (tied input and output embeddings) is saved once, as from_pretrained expects.
        folder.mkdir(parents=True, exist_ok=True)
        save_model(self.model, str(folder / "model.safetensors"), force_contiguous=True)
        return (folder / "model.safetensors").stat().st_size


# A 4-bit base cannot be trained: its weights are packed integers with no gradient.
@register_method("full", four_bit=False)
def build(model, method, ctx: MethodContext) -> Adapted:
    for p in model.parameters():
        p.requires_grad_(True)
    return FullFineTuning(model, method, ctx)
