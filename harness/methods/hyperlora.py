"""HyperLoRA: one shared hypernetwork generates every adapted layer's LoRA factors per task.

The design follows HyperFormer++ (Karimi Mahabadi et al. 2021, "Parameter-efficient Multi-task
Fine-tuning for Transformers via Shared Hypernetworks"), with LoRA factors in place of its
bottleneck adapters. For task t, layer l and module kind k (query, key, ...):

    I = LayerNorm(MLP([z_t ; e_l ; e_k]))      z, e learned embeddings; MLP: Linear-ReLU-Linear
    A = W_A I  (r x in),   B = W_B I  (out x r),   h = W0 x + (alpha / r) B A x

with one generator pair (W_A, W_B) per layer shape, shared by all layers and tasks of that shape.
As in LoRA, B's generator starts at zero, so training starts from the base model.

The generators' outputs are multiplied by 1/dim(I) (a fan-in multiplier, as in maximal-update
parametrisations). Without it, Adam moves every entry of W_B by about the learning rate per step,
so every entry of B moves by about lr * |I|_1, some 50 times LoRA's per-step change for a
64-dimensional I: on the embedded default at LoRA's rate the training loss went from 0.69 to 4.3
in four steps and the run ended at the majority class. With it, a generated factor moves per step
as much as a trained LoRA factor does, so the LoRA family's shared rate means the same here. W_A's
initial scale is chosen so that A starts at LoRA's scale (kaiming-uniform, std 1/sqrt(3 in)). Each example
uses its own task's factors, so batches may mix tasks; the task ids come with the batch (see
``harness/tasks/multitask.py``) and reach the method through ``Adapted.condition``. A plain
(single-task) config is one task. On multiple-choice data the model sees every (example, choice)
pair as one sequence, example-major, so each example's task id is repeated over its choices.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from harness.config import MethodConfig, check, positive_int, register_method_schema
from harness.methods.spec import register_method
from harness.methods.base import Adapted, MethodContext
from harness.methods.lowrank import (LowRankLinear, freeze_all_but_heads, layer_and_kind,
                                     save_trainable, target_names, wrap_targets)


@dataclass
class HyperLoRAConfig(MethodConfig):
    name: str = "hyperlora"
    task_embedding_dim: int = 64  # z_t, e_l and e_k each
    hidden_dim: int = 128  # the MLP's hidden layer
    projected_dim: int = 64  # I, the input of the generators

    def __post_init__(self) -> None:
        super().__post_init__()
        check(not self.use_dora, "method=hyperlora has no DoRA variant (its generated layers have no "
                                 "magnitude vector): set method.use_dora=false")
        for key in ("task_embedding_dim", "hidden_dim", "projected_dim"):
            positive_int(f"method.{key}", getattr(self, key))


register_method_schema("hyperlora", HyperLoRAConfig)


def _linear(n_in: int, n_out: int, std: float) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.normal_(layer.weight, std=std) if std else nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class LoRAHyperNetwork(nn.Module):
    def __init__(self, n_tasks: int, n_layers: int, kinds: list[str],
                 shapes: set[tuple[int, int]], m: HyperLoRAConfig,
                 sequences_per_example: bool = False) -> None:
        super().__init__()
        d, self.r = m.task_embedding_dim, m.r
        self.task_embeddings = nn.Embedding(n_tasks, d)
        self.layer_embeddings = nn.Embedding(n_layers + 1, d)  # the last: modules outside layers
        self.kind_embeddings = nn.Embedding(len(kinds), d)
        self.kinds = kinds
        self.projector = nn.Sequential(_linear(3 * d, m.hidden_dim, 1e-2), nn.ReLU(),
                                       _linear(m.hidden_dim, m.projected_dim, 1e-2))
        self.norm = nn.LayerNorm(m.projected_dim)
        # A = (W_A I) / dim(I) starts with LoRA's std 1/sqrt(3 in): std(W_A) = sqrt(dim(I) / (3 in)).
        self.multiplier = 1.0 / m.projected_dim
        self.a_generators = nn.ModuleDict({
            f"{i}x{o}": _linear(m.projected_dim, m.r * i, (m.projected_dim / (3 * i)) ** 0.5)
            for i, o in sorted(shapes)})
        self.b_generators = nn.ModuleDict({f"{i}x{o}": _linear(m.projected_dim, o * m.r, 0.0)
                                           for i, o in sorted(shapes)})
        self.task_ids: torch.Tensor | None = None  # per example, set before each forward
        # Multiple choice: the model's batch holds each example's choices as consecutive rows.
        self.sequences_per_example = sequences_per_example

    def factors(self, tasks: torch.Tensor, layer: int, kind: str, shape: tuple[int, int]):
        """A (len(tasks), r, in) and B (len(tasks), out, r) for these task ids."""
        n = len(tasks)
        dev = self.task_embeddings.weight.device
        cond = torch.cat([self.task_embeddings(tasks),
                          self.layer_embeddings(torch.full((n,), layer, device=dev)),
                          self.kind_embeddings(torch.full((n,), self.kinds.index(kind), device=dev))], -1)
        i = self.norm(self.projector(cond))
        key = f"{shape[0]}x{shape[1]}"
        a = (self.a_generators[key](i) * self.multiplier).view(n, self.r, shape[0])
        b = (self.b_generators[key](i) * self.multiplier).view(n, shape[1], self.r)
        return a, b


class GeneratedLoRALinear(LowRankLinear):
    def __init__(self, base: nn.Linear, hypernet: LoRAHyperNetwork, layer: int, kind: str,
                 scale: float, dropout: float) -> None:
        super().__init__(base, dropout)
        self.hypernet = [hypernet]  # a list: the one hypernetwork is not a child of every layer
        self.layer, self.kind, self.scale = layer, kind, scale

    def example_factors(self, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Each example's A and B (n of each), or one pair when the batch holds one task."""
        net = self.hypernet[0]
        ids = net.task_ids
        if ids is None:
            ids = torch.zeros(n, dtype=torch.long, device=device)  # a single-task run
        elif len(ids) != n:
            if not (net.sequences_per_example and len(ids) and n % len(ids) == 0):
                raise RuntimeError(f"{len(ids)} task ids for a batch of {n} examples")
            ids = ids.repeat_interleave(n // len(ids))  # each example's choices: its task
        tasks, inverse = torch.unique(ids.to(device), return_inverse=True)
        a, b = net.factors(tasks, self.layer, self.kind, (self.base.in_features, self.base.out_features))
        if len(tasks) == 1:
            return a, b  # one task: one pair of factors for the whole batch
        return a[inverse], b[inverse]

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.example_factors(x.shape[0], x.device)
        if len(a) == 1:  # one task in the batch: two matmuls, as LoRA's
            return ((self.dropout(x).to(a.dtype) @ a[0].T @ b[0].T) * self.scale).to(x.dtype)
        h = torch.einsum("n...i,nri->n...r", self.dropout(x).to(a.dtype), a)
        return (torch.einsum("n...r,nor->n...o", h, b) * self.scale).to(x.dtype)


class HyperLoRA(Adapted):
    def __init__(self, model, method: HyperLoRAConfig, ctx: MethodContext,
                 hypernet: LoRAHyperNetwork, tasks: list[str]) -> None:
        super().__init__(model, method, ctx)
        self.hypernet, self.tasks = hypernet, tasks

    def condition(self, task_ids: torch.Tensor) -> None:
        self.hypernet.task_ids = task_ids

    def details(self) -> dict:
        return {"hyperlora_tasks": self.tasks,
                "hyperlora_hypernetwork_params": sum(p.numel() for p in self.hypernet.parameters())}

    def save(self, folder: Path) -> int:
        return save_trainable(self.model, folder)


# The generated low-rank layers wrap full-precision linear layers only. Every task type: the task
# type decides the head and the loss; the layers take any batch shape (multiple choice included).
@register_method("hyperlora", four_bit=False)
def build(model, m: HyperLoRAConfig, ctx: MethodContext) -> Adapted:
    freeze_all_but_heads(model, ctx)
    names = target_names(model, ctx)
    sites = {name: layer_and_kind(name) for name in names}
    layers = [layer for layer, _ in sites.values() if layer is not None]
    n_layers = max(layers) + 1 if layers else 0
    kinds = sorted({kind for _, kind in sites.values()})
    shapes = {(model.get_submodule(n).in_features, model.get_submodule(n).out_features) for n in names}
    tasks = list(ctx.task_names)
    device = next(model.parameters()).device
    hypernet = LoRAHyperNetwork(len(tasks), n_layers, kinds, shapes, m,
                                ctx.task_type.sequences_per_example).to(device)
    model.add_module("lora_hypernetwork", hypernet)  # trains, saves and moves with the model

    def make(name, base):
        layer, kind = sites[name]
        return GeneratedLoRALinear(base, hypernet, n_layers if layer is None else layer, kind,
                                   m.alpha / m.r, m.dropout)

    wrap_targets(model, ctx, make)
    return HyperLoRA(model, m, ctx, hypernet, tasks)
