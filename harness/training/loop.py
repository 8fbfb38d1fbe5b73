"""The training loop: dynamic padding, per-epoch validation, best/final selection.

It knows nothing about particular methods: it trains ``adapted.model`` with the optimizer the
method makes, adds ``adapted.extra_loss()`` to the task loss at every step, and calls
``adapted.after_optimizer_step`` after each step. (The method's one "before training" hook runs
earlier, in :func:`harness.run.pipeline.setup`, with the step count from :func:`total_steps`.)
:func:`train` reads as its steps, each a method of ``_Training``; what they are made of (a step's
loss, an evaluation pass, the result) is in :mod:`harness.training.steps`, imported here.
"""
from __future__ import annotations

import contextlib
import math
import time

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding, get_linear_schedule_with_warmup

from harness.device import autocast_context, to_device
from harness.fields import better
from harness.tasks.types import SingleLabel, TaskType
from harness.training.clock import out_of_time
from harness.training.dropout import dropout_context
from harness.training.steps import NonFiniteLossError, TrainResult, evaluate, total_steps, training_loss


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


def _shows_progress(t, parallel=None) -> bool:
    """Whether this process draws progress bars: ``trainer.progress``, and the first process of a
    data-parallel run only."""
    return bool(t.progress) and (parallel is None or parallel.is_main)


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
    if not any(p.requires_grad for p in adapted.model.parameters()):  # zero-shot: validation once, no steps
        return _validate_once(adapted, val_batches, cfg.trainer, device, num_labels, use_bf16, kind,
                              phase, parallel)
    run = _Training(adapted, train_batches, val_batches, cfg, device, num_labels, use_bf16, tracker,
                    kind, phase, parallel)
    run.prepare()
    with dropout_context(run.t, cfg.seed, parallel.accelerator.process_index if parallel is not None else 0):
        for epoch in range(1, run.t.epochs + 1):
            train_loss = run.train_epoch(epoch)
            metrics = run.validate(epoch)
            run.record_epoch(epoch, train_loss, metrics)
            run.select(epoch, metrics)
            if run.stopped:  # its steps taken, or its training seconds spent (trainer.time_budget_s)
                break
    return run.finish()


def _validate_once(adapted, val_batches: DataLoader, t, device, num_labels: int, use_bf16: bool,
                   kind: TaskType, phase, parallel) -> TrainResult:
    """A model with nothing to train (zero-shot): one validation pass, its metrics as epoch 0."""
    with phase("eval"), adapted.inference():
        metrics = evaluate(adapted.model, val_batches, device, num_labels, use_bf16, task_type=kind,
                           progress="validation" if _shows_progress(t, parallel) else None)
    return TrainResult(curves=[{"epoch": 0, "split": "validation", "metric": k, "value": v}
                               for k, v in metrics.items()],
                       selected_value=float(metrics[t.select_metric]))


