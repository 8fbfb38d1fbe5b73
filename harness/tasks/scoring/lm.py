"""The torch side of prompt tasks (:mod:`harness.tasks.prompts`): padded batches, the loss on
answer tokens, greedy generation, candidate scoring, and generation speed.

Prompt+answer rows are padded on the right, so no position attends to padding alone (padded on
the left, training on an H100 under CUDA's fused attention hit NaN losses); the logits of the
positions that predict an answer token (``logits_to_keep`` as indices, applied by the model
itself) are all the answers' loss needs, so a prompt never produces vocabulary-sized logits. Prompts
to generate from are padded on the left, as generation needs. Position ids count real tokens only.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import time

import torch
import torch.nn.functional as F

from harness.tasks.scoring.chunked import chunked_nll, hidden_states_out, output_head

IGNORE = -100


class PromptCollator:
    """Pads prompt+answer rows on the right: ``input_ids``, ``attention_mask``, ``position_ids``,
    ``labels`` (-100 on the prompt and the padding); the prompts alone padded on the left
    (``prompt_ids``, ``prompt_mask``, for generation); the rows' plain values (``answer``,
    ``options``) as lists."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = int(pad_id)

    def pad(self, rows: list[list[int]], left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            if row:
                span = slice(width - len(row), width) if left else slice(0, len(row))
                ids[i, span] = torch.tensor(row)
                mask[i, span] = 1
        return ids, mask

    def __call__(self, examples: list[dict]) -> dict:
        ids, mask = self.pad([e["input_ids"] for e in examples])
        labels = ids.masked_fill(mask == 0, IGNORE)
        for i, e in enumerate(examples):
            labels[i, :e["n_prompt"]] = IGNORE
        prompt_ids, prompt_mask = self.pad([e["input_ids"][:e["n_prompt"]] for e in examples], left=True)
        batch = {"input_ids": ids, "attention_mask": mask, "position_ids": positions(mask),
                 "labels": labels, "prompt_ids": prompt_ids, "prompt_mask": prompt_mask}
        for key in ("answer", "options"):
            if key in examples[0]:
                batch[key] = [e[key] for e in examples]
        if "task_ids" in examples[0]:
            batch["task_ids"] = torch.tensor([e["task_ids"] for e in examples])
        return batch


class PackedPromptCollator(PromptCollator):
    """A training batch without padding: its prompt+answer rows concatenated into one row, the
    positions restarting at each (given no attention mask, transformers finds the packed
    sequences from the positions and keeps attention within each), labels -100 on every prompt.
    The loss over the answer tokens is the padded batch's. ``attention_mask`` (all ones) is there
    to count tokens, not for the model (``packed``); ``n_rows`` counts the examples."""

    def __call__(self, examples: list[dict]) -> dict:
        ids, labels, where = [], [], []
        for e in examples:
            row = list(e["input_ids"])
            ids += row
            labels += [IGNORE] * e["n_prompt"] + row[e["n_prompt"]:]
            where += range(len(row))
        batch = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones((1, len(ids)), dtype=torch.long),
                 "position_ids": torch.tensor([where]), "labels": torch.tensor([labels]),
                 "packed": True, "n_rows": len(examples)}
        return batch


def positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _unwrapped(model):
    """The model inside data-parallel wrappers (DDP, accelerate's)."""
    while isinstance(getattr(model, "module", None), torch.nn.Module):
        model = model.module
    return model


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def keeps_logits(model) -> bool:
    """Whether the model's forward takes ``logits_to_keep`` (every transformers causal LM does)."""
    return _takes_logits_to_keep(type(_base(model)))


@functools.lru_cache(maxsize=None)
def _takes_logits_to_keep(cls: type) -> bool:  # read once per model class, not per batch
    return "logits_to_keep" in inspect.signature(cls.forward).parameters


def virtual_tokens(model) -> int:
    """How many positions a soft prompt puts before the inputs (peft's prompt tuning and
    P-tuning prepend trained embeddings: the logits are that much longer); 0 otherwise (prefix
    tuning's virtual tokens are keys and values, not positions)."""
    config = getattr(model, "active_peft_config", None)
    if config is None or not getattr(config, "is_prompt_learning", False):
        return 0
    return 0 if str(config.peft_type).endswith("PREFIX_TUNING") else int(config.num_virtual_tokens)


