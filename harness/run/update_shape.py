"""The shape of the update training made to each adapted weight matrix: its size relative to the
weight, ‖ΔW‖_F / ‖W‖_F, and its effective rank (Roy & Vetterli 2007: the exponential of the
Shannon entropy of its singular values normalised to sum to one; a rank-k update with k equal
singular values has effective rank k). Singular values come from ``torch.linalg.svdvals`` in
float32; the update itself is formed in float64, so that no rounding of W adds rank to it.

ΔW is the layer's effective weight after training minus before: what the trained adapter adds to
the base weight minus what it added before training (zero for LoRA, whose B starts at zero; not
for PiSSA, OLoRA, CorDA or LoftQ, whose adapters start from a part of W), and ‖W‖ is the
effective weight's norm before training. Nothing of the model changes: each layer is measured on
a float64 twin of it (``copy.deepcopy``, the base weight shared where it is only read), with the
adapter's values from before training put into the twin for the "before" side. What training
starts from is saved to disk before the first step and read back after (:class:`Before`), so the
run holds no copy of it in memory while it trains.

- peft's LoRA layers (LoRA and its family: rsLoRA, LoRA+, LoRA-FA, AdaLoRA, QLoRA, the inits):
  ``get_delta_weight`` of each active adapter; on a 4-bit base too, whose W is de-quantized
  (``bitsandbytes.functional.dequantize_4bit``) for its norm.
- the harness's own low-rank layers (DyLoRA at its full rank, LoRA-drop): ``scale · B·A``.
- any other peft tuner layer on a full-precision base (DoRA, LoHa, LoKr, VeRA, OFT, IA3...):
  peft's own ``merge`` of the twin, minus the weight it started from.
- full fine-tuning: ΔW = W_after - W_before of the target layers (the model's adapted layers
  under LoRA), W_before from the weights saved before training.

Left empty, with the reason: an update generated per task (HyperLoRA), a non-LoRA tuner on a
4-bit base (merging re-quantizes), base weights that moved in training although frozen
(Delta-LoRA), and methods with no weight update (prompt tuning, baselines).
"""
from __future__ import annotations

import copy
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from harness.methods.lowrank import LowRankLinear, target_names


class Unmeasured(Exception):
    """A layer whose update this module cannot form exactly; the message says why."""


def effective_rank(singular: torch.Tensor) -> float | None:
    """exp(-Σ p_k log p_k), p_k = σ_k / Σσ (Roy & Vetterli 2007); None for a zero matrix."""
    s = singular.double().clamp(min=0)
    if float(s.sum()) <= 0:
        return None
    p = s[s > 0] / s.sum()
    return float(torch.exp(-(p * p.log()).sum()))


def shape_of(delta: torch.Tensor, weight_norm: float) -> dict:
    """One layer's update ``delta`` (float64) against a weight of norm ``weight_norm``."""
    norm = float(delta.double().norm())
    return {"update_norm": norm, "weight_norm": weight_norm,
            "rel_norm": norm / weight_norm if weight_norm > 0 else None,
            "erank": effective_rank(torch.linalg.svdvals(delta.float()))}


def _tuner_types() -> tuple[type, ...]:
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # no peft: the harness's own layers only
        return ()
    return (BaseTunerLayer,)


def _base(layer: nn.Module) -> nn.Module:
    return layer.base if isinstance(layer, LowRankLinear) else layer.get_base_layer()


def _weight(layer: nn.Module) -> torch.Tensor | None:
    weight = getattr(_base(layer), "weight", None)
    return weight if isinstance(weight, torch.Tensor) and weight.dim() == 2 else None


def adapted_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers holding an adapter on a weight matrix, by name: peft's tuner layers and the
    harness's low-rank layers (:mod:`harness.methods.lowrank`)."""
    kinds = (LowRankLinear, *_tuner_types())
    return {name: m for name, m in model.named_modules() if isinstance(m, kinds) and _weight(m) is not None}


def _checksum(weight: torch.Tensor) -> tuple[float, float]:
    w = weight.detach().data.double()
    return float(w.sum()), float(w.square().sum())


@dataclass
class Before:
    """What the update is measured against, kept on disk in ``folder`` (not in memory: the run's
    peak memory stays its own): the adapters' trained tensors before training (``adapter.pt``,
    keyed by their parameter's id) and the base weights' checksums; or, for full fine-tuning, the
    target weights (``<i>.pt``). The folder goes when the update is measured (or this is dropped)."""

    folder: Path
    ids: dict[int, str] = field(default_factory=dict)
    sums: dict[str, tuple[float, float]] = field(default_factory=dict)
    dense_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        weakref.finalize(self, shutil.rmtree, str(self.folder), True)

    def adapter(self) -> dict[int, torch.Tensor]:
        state = load_file(str(self.folder / "adapter.safetensors"), device="cpu")
        return {pid: state[key] for pid, key in self.ids.items()}


def keep_before(model: nn.Module, ctx, parent: Path) -> Before | None:
    """The state before training, saved to a new folder in ``parent`` (None: the method makes no
    weight update to measure); one tensor at a time in CPU memory."""
    layers = adapted_layers(model)
    names = [] if layers else [n for n in target_names(model, ctx) if model.get_submodule(n).weight.requires_grad]
    if not layers and not names:
        return None
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="update_shape_before_", dir=parent))
    if not layers:
        for i, name in enumerate(names):
            save_file({"weight": model.get_submodule(name).weight.detach().cpu().contiguous()}, str(folder / f"{i}.safetensors"))
        return Before(folder, dense_names=names)
    params = {id(p): p for layer in layers.values() for p in layer.parameters() if p.requires_grad}
    ids = {pid: str(i) for i, pid in enumerate(params)}
    save_file({ids[pid]: p.detach().cpu().contiguous() for pid, p in params.items()},
              str(folder / "adapter.safetensors"))
    return Before(folder, ids, {name: _checksum(_weight(layer)) for name, layer in layers.items()})


