"""Where a training step's time goes on CPU: torch's profiler over the harness's own training steps.

    python experiments/bench_dropout.py                    # LoRA on the default task, 16 steps
    python experiments/bench_dropout.py --method dora --steps 8

Builds the run as the harness does (:func:`harness.run.pipeline.setup`), takes a few untimed
steps, then profiles ``--steps`` training steps of the trainer's own loss, backward and optimizer
step, and prints the operators with the largest share of the steps' CPU time, the share of the
dropout masks' random draws (``aten::bernoulli_``) among them, and how long one such draw takes
on 1 and on 2 threads (a draw that takes as long on 2 threads as on 1 is drawn serially).
"""
from __future__ import annotations

import argparse
import time

import torch


def profile_steps(method: str, steps: int) -> None:
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

    def step() -> None:
        with autocast_context(s.device, s.use_bf16):
            loss = training_loss(s.adapted, s.kind, next(batches))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    wall = time.perf_counter() - start
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(f"{method}: {steps} steps, {wall / steps * 1e3:.0f} ms per step (profiled), bf16={s.use_bf16}, "
          f"{torch.get_num_threads()} threads")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:8]:
        print(f"  {e.key:<40} {e.self_cpu_time_total / total:6.1%}  ({e.count} calls)")
    drawn = sum(e.self_cpu_time_total for e in events if e.key == "aten::bernoulli_")
    print(f"dropout masks (aten::bernoulli_): {drawn / total:.1%} of the steps' CPU time")


def draw_threads(shape=(32, 27, 384), p: float = 0.1, repeats: int = 200) -> None:
    x = torch.empty(shape)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for _ in range(5):
            x.bernoulli_(1 - p)
        start = time.perf_counter()
        for _ in range(repeats):
            x.bernoulli_(1 - p)
        print(f"one mask of {x.numel():,} draws on {threads} thread(s): "
              f"{(time.perf_counter() - start) / repeats * 1e3:.2f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="lora")
    p.add_argument("--steps", type=int, default=16)
    args = p.parse_args()
    profile_steps(args.method, args.steps)
    draw_threads()


if __name__ == "__main__":
    main()
