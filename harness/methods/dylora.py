"""DyLoRA (Valipour et al. 2023): one training run that yields a LoRA usable at every rank.

At each training step a rank b is drawn uniformly from [r_min, r] and every adapter uses only
the first b rows of A and the first b columns of B, scaled by alpha / b:
``h = W0 x + (alpha / b) B[:, :b] A[:b] x``. Lower ranks are thereby trained to carry the most
important directions, so the adapter can be cut to any b after training.

By default (``frozen: true``, the paper's mode) only the b-th row of A and the b-th column of B
train at each step; the rows and columns below b take part in the forward but are held fixed. That
is how the authors' code trains: huawei-noah/Efficient-NLP, ``DyLoRA/examples/NLU/examples/
text-classification/run_glue.py`` calls ``model.set_rank(new_rank, frozen=True)`` before every
step. ``frozen: false`` trains all of the first b rows and columns. The trained model is tested at
full rank and, through ``eval_variants``, at each rank of ``eval_ranks`` (curves rows
``variant = "rank:<b>"``).
"""
from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch import nn

from harness.config import ConfigError, MethodConfig, register_method_schema
from harness.methods.spec import register_method
from harness.methods.base import Adapted, MethodContext
from harness.methods.lowrank import (LowRankLinear, freeze_all_but_heads, init_lora_factors,
                                     merge_wrapped, save_trainable, wrap_targets)


@dataclass
class DyLoRAConfig(MethodConfig):
    name: str = "dylora"
    r_min: int = 1  # ranks are drawn from [r_min, r]; r is the largest
    frozen: bool = True  # the authors' mode: at each step only the b-th row of A / column of B trains
    eval_ranks: Optional[list[int]] = None  # ranks the test split is scored at; null: all

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.use_dora:
            raise ConfigError("method=dylora has no DoRA variant (its rank-sliced layers have no "
                              "magnitude vector): set method.use_dora=false")
        if not 1 <= self.r_min <= self.r:
            raise ConfigError(f"method.r_min must be in [1, method.r={self.r}], got {self.r_min!r}")
        bad = [b for b in self.eval_ranks or [] if not 1 <= b <= self.r]
        if bad:
            raise ConfigError(f"method.eval_ranks must be in [1, method.r={self.r}], got {bad}")


register_method_schema("dylora", DyLoRAConfig)


class DyLoRALinear(LowRankLinear):
    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float, frozen: bool) -> None:
        super().__init__(base, dropout)
        self.lora_A, self.lora_B = init_lora_factors(r, base.in_features, base.out_features, base.weight)
        self.alpha, self.frozen = alpha, frozen
        self.train_rank = r  # b of the current training step, set by the method
        self.eval_rank = r  # the rank used in eval mode

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        b = self.train_rank if self.training else self.eval_rank
        a, up = self.lora_A[:b], self.lora_B[:, :b]
        if self.frozen and self.training and b > 1:
            a = torch.cat([a[:b - 1].detach(), a[b - 1:]], dim=0)
            up = torch.cat([up[:, :b - 1].detach(), up[:, b - 1:]], dim=1)
        return a, up, self.alpha / b


class DyLoRA(Adapted):
    def __init__(self, model, method: DyLoRAConfig, ctx: MethodContext,
                 layers: dict[str, DyLoRALinear]) -> None:
        super().__init__(model, method, ctx)
        self.layers = layers
        self.ranks = list(range(method.r_min, method.r + 1))
        self.generator = torch.Generator().manual_seed(int(ctx.seed))
        self.sampled: list[int] = []
        self._sample_rank()

    def _sample_rank(self) -> None:
        b = self.ranks[int(torch.randint(len(self.ranks), (1,), generator=self.generator))]
        self.sampled.append(b)
        for layer in self.layers.values():
            layer.train_rank = b

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        self._sample_rank()  # the rank of the next step

    @contextlib.contextmanager
    def evaluated_at(self, rank: int):
        for layer in self.layers.values():
            layer.eval_rank = rank
        try:
            yield
        finally:
            for layer in self.layers.values():
                layer.eval_rank = self.method.r

    def eval_variants(self) -> Iterator[tuple[str, contextlib.AbstractContextManager]]:
        for b in self.method.eval_ranks or self.ranks:
            yield f"rank:{b}", self.evaluated_at(b)

    def details(self) -> dict:
        used = self.sampled[:-1]  # the last draw is for a step that never ran
        return {"dylora_rank_counts": dict(sorted(Counter(used).items())),
                "dylora_eval_ranks": list(self.method.eval_ranks or self.ranks)}

    def save(self, folder: Path) -> int:
        return save_trainable(self.model, folder)

    def merge(self) -> bool:
        merge_wrapped(self.model)  # at full rank
        return True


# The low-rank layers here wrap full-precision linear layers only. Every task type: the layers
# see whatever shape of input the task type's model_inputs give the model.
@register_method("dylora", four_bit=False)
def build(model, m: DyLoRAConfig, ctx: MethodContext) -> Adapted:
    freeze_all_but_heads(model, ctx)
    layers = wrap_targets(model, ctx, lambda name, base: DyLoRALinear(base, m.r, m.alpha, m.dropout, m.frozen))
    return DyLoRA(model, m, ctx, layers)
