"""Model FLOPs utilisation (MFU): the FLOPs of one training step counted on the run's own model and
batch, the rate the run achieved, and the device's peak.

- **FLOPs per token.** One forward and backward pass of the trained model on one training batch,
  under torch's FLOP counter (``torch.utils.flop_counter.FlopCounterMode``: every matmul,
  convolution and attention the step runs, a method's own included, so DoRA's weight-norm work
  and VeRA's scaled projections count), divided by the batch's tokens, padding included. Counted
  once, before training, on a batch of the first training examples, with every random-number
  generator's state put back after it, so that the run's numbers are the same with or without it.
- **Achieved.** FLOPs per token times the run's training tokens per second (real tokens: padding
  is compute the run spent on nothing, so it lowers MFU).
- **Peak.** The datasheet's dense bf16 peak for a known GPU under bf16 autocast, else a measured
  peak: the best rate of square matmuls in the run's precision on this device, measured once per
  device, precision and thread count and cached (``$PEFT_HARNESS_CACHE/peak_tflops.json``). Both
  are recorded; ``mfu`` is over the datasheet peak where there is one (``peak_source``).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from pathlib import Path

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from NVIDIA's datasheets, matched in this order
# against torch.cuda.get_device_name(): the first pattern in the name wins ("L40" before "L4"); None:
# no datasheet figure (the A10G, AWS's A10), so the peak is measured.
DATASHEET_BF16_TFLOPS: tuple[tuple[str, float | None], ...] = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200 NVL", 835.0), ("H200", 989.4),
    ("A100", 312.0), ("L40S", 362.1), ("L40", 181.0), ("L4", 121.0), ("A10G", None), ("A10", 125.0),
)


def datasheet_tflops(device_name: str, bf16: bool) -> float | None:
    """The datasheet's dense bf16 peak of a known GPU (None: unknown, or not a bf16 run)."""
    if not bf16:
        return None
    return next((peak for pattern, peak in DATASHEET_BF16_TFLOPS if pattern in device_name), None)


def device_name(device) -> str:
    """The GPU's name, or the CPU's model name with the threads torch uses."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from harness.device import cpu_model

    return f"{cpu_model() or 'cpu'} ({torch.get_num_threads()} threads)"


def _cache() -> Path:
    from harness.paths import cache_dir

    return cache_dir() / "peak_tflops.json"


def measured_tflops(device, bf16: bool, size: int | None = None, seconds: float = 0.5) -> float:
    """The best rate (TFLOP/s) of ``size``-square matmuls on ``device`` in the run's precision,
    over about ``seconds``; cached per device name, precision and thread count."""
    import torch

    from harness.device import sync

    key = f"{device_name(device)}|{'bf16' if bf16 else 'fp32'}"
    try:
        cached = json.loads(_cache().read_text())
    except (OSError, ValueError):
        cached = {}
    if key in cached:
        return float(cached[key])
    size = size or (8192 if device.type == "cuda" else 1024)
    dtype = torch.bfloat16 if bf16 else torch.float32
    generator = torch.Generator(device=device).manual_seed(0)  # the run's own RNG is left alone
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    best, spent = 0.0, 0.0
    a @ b  # warm-up
    while spent < seconds:
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        took = time.perf_counter() - start
        spent += took
        best = max(best, 2 * size ** 3 / took / 1e12)
    cached[key] = best
    try:
        _cache().parent.mkdir(parents=True, exist_ok=True)
        tmp = _cache().with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cached, indent=1, sort_keys=True))
        tmp.replace(_cache())
    except OSError:
        pass  # a cache that cannot be written only costs time
    return best


def _attention_flops(query_shape, key_shape, value_shape) -> int:
    """Forward FLOPs of attention: the scores (Q·Kᵀ) and the weighted sum (·V), over every query
    and key position (a causal mask's skipped half is counted, as torch counts CUDA's kernels);
    the query's heads (grouped-query attention shares keys, not work)."""
    b, h, s_q, d = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * b * h * s_q * s_k * d + 2 * b * h * s_q * s_k * d_v


