"""Equal training seconds (``trainer.time_budget_s``): the run's training step timed before it
trains, and the optimizer steps that fit in the budget.

A run with a time budget times forward and backward passes of its own model on its first
training batches, per token (after an untimed warm-up, with every random-number generator put
back, as the FLOP count is: :func:`harness.training.flops.random_state_kept`), takes the fastest
of them (as ``timeit`` does: another job's load only ever adds time, and a plan from a slowed
batch would end the run before its budget is spent), costs each step of its epoch by its tokens
and plans the steps that fit (its learning-rate schedule is over them), and the training loop
stops it when its training time reaches the budget whatever the plan said
(:class:`harness.training.loop._Training`).
The optimizer's own step is not in the timing; the stop covers it. Seconds are a budget of one
device under one load: runs on different machines, or beside other jobs, do not share it.
"""
from __future__ import annotations

import time

from harness.training.flops import random_state_kept

TIMED_BATCHES = 3


class TimeBudgetError(ValueError):
    """A time budget shorter than one training step; the message is one line."""


def plan_steps(adapted, kind, batches, device, bf16: bool, budget_s: float, packed: bool) -> int:
    """The optimizer steps that fit in ``budget_s`` training seconds: the run's first training
    batches (the loader's own, in its order) timed per token after an untimed warm-up, the
    fastest taken, and each step of the loader's epoch costed by its tokens (padding included;
    packed rows have none)."""
    epoch = batch_indices(batches)
    tokens = [_tokens(batches.dataset, b, packed) for b in epoch]
    timed = [batches.collate_fn([batches.dataset[i] for i in b]) for b in epoch[:TIMED_BATCHES]]
    with random_state_kept():
        _forward_backward(adapted, kind, timed[0], device, bf16)
        per_token = min(_forward_backward(adapted, kind, b, device, bf16) / n for b, n in zip(timed, tokens))
    return steps_in_seconds(budget_s, [n * per_token for n in tokens])


def batch_indices(batches) -> list[list[int]]:
    """The example indices of each batch of one epoch of a ``DataLoader``, in its order, with its
    sampler's random-number generator put back, so that training draws the same epoch."""
    generator = getattr(batches.sampler, "generator", None)
    state = generator.get_state() if generator is not None else None
    try:
        return [list(b) for b in batches.batch_sampler]
    finally:
        if state is not None:
            generator.set_state(state)


def _tokens(dataset, indices: list[int], packed: bool) -> int:
    lengths = [len(dataset[i]["input_ids"]) for i in indices]
    return sum(lengths) if packed else max(lengths) * len(lengths)


def _forward_backward(adapted, kind, batch: dict, device, bf16: bool) -> float:
    """The trainer's own loss, forward and backward, timed; the model's mode and gradients as
    they were."""
    from harness.device import autocast_context, sync, to_device
    from harness.training.steps import training_loss

    model = adapted.model
    was_training = model.training
    model.train()
    try:
        batch = to_device(batch, device)
        sync(device)
        start = time.perf_counter()
        with autocast_context(device, bf16):
            loss = training_loss(adapted, kind, batch)
        loss.backward()
        sync(device)
        return time.perf_counter() - start
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def steps_in_seconds(budget_s: float, step_s: list[float]) -> int:
    """How many steps, of the seconds ``step_s`` gives for each step of an epoch in turn (epoch
    after epoch), fit in ``budget_s``."""
    if not step_s or step_s[0] > budget_s:
        first = f"{step_s[0]:.3g} s timed" if step_s else "no training batch"
        raise TimeBudgetError(f"trainer.time_budget_s={budget_s:g} is less than one training step of this "
                              f"run ({first}); give at least that")
    epoch_s = sum(step_s)
    epochs = int(budget_s // epoch_s) if epoch_s > 0 else 0
    steps, spent = epochs * len(step_s), epochs * epoch_s
    for seconds in step_s:
        if spent + seconds > budget_s:
            break
        steps, spent = steps + 1, spent + seconds
    return steps


def out_of_time(budget_s: float | None, spent_s: float) -> bool:
    """Whether a run with ``budget_s`` training seconds (None: no time budget) has spent them."""
    return budget_s is not None and spent_s >= budget_s
