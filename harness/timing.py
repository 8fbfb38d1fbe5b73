"""What a trained run costs at inference: forward latency (adapters unmerged, then merged),
generation speed for causal language models, and the adapter's size on disk."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.measure import latency_ms
from harness.train import loader

if TYPE_CHECKING:
    from harness.config import RunConfig
    from harness.pipeline import Setup


@dataclass
class Measured:
    adapter_bytes: int
    latency_ms: float | None  # None: not measured (an FSDP run tested sharded)
    latency_merged_ms: float | None
    generation: dict = field(default_factory=dict)  # gen_tokens_per_s, gen_ttft_ms


def measure(s: "Setup", cfg: "RunConfig", work_dir: Path, timed: bool = True) -> Measured:
    """Inference latency (adapters unmerged, then merged where the method can) and adapter size;
    without ``timed``, the adapter's size only (an FSDP run tested sharded: its model, built again
    in CPU memory, is not where it trained, so nothing is timed)."""
    t = cfg.trainer
    if not timed:
        return Measured(int(s.adapted.save(work_dir / "adapter")), None, None)
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
            from harness.lm import generation_speed

            prompts = next(iter(loader(s.encoded["test"].examples, s.loaded.tokenizer,
                                       t.generation_batch_size, False, cfg.seed,
                                       s.kind.collator(s.loaded.tokenizer))))
            generation = generation_speed(s.adapted.model, prompts, s.loaded.tokenizer,
                                          t.generation_tokens, t.latency_batches, s.device, s.use_bf16)
    adapter_bytes = s.adapted.save(work_dir / "adapter")
    merged = (latency_ms(s.adapted.model, inputs, s.device, t.latency_batches, s.use_bf16)
              if s.adapted.merge() else None)
    return Measured(int(adapter_bytes), unmerged, merged, generation)