def _register_cpu_attention() -> None:
    """torch's FLOP counter knows CUDA's fused attention kernels but not the CPU's flash attention,
    which transformers' SDPA attention runs on a CPU: without this, a CPU run's attention would
    count as free. The backward pass is twice the forward (gradients of Q, K, V and the scores)."""
    import torch
    from torch.utils.flop_counter import flop_registry, register_flop_formula

    aten = torch.ops.aten
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if forward is not None and forward not in flop_registry:
        @register_flop_formula(forward)
        def _cpu_attention(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return _attention_flops(query_shape, key_shape, value_shape)
    if backward is not None and backward not in flop_registry:
        @register_flop_formula(backward)
        def _cpu_attention_backward(grad_out_shape, query_shape, key_shape, value_shape, *args,
                                    out_shape=None, **kwargs) -> int:
            return 2 * _attention_flops(query_shape, key_shape, value_shape)


def _register_4bit_matmuls() -> None:
    """bitsandbytes' fused 4-bit matmuls (a 4-bit base's forward pass on a CPU, and a batch of one
    on a GPU) are not aten ops, so torch's counter would count a QLoRA forward as free: each is
    2 FLOPs per output element per input feature, as a dense matmul of the same shape."""
    import sys

    if "bitsandbytes" not in sys.modules:  # no 4-bit model in this process
        return
    import torch
    from torch.utils.flop_counter import flop_registry, register_flop_formula

    for name in ("gemm_4bit", "gemv_4bit"):
        op = getattr(torch.ops.bitsandbytes, name, None)
        if op is None or op in flop_registry or op.default in flop_registry:
            continue

        @register_flop_formula(op)
        def _matmul_4bit(a_shape, *args, out_shape=None, **kwargs) -> int:
            return 2 * math.prod(out_shape) * a_shape[-1]


def step_flops(adapted, kind, batch: dict, device, bf16: bool) -> int:
    """FLOPs of one forward and backward pass of the trained model on ``batch`` (the trainer's own
    loss, under the run's autocast); gradients are cleared after and the model's mode restored."""
    from torch.utils.flop_counter import FlopCounterMode

    from harness.device import autocast_context, to_device
    from harness.training.steps import training_loss

    _register_cpu_attention()
    _register_4bit_matmuls()
    model = adapted.model
    was_training = model.training
    model.train()
    try:
        with FlopCounterMode(display=False) as counter:
            with autocast_context(device, bf16):
                loss = training_loss(adapted, kind, to_device(batch, device))
            loss.backward()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return int(counter.get_total_flops())


def batch_tokens(batch: dict) -> int:
    """The tokens a batch computes on, padding included."""
    ids = batch.get("input_ids")
    return int(ids.numel()) if ids is not None else int(batch["attention_mask"].numel())


@contextlib.contextmanager
def random_state_kept():
    """Every random-number generator a step may draw from (Python's, numpy's, torch's CPU and CUDA
    ones) as it was before the block: dropout in a counted step changes nothing after it."""
    import numpy as np
    import torch

    saved = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
             torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])
        if saved[3] is not None:
            torch.cuda.set_rng_state_all(saved[3])


def count_training_step(adapted, kind, examples: list[dict], collate, batch_size: int, device,
                        bf16: bool) -> tuple[int, int]:
    """(FLOPs, tokens padding included) of one training step on the first ``batch_size`` training
    examples, collated as training batches are; nothing the run draws afterwards changes."""
    batch = collate(examples[:batch_size])
    with random_state_kept():
        counted = step_flops(adapted, kind, batch, device, bf16)
    return counted, batch_tokens(batch)


def mfu_fields(counted: tuple[int, int] | None, tokens_per_s: float | None, device, bf16: bool,
               processes: int = 1) -> dict:
    """The run's FLOPs per token, achieved TFLOP/s, the device's peaks and MFU (``processes``: a
    data-parallel run's processes, whose tokens per second are summed, so its peak is theirs
    together). Nothing where nothing was counted (a run sharded by FSDP)."""
    if counted is None:
        return {}
    per_token = counted[0] / max(counted[1], 1)
    sheet = datasheet_tflops(device_name(device), bf16)
    measured = measured_tflops(device, bf16)
    achieved = per_token * tokens_per_s / 1e12 if tokens_per_s else None
    peak = (sheet or measured) * processes
    return {"train_flops_per_token": float(per_token), "achieved_tflops": achieved,
            "peak_tflops_measured": measured, "peak_tflops_datasheet": sheet,
            "peak_source": "datasheet" if sheet else "measured",
            "mfu": achieved / peak if achieved is not None and peak > 0 else None}


class BudgetError(ValueError):
    """A FLOPs budget smaller than one training step; the message is one line."""


def steps_in_budget(budget: float, step: int) -> int:
    """The optimizer steps whose FLOPs (``step`` each, counted) fit in ``budget``."""
    steps = int(budget // step)
    if steps < 1:
        raise BudgetError(f"trainer.flops_budget={budget:.3g} is less than one training step of this run "
                          f"({step:.3g} FLOPs); give at least that")
    return steps


def budget_fields(counted: tuple[int, int] | None, steps: int, budget: float | None) -> dict:
    """The training FLOPs the run spent (its counted step times its optimizer steps) and its
    FLOPs budget, if it had one."""
    if counted is None:
        return {}
    return {"train_flops": float(counted[0]) * steps, "flops_budget": budget}
