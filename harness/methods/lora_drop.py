"""LoRA-drop (Zhou et al. 2024): keep LoRA only where its output matters; share one elsewhere.

Before the main training (``before_training``), LoRA is trained for ``probe_epochs`` on a
stratified sample (a fraction ``sample_fraction`` of each label, or of each label set on
multi-label data) of the training data, with the run's task type's loss. Each adapter's
importance is then the squared norm of its output, summed over the sample's real tokens,
``g_i = sum_x ||dW_i x||^2``, normalised to sum to 1 among the adapters of the same kind (e.g. all
``query`` layers). The most important layers, up to a cumulative importance of ``threshold``, keep an adapter of their own;
the other layers of that kind share a single adapter (one A and one B used by all of them). The
adapters and the head are then reset to their initial values and trained on the full data.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from harness.config import ConfigError, MethodConfig, register_method_schema
from harness.methods.spec import register_method
from harness.methods.base import Adapted, MethodContext, TrainingStart
from harness.methods.lowrank import (LowRankLinear, freeze_all_but_heads, init_lora_factors,
                                     layer_and_kind, merge_wrapped, save_trainable, wrap_targets)


@dataclass
class LoRADropConfig(MethodConfig):
    name: str = "lora_drop"
    threshold: float = 0.9  # cumulative importance the layers with their own adapter reach
    sample_fraction: float = 0.1  # share of each label's training examples the probe uses
    probe_epochs: int = 1

    @property
    def reads_data_before_training(self) -> bool:
        return True  # its probe trains on a sample and restructures the adapters

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.use_dora:
            raise ConfigError("method=lora_drop has no DoRA variant (its shared layers have no "
                              "magnitude vector): set method.use_dora=false")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"method.threshold must be in (0, 1], got {self.threshold!r}")
        if not 0 < self.sample_fraction <= 1:
            raise ConfigError(f"method.sample_fraction must be in (0, 1], got {self.sample_fraction!r}")
        if self.probe_epochs < 1:
            raise ConfigError(f"method.probe_epochs must be >= 1, got {self.probe_epochs!r}")


register_method_schema("lora_drop", LoRADropConfig)


class LoRAFactors(nn.Module):
    """One adapter's A and B; one instance may serve several layers."""

    def __init__(self, r: int, base: nn.Linear) -> None:
        super().__init__()
        self.lora_A, self.lora_B = init_lora_factors(r, base.in_features, base.out_features, base.weight)


class SharableLoRALinear(LowRankLinear):
    def __init__(self, base: nn.Linear, adapter: LoRAFactors, scale: float, dropout: float) -> None:
        super().__init__(base, dropout)
        self.adapter, self.scale = adapter, scale

    def factors(self):
        return self.adapter.lora_A, self.adapter.lora_B, self.scale


def select_layers(importance: dict[str, float], threshold: float) -> list[str]:
    """The most important names whose normalised importance first reaches ``threshold``."""
    total = sum(importance.values())
    order = sorted(importance, key=importance.get, reverse=True)
    if total <= 0:
        return order
    kept, cumulative = [], 0.0
    for name in order:
        kept.append(name)
        cumulative += importance[name] / total
        if cumulative >= threshold - 1e-12:
            break
    return kept


def label_key(label):
    """A hashable form of one example's label: a class index as it is, a multi-label 0/1 vector
    (list or tensor) as a tuple."""
    if isinstance(label, (torch.Tensor, np.ndarray)):
        label = label.tolist()
    if isinstance(label, (list, tuple)):
        return tuple(label_key(v) for v in label)
    return label


def stratified_sample(examples: list[dict], fraction: float, seed: int) -> list[dict]:
    """A fraction of each label's examples (at least one), drawn with ``seed``; on multi-label
    data each distinct label set is one stratum; on prompt tasks, each distinct answer."""
    rng = np.random.default_rng(seed)
    strata: dict = {}
    for i, e in enumerate(examples):
        strata.setdefault(label_key(e["labels"] if "labels" in e else e["answer"]), []).append(i)
    try:
        order = sorted(strata)
    except TypeError:  # labels of mixed kinds: any fixed order will do
        order = sorted(strata, key=repr)
    picked = []
    for key in order:
        rows = np.asarray(strata[key])
        picked += list(rng.choice(rows, size=max(1, math.ceil(fraction * len(rows))), replace=False))
    return [examples[i] for i in sorted(picked)]


