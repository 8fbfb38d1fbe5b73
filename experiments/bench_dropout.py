"""Where a training step's time goes on CPU, and what drawing dropout masks with numpy saves.

    python experiments/bench_dropout.py                    # LoRA on the default task, 16 steps
    python experiments/bench_dropout.py --method dora --steps 8

Builds the run as the harness does (:func:`harness.run.pipeline.setup`). For each of
``trainer.dropout_rng=torch`` and ``numpy``, in one process, side by side and alternating over
``--rounds``: a few untimed steps, then ``--steps`` timed training steps of the trainer's own loss,
backward and optimizer step (the same batches for both). Then it profiles the steps once per
setting and prints the operators with the largest share of the steps' CPU time, the share of
torch's dropout draws (``aten::bernoulli_``), and how long one mask takes from torch on 1 and on 2
threads (a draw that takes as long on 2 threads as on 1 is drawn serially) and from numpy.
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch


def profile_steps(method: str, steps: int, rounds: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    from hydra import compose, initialize_config_dir

    from harness.device import autocast_context
    from harness.job.validation import register_schemas, validate
    from harness.paths import conf_dir
    from harness.run.pipeline import setup
    from harness.training.steps import training_loss

    register_schemas()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = validate(compose(config_name="config", overrides=[f"method={method}"]))
    s = setup(cfg, torch.device("cpu"))
    optimizer = s.adapted.make_optimizer()
    batches = iter(s.batches["train"])
    s.adapted.model.train()

    from harness.training.dropout import numpy_dropout

    def step(batch) -> None:
        with autocast_context(s.device, s.use_bf16):
            loss = training_loss(s.adapted, s.kind, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def context(rng: str):
        return numpy_dropout(cfg.seed) if rng == "numpy" else contextlib.nullcontext()

    batches = [next(batches) for _ in range(steps)]
    per_step = {"torch": [], "numpy": []}
    for _ in range(rounds):
        for rng in per_step:
            with context(rng):
                for batch in batches[:3]:
                    step(batch)
                start = time.perf_counter()
                for batch in batches:
                    step(batch)
            per_step[rng].append((time.perf_counter() - start) / steps)
    print(f"{method}: {steps} steps x {rounds} round(s), bf16={s.use_bf16}, {torch.get_num_threads()} threads")
    for rng, times in per_step.items():
        print(f"  trainer.dropout_rng={rng:<6} {min(times) * 1e3:6.0f} ms per step (best round), "
              f"{sum(times) / len(times) * 1e3:6.0f} ms (mean)")
    print(f"  numpy / torch step time: {min(per_step['numpy']) / min(per_step['torch']):.2f}x")
    for rng in per_step:
        with context(rng), profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in batches:
                step(batch)
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        print(f"profiled, trainer.dropout_rng={rng}:")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:6]:
            print(f"  {e.key:<40} {e.self_cpu_time_total / total:6.1%}  ({e.count} calls)")
        drawn = sum(e.self_cpu_time_total for e in events if e.key == "aten::bernoulli_")
        print(f"  torch's dropout draws (aten::bernoulli_): {drawn / total:.1%} of the steps' CPU time")


def draw_threads(shape=(32, 27, 384), p: float = 0.1, repeats: int = 200) -> None:
    x = torch.empty(shape)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for _ in range(5):
            x.bernoulli_(1 - p)
        start = time.perf_counter()
        for _ in range(repeats):
            x.bernoulli_(1 - p)
        print(f"one mask of {x.numel():,} draws from torch on {threads} thread(s): "
              f"{(time.perf_counter() - start) / repeats * 1e3:.2f} ms")
    from harness.training.dropout import MaskSource

    source = MaskSource(0)
    for _ in range(5):
        source.keep(x.shape, p)
    start = time.perf_counter()
    for _ in range(repeats):
        source.keep(x.shape, p)
    print(f"one mask of {x.numel():,} draws from numpy (PCG64): {(time.perf_counter() - start) / repeats * 1e3:.2f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="lora")
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    profile_steps(args.method, args.steps, args.rounds)
    draw_threads()


if __name__ == "__main__":
    main()
