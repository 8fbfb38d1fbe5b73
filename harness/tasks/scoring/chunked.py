"""A causal LM's answer loss a chunk of positions at a time (``trainer.loss_chunk_tokens``).

The model runs with its output layer passing its input through, so that it returns the hidden
states at the answer positions; the output layer and the cross-entropy then run on ``chunk`` of
those positions at a time, each chunk under torch's activation checkpointing (its logits freed
after the forward pass and recomputed for the backward pass). The largest logits that exist at
once are one chunk's, not the batch's: for long answers over a vocabulary of 128k tokens, the
float32 logits of one pass take more memory than a small model's weights. The same idea as
torchtune's chunked output loss and Liger's fused linear cross-entropy, in plain torch so that it
runs on CPU and on any GPU alike.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


def output_head(base) -> torch.nn.Module:
    """The output layer of ``base`` (the transformers model; peft's wrapper of the layer where an
    adapter targets it); ConfigError for a model that transforms the logits after it (Gemma 2's
    soft-capping, Cohere's logit scale), which a chunked loss would leave out."""
    from harness.errors import ConfigError

    config = getattr(base, "config", None)
    after = [k for k in ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")
             if getattr(config, k, None) not in (None, 1, 1.0)]
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if head is None or after:
        raise ConfigError(f"trainer.loss_chunk_tokens computes the logits from {type(base).__name__}'s "
                          f"output layer" + (f", but the model changes them after it ({', '.join(after)})"
                                             if after else ", which it does not expose")
                          + "; use trainer.loss_chunk_tokens=null")
    return head


@contextlib.contextmanager
def hidden_states_out(head: torch.nn.Module):
    """The output layer passes its input through while inside: the model's "logits" are then the
    hidden states at the kept positions."""
    own = head.__dict__.get("forward")  # a forward set on the instance (accelerate's dispatch hooks)
    head.forward = lambda hidden, *args, **kwargs: hidden
    try:
        yield
    finally:
        if own is None:
            del head.forward  # the class's own forward again
        else:
            head.forward = own


def _chunk_nll(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, ignore: int) -> torch.Tensor:
    logits = head(hidden)
    return F.cross_entropy(logits.float(), targets, ignore_index=ignore, reduction="none")


def chunked_nll(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, chunk: int,
                ignore: int = -100) -> torch.Tensor:
    """The per-token loss of ``hidden`` (batch, k, width) against ``targets`` (batch, k), ``chunk``
    positions at a time; each chunk under torch's activation checkpointing, so that its logits are
    freed after the forward and recomputed for the backward (the same numbers as one pass, to
    float rounding; the output layer runs twice)."""
    from torch.utils.checkpoint import checkpoint

    flat, goal = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    parts = [checkpoint(_chunk_nll, head, flat[i:i + chunk], goal[i:i + chunk], ignore, use_reentrant=False)
             if torch.is_grad_enabled() else _chunk_nll(head, flat[i:i + chunk], goal[i:i + chunk], ignore)
             for i in range(0, goal.numel(), chunk)]
    return (torch.cat(parts) if parts else flat.new_zeros(0)).view(targets.shape)
