"""What the training loop's steps are made of: one step's loss (:func:`training_loss`), the
number of steps (:func:`total_steps`), an evaluation pass (:func:`evaluate`), how a step fails
(:class:`NonFiniteLossError`) and what the run returns (:class:`TrainResult`).
:mod:`harness.training.loop` puts them together (and is where the rest of the harness imports
them from)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from harness.device import autocast_context, to_device
from harness.tasks.types import SingleLabel, TaskType


class NonFiniteLossError(RuntimeError):
    """Training loss became NaN or infinite; the run is stopped early."""


@dataclass
class TrainResult:
    curves: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    train_s: float = 0.0
    samples: int = 0
    tokens: int = 0
    steps: int = 0
    # The validation value of trainer.select_metric for the weights that are tested.
    selected_value: float | None = None


def _in_example_order(values: list, batches: DataLoader) -> list:
    """Per-example values of an evaluation pass, back in the examples' own order."""
    order = batches.sampler
    if not isinstance(order, list):  # sequential
        return values
    out = [None] * len(values)
    for position, value in zip(order, values):
        out[position] = value
    return out


@torch.no_grad()
def evaluate(model, batches: DataLoader, device, num_labels: int, use_bf16: bool,
             labels: list[int] | None = None, task_type: TaskType | None = None,
             keep: dict | None = None, progress: str | None = None) -> dict:
    """Loss and metrics on ``batches``; ``labels`` restricts F1 to some labels (one task's).
    ``keep``: a dict that receives the per-example ``predictions`` and ``labels``, in order.
    ``progress``: the name of a progress bar over the batches (none when None)."""
    kind = task_type or SingleLabel()
    model.eval()
    preds, refs, loss_sum, n = [], [], 0.0, 0
    # A bar updated by hand, not wrapped around the loader: iterating a DataLoader through tqdm
    # changed the default run's seed-0 accuracy (0.765 -> 0.761), cause not yet known.
    bar = tqdm(total=len(batches) if progress else None, desc=f"{progress}: {kind.scoring}", unit="batch",
               leave=False, disable=progress is None, dynamic_ncols=True)
    for batch in batches:
        bar.update(1)
        batch = to_device(batch, device)
        with autocast_context(device, use_bf16):
            batch_loss, weight, batch_preds, batch_refs = kind.score_batch(model, batch)
        loss_sum += batch_loss
        n += weight  # examples; answer tokens for prompt tasks
        preds += batch_preds
        refs += batch_refs
    bar.close()
    metrics = kind.metrics(preds, refs, num_labels, labels)
    metrics["eval_loss"] = loss_sum / max(n, 1)
    metrics.update(kind.loss_metrics(metrics["eval_loss"]))
    if keep is not None:
        keep.update(predictions=_in_example_order(preds, batches), labels=_in_example_order(refs, batches))
    return metrics


def training_loss(adapted, kind: TaskType, batch: dict, model=None) -> torch.Tensor:
    """The loss the optimizer minimises: the task type's loss on the batch, plus the method's own
    term (``Adapted.extra_loss``, e.g. AdaLoRA's orthogonality penalty) when it has one.
    ``model``: what the forward pass goes through (a data-parallel wrapper; default the model)."""
    loss = kind.batch_loss(model if model is not None else adapted.model, batch)
    extra = adapted.extra_loss()
    return loss if extra is None else loss + extra


def total_steps(steps_per_epoch: int, t) -> int:
    """Optimizer steps a run takes: every epoch, or ``trainer.max_steps`` if that is fewer."""
    total = steps_per_epoch * t.epochs
    return total if t.max_steps is None else min(t.max_steps, total)
