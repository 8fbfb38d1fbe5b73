"""Delta-LoRA (Zi et al. 2023): LoRA that also moves the frozen base weights by the adapter's delta.

A and B train as in LoRA. After every optimizer step past the first K, each adapted base weight
takes the change of the low-rank product as its own update:

    W ← W + λ · (α/r) · (B_{t+1}A_{t+1} − B_tA_t)

K is a fraction of the run, ``start_ratio`` × the run's optimizer steps (floored), set in
``before_training`` from ``TrainingStart.total_steps``: with ``start_ratio`` < 1, W moves in every
run. An explicit ``start_steps`` (null by default) overrides the ratio; a run too short to pass it
is refused (at validation when ``trainer.max_steps`` already shows it, else before training).

W gets no gradient and no optimizer state, so memory stays LoRA's. The paper removes dropout from
the adapter path (so that the delta stands in for W's gradient): ``dropout`` is 0, and any other
value is refused. Since W moves, a best-epoch snapshot and the saved adapter both include the
adapted base weights. A 4-bit base cannot move, so the method is registered with
``four_bit=False``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from peft import get_peft_model
from peft.tuners.lora import LoraLayer
from peft.utils.other import transpose
from safetensors.torch import save_file

from harness.config import ConfigError, MethodConfig, check, register_method_schema
from harness.methods.spec import register_method
from harness.methods.base import Adapted, MethodContext, TrainingStart
from harness.methods.lora import PeftAdapted, lora_config


@dataclass
class DeltaLoraMethodConfig(MethodConfig):
    update_ratio: float = 2.0  # λ
    # K = floor(start_ratio × the run's optimizer steps): W moves only after K steps. 0.02 is the
    # paper's K = 500 of about 26,300 steps on E2E (see conf/method/delta_lora.yaml).
    start_ratio: float = 0.02
    start_steps: Optional[int] = None  # an explicit K, in steps; overrides start_ratio
    dropout: float = 0.0  # the paper removes dropout from the adapter path; nothing else is allowed

    @property
    def unshardable(self) -> Optional[str]:
        return "it adds the adapter's delta to the frozen base weights by hand, outside the sharded tensors"

    def __post_init__(self) -> None:
        super().__post_init__()
        check(not self.use_dora, "method=delta_lora has no DoRA variant: set method.use_dora=false")
        check(self.dropout == 0, "method=delta_lora has no dropout in its adapter path (Zi et al. "
                                 f"2023): set method.dropout=0 (got {self.dropout})")
        check(math.isfinite(self.update_ratio) and self.update_ratio >= 0,
              f"method.update_ratio must be a finite number >= 0, got {self.update_ratio}")
        check(0 <= self.start_ratio < 1,
              f"method.start_ratio must be in [0, 1) so that W moves, got {self.start_ratio!r}")
        check(self.start_steps is None or (isinstance(self.start_steps, int) and self.start_steps >= 0),
              f"method.start_steps must be null or an integer >= 0, got {self.start_steps!r}")

    def check_run(self, run) -> None:
        """A start W can never reach, seen before the data is loaded: the run's step limit."""
        limit = run.trainer.max_steps
        check(self.start_steps is None or limit is None or self.start_steps < limit,
              f"method.start_steps={self.start_steps} is not below trainer.max_steps={limit}: W would "
              "never move; lower it, or set method.start_steps=null to use method.start_ratio")

    def resolve_start(self, total_steps: int) -> int:
        """K for a run of ``total_steps`` optimizer steps: W moves at steps K+1 ... total."""
        if self.start_steps is not None:
            return self.start_steps
        return math.floor(self.start_ratio * total_steps)


register_method_schema("delta_lora", DeltaLoraMethodConfig)


def lora_layers(model) -> dict[str, LoraLayer]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def low_rank_product(layer: LoraLayer, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(α/r)·B·A in the base weight's layout."""
    return transpose(b @ a, layer.fan_in_fan_out) * layer.scaling["default"]


class DeltaLoraAdapted(PeftAdapted):
    def __init__(self, model, method, ctx: MethodContext) -> None:
        super().__init__(model, method, ctx)
        self.layers = lora_layers(model)
        self.previous = self._current_factors()
        self.moved_steps = 0
        self.start_step: int | None = None  # K, set by before_training from the run's length

    def before_training(self, start: TrainingStart) -> None:
        k = self.method.resolve_start(start.total_steps)
        if k >= start.total_steps:
            raise ConfigError(f"method.start_steps={k} is not below the run's {start.total_steps} "
                              "optimizer steps: W would never move; lower it, or set "
                              "method.start_steps=null to use method.start_ratio")
        self.start_step = k

    def _current_factors(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {name: (layer.lora_A["default"].weight.detach().clone(),
                       layer.lora_B["default"].weight.detach().clone())
                for name, layer in self.layers.items()}

    @torch.no_grad()
    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        m = self.method
        if self.start_step is None:
            raise RuntimeError("Delta-LoRA's start step is set by before_training, which was not called")
        current = self._current_factors()
        if step > self.start_step:
            for name, layer in self.layers.items():
                weight = layer.get_base_layer().weight
                delta = (low_rank_product(layer, *current[name])
                         - low_rank_product(layer, *self.previous[name]))
                weight.add_(delta.to(weight.dtype), alpha=m.update_ratio)
            self.moved_steps += 1
        self.previous = current

    def base_weights(self) -> dict[str, torch.Tensor]:
        return {f"{name}.base_layer.weight": layer.get_base_layer().weight
                for name, layer in self.layers.items()}

    def snapshot(self) -> dict[str, torch.Tensor]:
        state = super().snapshot()
        state.update({k: w.detach().clone() for k, w in self.base_weights().items()})
        return state

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        weights = self.base_weights()
        with torch.no_grad():
            for name in list(weights):
                weights[name].copy_(state[name])
        super().restore({k: v for k, v in state.items() if k not in weights})

    def save(self, folder: Path) -> int:
        # The adapter alone no longer reproduces the model: the moved base weights go with it.
        size = super().save(folder)
        path = Path(folder) / "delta_lora_base_weights.safetensors"
        save_file({k: w.detach().contiguous() for k, w in self.base_weights().items()}, str(path))
        return size + path.stat().st_size

    def details(self) -> dict:
        return {"delta_lora_moved_steps": self.moved_steps, "delta_lora_start_step": self.start_step,
                "delta_lora_start_from": "start_steps" if self.method.start_steps is not None
                else "start_ratio"}


# The base weights move, which a 4-bit base cannot do.
@register_method("delta_lora", four_bit=False)
def build(model, method: DeltaLoraMethodConfig, ctx: MethodContext) -> Adapted:
    return DeltaLoraAdapted(get_peft_model(model, lora_config(method, ctx)), method, ctx)
