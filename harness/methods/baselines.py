"""Two baselines that keep every method honest, run through the same trainer as the methods.

``method=head_only``, the linear probe: the base model stays frozen and only the new
classification head trains (what the adapters are then measured against: how much any of them
adds over the frozen features). ``method=zero_shot``: a causal LM scored on a prompt task with
no training at all, by the same scoring as the trained runs (the task type's generation or
answer-choice scores), so a fine-tuned model's gain over its own starting point is in the table.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.config import MethodConfig, check, register_method_schema
from harness.methods.spec import register_method


@dataclass
class HeadOnlyMethodConfig(MethodConfig):
    @property
    def ranked(self) -> bool:
        return False

    @property
    def baseline(self) -> str:
        return "probe"


@dataclass
class ZeroShotMethodConfig(MethodConfig):
    @property
    def ranked(self) -> bool:
        return False

    @property
    def baseline(self) -> str:
        return "untrained"

    @property
    def learned_rate(self) -> bool:
        return False

    def check_run(self, run) -> None:
        check(run.protocol.name != "tuned", f"method={self.name} trains nothing and has no learning "
                                            "rate to search: use protocol=fixed")


register_method_schema("head_only", HeadOnlyMethodConfig)
register_method_schema("zero_shot", ZeroShotMethodConfig)


def _frozen_except(model, keep: list[str]):
    for name, p in model.named_parameters():
        p.requires_grad = any(name == k or name.startswith(f"{k}.") for k in keep)
    return model


@register_method("head_only", four_bit=True, task_types=("single_label", "multi_label", "multiple_choice"))
def build_head_only(model, m, ctx):
    from safetensors.torch import save_file

    from harness.methods.base import Adapted

    if not ctx.head_modules:
        raise ValueError("method=head_only trains the model's new head and this run has none")

    class Probe(Adapted):
        def save(self, folder: Path) -> int:
            """The head alone: the rest is the unchanged base."""
            Path(folder).mkdir(parents=True, exist_ok=True)
            state = {n: p.detach().contiguous() for n, p in self.model.named_parameters() if p.requires_grad}
            save_file(state, str(Path(folder) / "head.safetensors"))
            return (Path(folder) / "head.safetensors").stat().st_size

    return Probe(_frozen_except(model, list(ctx.head_modules)), m, ctx)


@register_method("zero_shot", four_bit=True, task_types=("generation", "choice"))
def build_zero_shot(model, m, ctx):
    from harness.methods.base import Adapted

    class Untrained(Adapted):
        def save(self, folder: Path) -> int:
            return 0  # nothing was trained: nothing to keep beside the base

    return Untrained(_frozen_except(model, []), m, ctx)