def _twin(layer: nn.Module, before: dict | None, share_base: bool) -> nn.Module:
    """A float64 copy of ``layer`` (its base shared, not copied, with ``share_base``), holding the
    adapter's values from ``before`` where given (else its current ones)."""
    base = _base(layer)
    memo: dict = {id(base): base} if share_base else {}
    twin = copy.deepcopy(layer, memo)
    shared = {id(m) for m in base.modules()} if share_base else set()  # the model's own: untouched
    with torch.no_grad():
        for p in layer.parameters():
            if before is not None and id(p) in before and id(p) in memo:
                memo[id(p)].copy_(before[id(p)])
        for module in (m for m in twin.modules() if id(m) not in shared):
            module.training = False  # DyLoRA's factors: its full (evaluation) rank
            for store in (module._parameters, module._buffers):
                for key, t in store.items():
                    if t is not None and t.is_floating_point():
                        if isinstance(t, nn.Parameter):
                            t.data = t.data.double()
                        else:
                            store[key] = t.double()
    return twin


def _additive(layer: nn.Module) -> bool:
    """Whether the layer's update is the sum of its adapters' ``get_delta_weight`` (or B·A)."""
    if isinstance(layer, LowRankLinear):
        if type(layer).factors is LowRankLinear.factors:
            raise Unmeasured(f"{type(layer).__name__} generates its update per task (no single ΔW)")
        return True
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return False
    variants = getattr(layer, "lora_variant", {})
    return isinstance(layer, LoraLayer) and not any(a in variants for a in layer.active_adapters)


def _base_weight(layer: nn.Module) -> torch.Tensor:
    weight = _weight(layer)
    if getattr(weight, "quant_state", None) is not None:  # a 4-bit base: its weights de-quantized
        import bitsandbytes.functional as bnbf

        return bnbf.dequantize_4bit(weight.data, weight.quant_state).double()
    return weight.detach().double()


def _delta(layer: nn.Module, before: dict | None) -> torch.Tensor:
    twin = _twin(layer, before, share_base=True)
    with torch.no_grad():
        if isinstance(twin, LowRankLinear):
            a, b, scale = twin.factors()
            return (b @ a) * scale
        return sum(twin.get_delta_weight(name) for name in twin.active_adapters)


def _merged(layer: nn.Module, before: dict | None) -> torch.Tensor:
    if getattr(_weight(layer), "quant_state", None) is not None:
        raise Unmeasured("an adapter other than plain LoRA (DoRA, ...) on a 4-bit base: merging it re-quantizes the weight")
    twin = _twin(layer, before, share_base=False)
    with torch.no_grad():
        twin.merge(adapter_names=list(twin.active_adapters))
    return twin.get_base_layer().weight.detach()


def layer_update(layer: nn.Module, before: dict) -> tuple[torch.Tensor, float]:
    """(ΔW in float64, ‖W‖_F of the effective weight before training) of one adapted layer."""
    if _additive(layer):
        after, start = _delta(layer, None), _delta(layer, before)
        return after - start, float((_base_weight(layer) + start).norm())
    after, start = _merged(layer, None), _merged(layer, before)
    return after - start, float(start.norm())


def _dense(model: nn.Module, before: Before) -> list[dict]:
    out = []
    for i, name in enumerate(before.dense_names):
        weight = model.get_submodule(name).weight.detach()
        start = load_file(str(before.folder / f"{i}.safetensors"))["weight"].to(weight.device).double()
        out.append({"layer": name, "shape": list(weight.shape),
                    **shape_of(weight.double() - start, float(start.norm()))})
    return out


def _adapted(model: nn.Module, before: Before) -> tuple[list[dict], str | None]:
    layers = adapted_layers(model)
    moved = [n for n, layer in layers.items() if before.sums.get(n) != _checksum(_weight(layer))]
    if moved:
        return [], (f"the frozen base weights of {len(moved)} adapted layer(s) moved in training "
                    f"(e.g. {moved[0]}): the update is not the adapter's alone")
    adapter, out = before.adapter(), []
    try:
        for name, layer in layers.items():
            delta, weight_norm = layer_update(layer, adapter)
            out.append({"layer": name, "shape": list(delta.shape), **shape_of(delta, weight_norm)})
    except Unmeasured as exc:
        return [], str(exc)
    return out, None


def measure(model: nn.Module, before: Before) -> tuple[list[dict], str | None]:
    """Every adapted layer's update shape, and None; or no layers and the reason why. The saved
    state is removed after."""
    try:
        return (_dense(model, before), None) if before.dense_names else _adapted(model, before)
    finally:
        shutil.rmtree(before.folder, ignore_errors=True)


def summary(layers: list[dict]) -> dict:
    """The run's fields: mean and largest relative norm and effective rank over its layers."""
    out = {}
    for key, name in (("rel_norm", "update_rel_norm"), ("erank", "update_erank")):
        values = [layer[key] for layer in layers if layer[key] is not None]
        out[f"{name}_mean"] = sum(values) / len(values) if values else None
        out[f"{name}_max"] = max(values) if values else None
    return out