def answer_nll(model, inputs: dict, labels: torch.Tensor,
               chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token negative log-likelihood of the answer tokens (0 elsewhere) and their mask, shape
    (batch, k): the k positions that predict an answer token in some row of the batch, the only
    positions whose logits the model computes (``logits_to_keep`` as indices). ``chunk``
    (``trainer.loss_chunk_tokens``): the output layer and the loss run on this many of those
    positions at a time, each chunk's logits recomputed in the backward pass instead of kept
    (:func:`chunked_nll`), so that no more than one chunk's vocabulary-sized logits exist at once."""
    answer = labels != IGNORE
    positions = answer[:, 1:].any(0).nonzero().squeeze(-1)  # position p predicts token p + 1
    shifted = positions + virtual_tokens(model)  # a soft prompt's positions come first
    targets = labels[:, positions + 1]
    head = output_head(_base(_unwrapped(model))) if chunk else None
    with (hidden_states_out(head) if head is not None else contextlib.nullcontext()):
        if keeps_logits(model):
            out = model(**inputs, logits_to_keep=shifted).logits
        else:
            out = model(**inputs).logits[:, shifted]
    if head is not None:  # ``out`` holds the hidden states the output layer would have taken
        return chunked_nll(head, out, targets, chunk, IGNORE), (targets != IGNORE)
    nll = F.cross_entropy(out.float().reshape(-1, out.shape[-1]), targets.reshape(-1),
                          ignore_index=IGNORE, reduction="none")
    return nll.view(targets.shape), (targets != IGNORE)


@torch.no_grad()
def generate(model, batch: dict, tokenizer, max_new_tokens: int, eos_id: int) -> list[str]:
    """Greedy completions of the batch's prompts, decoded without special tokens."""
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                              eos_token_id=eos_id, pad_token_id=tokenizer.pad_token_id
                              if tokenizer.pad_token_id is not None else eos_id)
    extra = {"task_ids": batch["task_ids"]} if "task_ids" in batch else {}
    out = model.generate(input_ids=batch["prompt_ids"], attention_mask=batch["prompt_mask"],
                         generation_config=config, **extra)
    new = out[:, batch["prompt_ids"].shape[1]:]
    return tokenizer.batch_decode(new, skip_special_tokens=True)


@torch.no_grad()
def option_scores(model, batch: dict, model_inputs, pad_id: int) -> list[list[float]]:
    """Log-likelihood of each row's candidate answers after its prompt (summed over the answer's
    tokens and its end token), scored in chunks of as many sequences as the batch has rows."""
    device = batch["input_ids"].device
    pad = PromptCollator(pad_id)
    seqs, owners = [], []
    for i, (prompt, mask, options) in enumerate(zip(batch["prompt_ids"], batch["prompt_mask"],
                                                    batch["options"])):
        p = prompt[mask.bool()].tolist()
        for option in options:
            seqs.append({"input_ids": p + list(option), "n_prompt": len(p)})
            owners.append(i)
    scores: list[list[float]] = [[] for _ in batch["options"]]
    size = max(len(batch["options"]), 1)
    for start in range(0, len(seqs), size):
        chunk = pad(seqs[start:start + size])
        inputs = model_inputs({k: v.to(device) for k, v in chunk.items()
                               if k in ("input_ids", "attention_mask", "position_ids")})
        nll, _ = answer_nll(model, inputs, chunk["labels"].to(device))
        for owner, value in zip(owners[start:start + size], (-nll.sum(-1)).tolist()):
            scores[owner].append(value)
    return scores


class _FirstToken:
    """A generation streamer that notes when the first new token arrives (``put`` is called
    with the prompt first, then with each step's tokens)."""

    def __init__(self) -> None:
        self.calls, self.first = 0, None

    def put(self, value) -> None:
        self.calls += 1
        if self.calls == 2:
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


@torch.no_grad()
def generation_speed(model, batch: dict, tokenizer, new_tokens: int, repeats: int,
                     device: torch.device, bf16: bool) -> dict[str, float]:
    """Generation speed on the batch's prompts, ``new_tokens`` greedy steps per prompt with the
    end token suppressed (so every row generates them all), timed ``repeats`` times after one
    untimed warm-up: ``gen_ttft_ms``, the median time to the first new token (the prefill), and
    ``gen_tokens_per_s``, new (non-padding) tokens per second over the whole call, median."""
    from transformers import GenerationConfig

    from harness.device import autocast_context, sync

    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    inputs = {"input_ids": batch["prompt_ids"].to(device), "attention_mask": batch["prompt_mask"].to(device)}
    config = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                              num_beams=1, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
    first, total = [], []
    with autocast_context(device, bf16):
        model.generate(**inputs, generation_config=config)
        for _ in range(repeats):
            streamer = _FirstToken()
            sync(device)
            t0 = time.perf_counter()
            model.generate(**inputs, generation_config=config, streamer=streamer)
            sync(device)
            total.append(time.perf_counter() - t0)
            first.append(streamer.first - t0)
    rows = inputs["input_ids"].shape[0]
    return {"gen_ttft_ms": 1000.0 * sorted(first)[len(first) // 2],
            "gen_tokens_per_s": rows * new_tokens / sorted(total)[len(total) // 2]}