class _Training:
    """The state of one run of :func:`train`, one method per step of it: ``prepare`` (optimizer,
    scheduler, progress bar), then per epoch ``train_epoch`` (``take_step`` per batch),
    ``validate``, ``record_epoch`` and ``select``, and ``finish`` (the selected weights back)."""

    def __init__(self, adapted, train_batches: DataLoader, val_batches: DataLoader, cfg, device,
                 num_labels: int, use_bf16: bool, tracker, kind: TaskType, phase, parallel) -> None:
        self.adapted, self.model, self.cfg, self.t = adapted, adapted.model, cfg, cfg.trainer
        self.train_batches, self.val_batches = train_batches, val_batches
        self.device, self.num_labels, self.use_bf16 = device, num_labels, use_bf16
        self.tracker, self.kind, self.phase, self.parallel = tracker, kind, phase, parallel
        self.total = total_steps(len(train_batches), self.t)
        self.result, self.best_value, self.best_state = TrainResult(), None, None
        self.step, self.stopped = 0, False
        # The step's batch and loss: each held until the next step's replaces it, the last one
        # through validation too, as a single loop's variables are (the memory peaks count them).
        self.batch, self.loss = None, None

    def prepare(self) -> None:
        """The optimizer (and FSDP's shards) in the setup phase, the schedule, the data-parallel
        wrappers, and one progress bar per run, over all its optimizer steps."""
        parallel, model = self.parallel, self.model
        with self.phase("setup"):  # measured with the setup: sharding, and the optimizer's states
            if parallel is not None:
                parallel.shard(model)  # FSDP: before the optimizer, which then holds the shards
            optimizer = self.adapted.make_optimizer()
        self.scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(self.t.warmup_ratio * self.total),
                                                         self.total)
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.forward = model
        if parallel is not None:  # the scheduler is stepped here, once per optimizer step, as alone
            self.forward, optimizer, self.train_batches = parallel.prepare(model, optimizer, self.train_batches)
        if self.t.compile:  # the training forward only (trainer.compile)
            self.forward = torch.compile(self.forward, dynamic=True)
        self.optimizer = optimizer
        self.backward = parallel.backward if parallel is not None else (lambda loss: loss.backward())
        self.clip = parallel.clip_grad_norm_ if parallel is not None else torch.nn.utils.clip_grad_norm_
        self.bar = tqdm(total=self.total, desc=f"{self.cfg.method.name} (seed {self.cfg.seed})", unit="step",
                        disable=not _shows_progress(self.t, parallel),
                        dynamic_ncols=True)

    def train_epoch(self, epoch: int) -> float:
        """One pass over the training batches (up to the run's last step), timed in the train
        phase; the epoch's mean training loss per example."""
        self.model.train()
        loss_sum, seen = 0.0, 0
        start = time.perf_counter()
        with self.phase("train"):
            for self.batch in self.train_batches:  # noqa: B020 - held as a loop variable is (__init__)
                loss_value, n = self.take_step()
                loss_sum += loss_value * n
                seen += n
                self.bar.update(1)
                self.bar.set_postfix(epoch=f"{epoch}/{self.t.epochs}", loss=f"{loss_sum / seen:.4f}")
                if self.step >= self.total or out_of_time(getattr(self.t, "time_budget_s", None),
                                                          self.result.train_s + time.perf_counter() - start):
                    break
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        self.result.train_s += time.perf_counter() - start
        self.result.steps = self.step
        self.stopped = self.step >= self.total or out_of_time(getattr(self.t, "time_budget_s", None), self.result.train_s)
        return loss_sum / max(seen, 1)

    def take_step(self) -> tuple[float, int]:
        """One optimizer step on ``self.batch``; its loss and examples (the global batch's in a
        data-parallel run), logged to the tracker and counted in the result."""
        self.batch = batch = to_device(self.batch, self.device)
        with autocast_context(self.device, self.use_bf16):
            self.loss = loss = training_loss(self.adapted, self.kind, batch, self.forward)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"training loss became {float(loss)} at step {self.step + 1}")
        self.backward(loss)
        self.clip(self.params, self.t.max_grad_norm)
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used, for the tracker
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.adapted.after_optimizer_step(self.step, self.total)
        self.optimizer.zero_grad(set_to_none=True)
        n, tokens = batch.get("n_rows", len(batch["labels"])), int(batch["attention_mask"].sum())
        loss_value = float(loss.detach())
        if self.parallel is not None:  # this process's share -> the global batch
            weighted, n, tokens = self.parallel.sum([loss_value * n, n, tokens])
            loss_value, n, tokens = weighted / n, int(n), int(tokens)
        self.tracker.log_step(self.step, loss_value, lr)
        self.result.samples += n
        self.result.tokens += tokens
        return loss_value, n

    def validate(self, epoch: int) -> dict:
        """The validation metrics after ``epoch``, in the eval phase; a non-finite loss stops the run."""
        with self.phase("eval"), self.adapted.inference():
            metrics = evaluate(self.model, self.val_batches, self.device, self.num_labels, self.use_bf16,
                               task_type=self.kind,
                               progress=f"epoch {epoch} validation" if not self.bar.disable else None)
        if not math.isfinite(metrics["eval_loss"]):
            raise NonFiniteLossError(f"validation loss became {metrics['eval_loss']} after epoch {epoch}")
        return metrics

    def record_epoch(self, epoch: int, train_loss: float, metrics: dict) -> None:
        """The epoch's curves, progress bar and tracker."""
        self.result.curves.append({"epoch": epoch, "split": "train", "metric": "loss", "value": train_loss})
        self.result.curves += [{"epoch": epoch, "split": "validation", "metric": k, "value": v}
                               for k, v in metrics.items()]
        self.bar.set_postfix(epoch=f"{epoch}/{self.t.epochs}", loss=f"{train_loss:.4f}",
                             val_acc=f"{metrics['accuracy']:.4f}")
        self.tracker.log_epoch(epoch, {"train/epoch_loss": train_loss,
                                       **{f"validation/{k}": v for k, v in metrics.items()}})

    def select(self, epoch: int, metrics: dict) -> None:
        """``trainer.select``: the final epoch's value, or the best epoch's value and weights."""
        t, value = self.t, metrics[self.t.select_metric]
        if t.select.value == "final":
            self.result.selected_value = float(value)
        if better(t.select_metric, value, self.best_value):
            self.best_value, self.result.best_epoch = value, epoch
            if t.select.value == "best":
                self.result.selected_value = float(self.best_value)
            if t.select.value == "best" and epoch < t.epochs:
                self.best_state = self.adapted.snapshot()
            elif t.select.value == "best":
                self.best_state = None  # the last epoch is the best: the weights are already there

    def finish(self) -> TrainResult:
        """The selected weights back in the model, checked finite; the result."""
        self.bar.close()
        if self.t.select.value == "best" and self.best_state is not None:
            self.adapted.restore(self.best_state)
        bad = [name for name, p in self.model.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
        if bad:
            raise NonFiniteLossError(f"{len(bad)} trained tensor(s) hold non-finite values after training "
                                     f"(first: {bad[0]})")
        return self.result
