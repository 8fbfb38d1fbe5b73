"""The training loop: dynamic padding, per-epoch validation, best/final selection.

It knows nothing about particular methods: it trains ``adapted.model`` with the optimizer the
method makes, adds ``adapted.extra_loss()`` to the task loss at every step, and calls
``adapted.after_optimizer_step`` after each step. (The method's one "before training" hook runs
earlier, in :func:`harness.run.pipeline.setup`, with the step count from :func:`total_steps`.)
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding, get_linear_schedule_with_warmup

from harness.device import autocast_context, to_device
from harness.fields import better
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


def loader(examples: list[dict], tokenizer, batch_size: int, shuffle: bool, seed: int,
           collate=None, group_by_length: bool = False) -> DataLoader:
    """Batches padded to their own longest sequence. ``group_by_length``: training batches
    (``shuffle``) of similar lengths, from transformers' ``LengthGroupedSampler`` (random
    mega-batches of up to 50 batches, each sorted by length, the longest batch first, as its
    Trainer's ``group_by_length``); evaluation batches in order of length, longest first
    (:func:`evaluate` returns predictions in the examples' own order)."""
    collate = collate or DataCollatorWithPadding(tokenizer, padding="longest")
    generator = torch.Generator().manual_seed(seed)
    if not group_by_length:
        return DataLoader(examples, batch_size=batch_size, shuffle=shuffle, collate_fn=collate,
                          generator=generator)
    lengths = [len(e["input_ids"]) for e in examples]
    if shuffle:
        from transformers.trainer_pt_utils import LengthGroupedSampler

        sampler = LengthGroupedSampler(batch_size, lengths=lengths, generator=generator)
    else:
        sampler = sorted(range(len(examples)), key=lambda i: -lengths[i])
    return DataLoader(examples, batch_size=batch_size, sampler=sampler, collate_fn=collate)


def _in_example_order(values: list, batches: DataLoader) -> list:
    """Per-example values of an evaluation pass, back in the examples' own order."""
    order = batches.sampler
    if not isinstance(order, list):  # sequential
        return values
    out = [None] * len(values)
    for position, value in zip(order, values):
        out[position] = value
    return out


def _shows_progress(t, parallel=None) -> bool:
    """Whether this process draws progress bars: ``trainer.progress``, and the first process of a
    data-parallel run only."""
    return bool(t.progress) and (parallel is None or parallel.is_main)


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


def train(adapted, train_batches: DataLoader, val_batches: DataLoader, cfg, device,
          num_labels: int, use_bf16: bool, tracker=None,
          task_type: TaskType | None = None, memory=None, parallel=None) -> TrainResult:
    """``tracker``: a :class:`harness.tracking.Tracker` told of every step and epoch (optional);
    ``memory``: a :class:`harness.training.memory.PeakMemory` whose ``train`` and ``eval`` phases
    this loop marks (optional); ``parallel``: this process's :class:`harness.run.parallel.Parallel`
    in a data-parallel run (each step's loss, examples and tokens are then summed over the
    processes, so that what is logged and recorded is the global batch's)."""
    from harness.tracking import Tracker

    tracker = tracker or Tracker()
    phase = memory.phase if memory is not None else (lambda name: contextlib.nullcontext())
    kind = task_type or SingleLabel()
    t = cfg.trainer
    model = adapted.model
    if not any(p.requires_grad for p in model.parameters()):  # zero-shot: validation once, no steps
        with phase("eval"), adapted.inference():
            metrics = evaluate(model, val_batches, device, num_labels, use_bf16, task_type=kind,
                               progress="validation" if _shows_progress(t, parallel) else None)
        return TrainResult(curves=[{"epoch": 0, "split": "validation", "metric": k, "value": v}
                                   for k, v in metrics.items()],
                           selected_value=float(metrics[t.select_metric]))
    total = total_steps(len(train_batches), t)
    with phase("setup"):  # measured with the setup: sharding, and the optimizer's states
        if parallel is not None:
            parallel.shard(model)  # FSDP: before the optimizer, which then holds the shards
        optimizer = adapted.make_optimizer()
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(t.warmup_ratio * total), total)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    forward = model
    if parallel is not None:  # the scheduler is stepped here, once per optimizer step, as alone
        forward, optimizer, train_batches = parallel.prepare(model, optimizer, train_batches)
    backward = parallel.backward if parallel is not None else (lambda loss: loss.backward())
    clip = parallel.clip_grad_norm_ if parallel is not None else torch.nn.utils.clip_grad_norm_
    result, best_value, best_state = TrainResult(), None, None
    step = 0
    # One bar per run, over all its optimizer steps.
    bar = tqdm(total=total, desc=f"{cfg.method.name} (seed {cfg.seed})", unit="step",
               disable=not _shows_progress(t, parallel),
               dynamic_ncols=True)
    for epoch in range(1, t.epochs + 1):
        model.train()
        loss_sum, seen = 0.0, 0
        start = time.perf_counter()
        with phase("train"):
            for batch in train_batches:
                batch = to_device(batch, device)
                with autocast_context(device, use_bf16):
                    loss = training_loss(adapted, kind, batch, forward)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(f"training loss became {float(loss)} at step {step + 1}")
                backward(loss)
                clip(params, t.max_grad_norm)
                lr = optimizer.param_groups[0]["lr"]  # the rate this step used, for the tracker
                optimizer.step()
                scheduler.step()
                step += 1
                adapted.after_optimizer_step(step, total)
                optimizer.zero_grad(set_to_none=True)
                n, tokens = len(batch["labels"]), int(batch["attention_mask"].sum())
                loss_value = float(loss.detach())
                if parallel is not None:  # this process's share -> the global batch
                    weighted, n, tokens = parallel.sum([loss_value * n, n, tokens])
                    loss_value, n, tokens = weighted / n, int(n), int(tokens)
                tracker.log_step(step, loss_value, lr)
                loss_sum += loss_value * n
                seen += n
                result.samples += n
                result.tokens += tokens
                bar.update(1)
                bar.set_postfix(epoch=f"{epoch}/{t.epochs}", loss=f"{loss_sum / seen:.4f}")
                if step >= total:
                    break
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        result.train_s += time.perf_counter() - start
        result.steps = step
        with phase("eval"), adapted.inference():
            metrics = evaluate(model, val_batches, device, num_labels, use_bf16, task_type=kind,
                               progress=f"epoch {epoch} validation" if not bar.disable else None)
        if not math.isfinite(metrics["eval_loss"]):
            raise NonFiniteLossError(f"validation loss became {metrics['eval_loss']} after epoch {epoch}")
        result.curves.append({"epoch": epoch, "split": "train", "metric": "loss", "value": loss_sum / max(seen, 1)})
        result.curves += [{"epoch": epoch, "split": "validation", "metric": k, "value": v}
                          for k, v in metrics.items()]
        bar.set_postfix(epoch=f"{epoch}/{t.epochs}", loss=f"{loss_sum / max(seen, 1):.4f}",
                        val_acc=f"{metrics['accuracy']:.4f}")
        tracker.log_epoch(epoch, {"train/epoch_loss": loss_sum / max(seen, 1),
                                  **{f"validation/{k}": v for k, v in metrics.items()}})
        if t.select.value == "final":
            result.selected_value = float(metrics[t.select_metric])
        if better(t.select_metric, metrics[t.select_metric], best_value):
            best_value, result.best_epoch = metrics[t.select_metric], epoch
            if t.select.value == "best":
                result.selected_value = float(best_value)
            if t.select.value == "best" and epoch < t.epochs:
                best_state = adapted.snapshot()
            elif t.select.value == "best":
                best_state = None  # the last epoch is the best: the weights are already there
        if step >= total:
            break
    bar.close()
    if t.select.value == "best" and best_state is not None:
        adapted.restore(best_state)
    bad = [name for name, p in model.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
    if bad:
        raise NonFiniteLossError(f"{len(bad)} trained tensor(s) hold non-finite values after training "
                                 f"(first: {bad[0]})")
    return result
