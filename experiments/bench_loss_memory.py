"""Memory and time of a causal LM's training step, with the answer loss in one pass and in chunks.

    python experiments/bench_loss_memory.py                       # Llama-3's vocabulary, on CPU
    python experiments/bench_loss_memory.py --answer 1024 --chunk 128
    python experiments/bench_loss_memory.py --device cuda --hidden 2048 --layers 4

A LlamaForCausalLM with random weights (Llama-3's 128,256-token vocabulary by default, a small
body so that the output layer's logits dominate, as they do for long answers), peft's LoRA on
q_proj and v_proj, and a batch of ``--batch`` rows of ``--prompt`` prompt and ``--answer`` answer
tokens. One training step (forward, the harness's answer loss, backward) through
:func:`harness.tasks.scoring.lm.answer_nll`, the function every prompt task's loss goes through,
with ``chunk=None`` (one pass) and with ``--chunk`` (``trainer.loss_chunk_tokens``), alternating over
``--rounds`` in one process. Memory: the step's peak above the memory held before it (CPU: the
process's peak RSS, reset before each step through ``/proc/self/clear_refs``; CUDA: torch's peak
allocated). The losses of both are printed too: they agree to float rounding.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

MiB = 2 ** 20


def build(args, device: torch.device):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 8 // 3,
                         num_hidden_layers=args.layers, num_attention_heads=max(1, args.hidden // 64),
                         num_key_value_heads=max(1, args.hidden // 256), max_position_embeddings=4096,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config).to(device)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    ids = torch.randint(0, args.vocab, (args.batch, args.prompt + args.answer), device=device)
    labels = ids.clone()
    labels[:, :args.prompt] = -100
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, labels


def measure(step, device: torch.device) -> tuple[float, float]:
    """(MiB above what was held before, seconds) of ``step()``."""
    from harness.training.memory import _peak_rss_since_reset, _reset_peak_rss

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        import psutil

        if not _reset_peak_rss():
            raise SystemExit("this kernel cannot reset a process's peak RSS (/proc/self/clear_refs)")
        before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _peak_rss_since_reset()
    return (peak - before) / MiB, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vocab", type=int, default=128_256)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--prompt", type=int, default=64)
    p.add_argument("--answer", type=int, default=512)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    from harness.tasks.scoring.lm import answer_nll

    device = torch.device(args.device)
    model, inputs, labels = build(args, device)
    losses: dict = {}

    def step(chunk):
        def run():
            model.zero_grad(set_to_none=True)
            nll, mask = answer_nll(model, inputs, labels, chunk)
            loss = nll.sum() / mask.sum()
            loss.backward()
            losses[chunk] = float(loss.detach())
            model.zero_grad(set_to_none=True)  # the gradients' memory is the same for both
        return run

    variants = {"one pass": None, f"chunks of {args.chunk}": args.chunk}
    for chunk in variants.values():
        step(chunk)()  # untimed: allocator and kernels warmed up for both
    results = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, chunk in variants.items():
            results[name].append(measure(step(chunk), device))
    answer_tokens = args.batch * args.answer
    print(f"{device}, torch {torch.__version__}; vocabulary {args.vocab:,}, hidden {args.hidden}, "
          f"{args.layers} layers; {args.batch} rows x ({args.prompt} prompt + {args.answer} answer tokens); "
          f"{args.rounds} round(s)")
    print(f"one pass's float32 logits alone: {answer_tokens * args.vocab * 4 / MiB:,.0f} MiB")
    print(f"{'loss':<16} {'step MiB':>10} {'step s':>8}  loss")
    for name, chunk in variants.items():
        mib = statistics.median(r[0] for r in results[name])
        sec = statistics.median(r[1] for r in results[name])
        print(f"{name:<16} {mib:>10,.0f} {sec:>8.2f}  {losses[chunk]:.6f}")
    one, chunked = (results[n] for n in variants)
    print(f"chunks / one pass: {statistics.median(r[0] for r in chunked) / statistics.median(r[0] for r in one):.2f}x "
          f"memory, {statistics.median(r[1] for r in chunked) / statistics.median(r[1] for r in one):.2f}x time")


if __name__ == "__main__":
    main()
