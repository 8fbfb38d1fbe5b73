"""Dropout masks drawn fast on CPU (``trainer.dropout_rng=numpy``).

torch draws a CPU dropout mask one element at a time from its Mersenne Twister, under a lock, on
one thread, except on Intel CPUs, where it hands the draw to MKL. On other CPUs those draws take
more than a third of a training step of the default task (``experiments/bench_dropout.py``).
With ``numpy`` each mask comes from numpy's PCG64 instead, 32 random bits per element, an element
kept where its bits are at or above ``round(p * 2**32)`` (its drop probability is ``p`` to within
2**-33), then scaled by ``1 / (1 - p)`` as torch's ``native_dropout`` does. What is dropped, how
often, and the gradient (the same mask, the same scale) are dropout's; which elements a given seed
drops differs from torch's, so it is a setting in the run's identity.

It replaces ``torch.nn.functional.dropout`` (which ``nn.Dropout``, peft's ``lora_dropout`` and
transformers' eager attention call) while a run trains, for CPU tensors; CUDA tensors, evaluation
and ``p`` of 0 or 1 go to torch's own. Attention dropout inside ``scaled_dot_product_attention``
is drawn by torch.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

# Mixed into the run's seed so that the masks' stream is not the data order's or any other's.
_STREAM = 0xD20F


class MaskSource:
    """Dropout masks from a PCG64 stream seeded by ``seed`` (and the process's ``rank``)."""

    def __init__(self, seed: int, rank: int = 0) -> None:
        self.bits = np.random.PCG64(np.random.SeedSequence([int(seed), _STREAM, int(rank)]))

    def keep(self, shape: torch.Size, p: float) -> torch.Tensor:
        """A boolean mask of ``shape``: True where an element is kept (probability ``1 - p``)."""
        n = math.prod(shape)
        words = self.bits.random_raw((n + 1) // 2)  # 64 random bits give two elements 32 each
        threshold = np.uint32(min(round(p * 2 ** 32), 2 ** 32 - 1))
        return torch.from_numpy(words.view(np.uint32)[:n] >= threshold).view(shape)


@contextlib.contextmanager
def numpy_dropout(seed: int, rank: int = 0):
    """``torch.nn.functional.dropout`` draws its CPU masks from a :class:`MaskSource` inside."""
    functional = torch.nn.functional
    original = functional.dropout
    source = MaskSource(seed, rank)

    @torch.compiler.disable  # numpy's draw is not traced: a compiled forward calls it as it is
    def dropout(input, p=0.5, training=True, inplace=False):  # noqa: A002 - torch's signature
        if not training or p <= 0.0 or p >= 1.0 or input.device.type != "cpu":
            return original(input, p, training, inplace)
        keep = source.keep(input.shape, p)
        scale = 1.0 / (1.0 - p)
        if inplace:
            return input.mul_(keep).mul_(scale)
        return input.mul(keep).mul_(scale)

    functional.dropout = dropout
    try:
        yield source
    finally:
        functional.dropout = original


def dropout_context(t, seed: int, rank: int = 0):
    """The context a run trains in for its ``trainer.dropout_rng``: torch's own draws, or numpy's."""
    choice = getattr(t, "dropout_rng", "torch")
    if str(getattr(choice, "value", choice)) == "numpy":
        return numpy_dropout(seed, rank)
    return contextlib.nullcontext()