class LoRADrop(Adapted):
    def __init__(self, model, method: LoRADropConfig, ctx: MethodContext,
                 layers: dict[str, SharableLoRALinear]) -> None:
        super().__init__(model, method, ctx)
        self.layers = layers
        self.facts: dict = {}

    def adapter_parameters(self) -> int:
        adapters = {id(layer.adapter): layer.adapter for layer in self.layers.values()}
        return sum(p.numel() for a in adapters.values() for p in a.parameters())

    def _probe(self, batches: DataLoader, device) -> int:
        """Train the adapters and the head on ``batches`` with the trainer's loss; the steps."""
        from harness.device import to_device
        from harness.training.loop import training_loss

        optimizer = self.make_optimizer()
        self.model.train()
        steps = 0
        for _ in range(self.method.probe_epochs):
            for batch in batches:
                batch = to_device(batch, device)
                loss = training_loss(self, self.ctx.task_type, batch)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.trainable_parameters(), self.ctx.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                steps += 1
        return steps

    @torch.no_grad()
    def importance(self, batches: DataLoader, device) -> dict[str, float]:
        """sum over the batches' real tokens of ||dW x||^2, per adapted layer (the batches as the
        task type gives them to the model: multiple-choice pairs are one sequence each)."""
        from harness.device import to_device

        kind = self.ctx.task_type
        scores = {name: 0.0 for name in self.layers}
        mask: list[torch.Tensor] = []

        def record(name):
            def hook(module, args, output):
                sq = module.delta(args[0]).float().pow(2).sum(-1)
                if mask and sq.dim() == 2 and sq.shape == mask[0].shape:
                    sq = sq * mask[0]  # leave padding out
                scores[name] += float(sq.sum())
            return hook

        handles = [layer.register_forward_hook(record(name)) for name, layer in self.layers.items()]
        self.model.eval()
        try:
            for batch in batches:
                inputs = kind.model_inputs(to_device(batch, device))
                mask[:] = [inputs["attention_mask"].float()] if "attention_mask" in inputs else []
                self.model(**inputs)
        finally:
            for h in handles:
                h.remove()
        return scores

    def before_training(self, start: TrainingStart) -> None:
        """The probe on a sample of ``start.train_batches``, then the restructured adapters."""
        m, t0, seed = self.method, time.perf_counter(), int(self.ctx.seed)
        train_batches, device = start.train_batches, start.device
        initial = self.snapshot()
        before = self.adapter_parameters()
        sample = stratified_sample(list(train_batches.dataset), m.sample_fraction, seed)
        probe = DataLoader(sample, batch_size=train_batches.batch_size, shuffle=True,
                           collate_fn=train_batches.collate_fn,
                           generator=torch.Generator().manual_seed(seed))
        steps = self._probe(probe, device)
        scores = self.importance(probe, device)
        self.restore(initial)  # the main training starts from the same state as plain LoRA

        kinds: dict[str, list[str]] = {}
        for name in self.layers:
            kinds.setdefault(layer_and_kind(name)[1], []).append(name)
        kept, shared = [], {}
        for kind, names in kinds.items():
            own = select_layers({n: scores[n] for n in names}, m.threshold)
            kept += own
            rest = [n for n in names if n not in own]
            if rest:
                adapter = LoRAFactors(m.r, self.layers[rest[0]].base)
                for name in rest:
                    self.layers[name].adapter = adapter
                shared[kind] = rest
        after = self.adapter_parameters()
        self.facts = {
            "importance": {n: s / max(sum(scores[k] for k in kinds[layer_and_kind(n)[1]]), 1e-30)
                           for n, s in scores.items()},
            "own_adapter": sorted(kept), "shared_adapter": shared,
            "adapter_params_lora": before, "adapter_params_kept": after,
            "adapter_param_saving": 1.0 - after / before,
            "probe_examples": len(sample), "probe_steps": steps,
            "probe_s": time.perf_counter() - t0,
        }

    def details(self) -> dict:
        return {"lora_drop": self.facts}

    def save(self, folder: Path) -> int:
        return save_trainable(self.model, folder)

    def merge(self) -> bool:
        merge_wrapped(self.model)
        return True


# The low-rank layers here wrap full-precision linear layers only. Every task type: the probe
# trains with the task type's loss, scores the inputs as the task type gives them to the model,
# and stratifies on single labels, label sets or answer indices alike.
@register_method("lora_drop", four_bit=False)
def build(model, m: LoRADropConfig, ctx: MethodContext) -> Adapted:
    freeze_all_but_heads(model, ctx)
    layers = wrap_targets(model, ctx, lambda name, base: SharableLoRALinear(
        base, LoRAFactors(m.r, base), m.alpha / m.r, m.dropout))
    return LoRADrop(model, m, ctx, layers)
