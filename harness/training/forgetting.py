"""Forgetting: how much worse a causal language model predicts general text after training than
before, as peft's method comparison measures it (``method_comparison/MetaMathQA/run.py``: the
mean per-token loss on held-out general text after training minus before).

The loss is the mean over every predicted token of every passage (pooled, not per passage), each
token predicted from the passage's tokens before it (the first token of a passage, predicted
from nothing, is not counted); passages are cut to ``max_tokens`` tokens. The model runs as the
run's own evaluation does: in eval mode, without gradients, under the run's precision (bf16
autocast or fp32), in batches whose vocabulary-sized logits stay under :data:`LOGITS_BYTES` (so
the probe does not raise the run's peak memory). Every random-number generator is put back
after it (:func:`harness.training.flops.random_state_kept`) and the model's mode restored, so a
run measures the same numbers with or without it.
"""
from __future__ import annotations

import torch

from harness.device import autocast_context, to_device
from harness.tasks.scoring.lm import IGNORE, answer_nll
from harness.training.flops import random_state_kept

LOGITS_BYTES = 64 * 2**20  # fp32 logits of one probe batch, at most (one passage if it is larger)


def encode_passages(tokenizer, passages: list[str], max_tokens: int) -> list[list[int]]:
    """Each passage's token ids (the tokenizer's special tokens included), cut to ``max_tokens``;
    passages of fewer than two tokens (nothing to predict) are left out."""
    ids = [tokenizer(text, truncation=True, max_length=max_tokens)["input_ids"] for text in passages]
    return [row for row in ids if len(row) >= 2]


def _vocab_size(model) -> int:
    config = getattr(model, "config", None)
    return int(getattr(config, "vocab_size", 0) or 0) or 2**17


def _batch(rows: list[list[int]], pad_id: int) -> tuple[dict, torch.Tensor]:
    """Rows padded on the right (causal attention never lets a real token see padding); labels
    are the tokens themselves, -100 on padding."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask, "use_cache": False}, ids.masked_fill(mask == 0, IGNORE)


@torch.no_grad()
def mean_token_loss(model, rows: list[list[int]], pad_id: int, device, bf16: bool,
                    max_batch: int = 64) -> tuple[float, int]:
    """(mean loss per predicted token, tokens predicted) of ``model`` on the token rows, longest
    rows first, at most ``max_batch`` rows a batch and :data:`LOGITS_BYTES` of logits."""
    if not rows:
        raise ValueError("no probe passage has two tokens or more")
    order = sorted(rows, key=len, reverse=True)
    per_row = len(order[0]) * _vocab_size(model) * 4
    size = max(1, min(max_batch, LOGITS_BYTES // max(per_row, 1)))
    was_training = model.training
    total, count = torch.zeros((), dtype=torch.float64), 0
    model.eval()
    try:
        with random_state_kept():
            for start in range(0, len(order), size):
                inputs, labels = _batch(order[start:start + size], pad_id)
                with autocast_context(device, bf16):
                    nll, kept = answer_nll(model, to_device(inputs, device), labels.to(device))
                total += nll[kept].double().sum().cpu()
                count += int(kept.sum())
    finally:
        model.train(was_training)
    return float(total / count), count
