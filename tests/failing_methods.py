"""Methods that fail on purpose, registered for tests only: they provoke each kind of failure.

A run selects one with ``method.builder=<name>`` (``method.name`` too, to record it under that
name): ``method=lora``'s config says ``builder: lora``, so the name alone does not pick the code.
"""
from __future__ import annotations

import torch

from harness.methods import METHODS, register_method
from harness.methods.lora import build as build_lora


class Boom(RuntimeError):
    pass


if "raises_test" not in METHODS:
    @register_method("raises_test", four_bit=True)
    def build_raising(model, method, ctx):
        raise Boom("this method always fails")

    @register_method("nan_test", four_bit=True)
    def build_nan(model, method, ctx):
        """LoRA whose weights turn NaN after the first optimizer step, so step 2's loss is NaN."""
        adapted = build_lora(model, method, ctx)

        def poison(step: int, total: int) -> None:
            with torch.no_grad():
                for p in adapted.trainable_parameters():
                    p.fill_(float("nan"))

        adapted.after_optimizer_step = poison
        return adapted

    @register_method("nan_last_test", four_bit=True)
    def build_nan_last(model, method, ctx):
        """LoRA whose weights turn NaN at the last optimizer step: every loss it computes is finite."""
        adapted = build_lora(model, method, ctx)

        def poison(step: int, total: int) -> None:
            if step == total:
                with torch.no_grad():
                    for p in adapted.trainable_parameters():
                        p.fill_(float("nan"))

        adapted.after_optimizer_step = poison
        return adapted

    @register_method("oom_test", four_bit=True)
    def build_oom(model, method, ctx):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    @register_method("second_rank_fails_test", four_bit=True)
    def build_second_rank_fails(model, method, ctx):
        """LoRA that fails in the second process of a data-parallel run only, at its first step."""
        import os

        adapted = build_lora(model, method, ctx)

        def fail(step: int, total: int) -> None:
            if os.environ.get("RANK") == "1":
                raise Boom("the second process failed")

        adapted.after_optimizer_step = fail
        return adapted
