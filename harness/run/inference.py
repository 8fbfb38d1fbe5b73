"""What a trained run costs at inference: forward latency (adapters unmerged, then merged),
generation speed for causal language models, and the adapter's size on disk."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from harness.device import autocast_context, sync, to_device
from harness.training.loop import loader

if TYPE_CHECKING:
    from harness.config import RunConfig
    from harness.run.steps import Setup


@dataclass
class InferenceCosts:
    adapter_bytes: int
    latency_ms: float | None  # None: not measured (an FSDP run tested sharded)
    latency_merged_ms: float | None
    generation: dict = field(default_factory=dict)  # gen_tokens_per_s, gen_ttft_ms


def inference_costs(s: "Setup", cfg: "RunConfig", work_dir: Path, timed: bool = True) -> InferenceCosts:
    """Inference latency (adapters unmerged, then merged where the method can) and adapter size;
    without ``timed``, the adapter's size only (an FSDP run tested sharded: its model, built again
    in CPU memory, is not where it trained, so nothing is timed)."""
    t = cfg.trainer
    if not timed:
        return InferenceCosts(int(s.adapted.save(work_dir / "adapter")), None, None)
    batch = next(iter(loader(s.encoded["test"].examples, s.loaded.tokenizer, t.latency_batch_size,
                             False, cfg.seed, s.kind.collator(s.loaded.tokenizer))))
    inputs = s.kind.model_inputs(batch)
    if s.kind.causal_lm:  # a forward pass of a language model at inference: the next token's logits
        inputs["logits_to_keep"] = 1
    generation = {}
    say = print if t.progress else (lambda *a, **k: None)
    say(f"[harness] timing inference: forward latency, {t.latency_batches} batches of "
        f"{t.latency_batch_size} (trainer.latency_batches, trainer.latency_batch_size)", flush=True)
    with s.adapted.inference():
        unmerged = latency_ms(s.adapted.model, inputs, s.device, t.latency_batches, s.use_bf16)
        if s.kind.causal_lm:
            say(f"[harness] timing generation: {t.generation_tokens} new tokens for "
                f"{t.generation_batch_size} prompts, {t.latency_batches} times "
                f"after a warm-up (fewer trainer.generation_tokens or trainer.latency_batches "
                f"shorten it)", flush=True)
            from harness.tasks.scoring.lm import generation_speed

            prompts = next(iter(loader(s.encoded["test"].examples, s.loaded.tokenizer,
                                       t.generation_batch_size, False, cfg.seed,
                                       s.kind.collator(s.loaded.tokenizer))))
            generation = generation_speed(s.adapted.model, prompts, s.loaded.tokenizer,
                                          t.generation_tokens, t.latency_batches, s.device, s.use_bf16)
    adapter_bytes = s.adapted.save(work_dir / "adapter")
    merged = (latency_ms(s.adapted.model, inputs, s.device, t.latency_batches, s.use_bf16)
              if s.adapted.merge() else None)
    return InferenceCosts(int(adapter_bytes), unmerged, merged, generation)


@torch.no_grad()
def latency_ms(model: torch.nn.Module, batch: dict, device: torch.device, repeats: int,
               bf16: bool = False) -> float:
    """Median wall milliseconds of one forward pass on ``batch`` (under bf16 autocast when the
    run trained and evaluated under it), after one warm-up pass."""
    model.eval()

    batch = to_device(batch, device)

    times = []
    with autocast_context(device, bf16):
        model(**batch)
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            model(**batch)
            sync(device)
            times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    return float(times[len(times) // 2])
