"""Tokenization of a split, a count of what was cut (:mod:`harness.tasks.cutting` cuts), and a
disk cache keyed by (data, tokenizer, settings) so the runs of a sweep tokenize only once.

What a split becomes (one sequence per text, or one per (context, choice) pair) and how a batch
is padded is the task type's (``TaskType.encode``, ``TaskType.collator``); this module holds the
helpers they share and the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from harness.tasks.cutting import Encoded
from harness.tasks.data import Split

if TYPE_CHECKING:
    from harness.tasks.types import TaskType


def encode_split(split: Split, tokenizer, max_length: int, strategy: str,
                 task_type: "TaskType") -> Encoded:
    """Token ids per example as the task type encodes them (``TaskType.encode``: one sequence per
    text, or one per (context, choice) pair), with each example's task id in multi-task data.

    ``task_type``: a :class:`~harness.tasks.types.TaskType` (``types.task_type(name)`` gives one).
    """
    return task_type.encode(split, tokenizer, max_length, strategy)


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # the vocabulary and rules, not the last call's truncation/padding
        spec = json.loads(backend.to_str())
        text = json.dumps({k: v for k, v in spec.items() if k not in ("truncation", "padding")},
                          sort_keys=True)
    else:
        text = f"{tokenizer.name_or_path}:{len(tokenizer)}"
    extra = f"{tokenizer.padding_side}:{tokenizer.pad_token_id}:{type(tokenizer).__name__}"
    template = getattr(tokenizer, "chat_template", None)  # prompts render through it: an edited
    if template:  # template (a model folder's tokenizer_config.json) must not reuse old tokens
        extra += f":{json.dumps(template, sort_keys=True)}"
    return hashlib.sha256((text + extra).encode()).hexdigest()[:16]


def cache_key(split: Split, tokenizer, max_length: int, strategy: str,
              task_type: "TaskType") -> str:
    """A hash of the split's data, the tokenizer, the settings and the task type's name (two
    types never share a cache file)."""
    kind = task_type
    data = json.dumps([split.texts, split.labels, split.choices, split.task_ids], ensure_ascii=False)
    h = hashlib.sha256(data.encode())
    h.update(f"|{tokenizer_fingerprint(tokenizer)}|{max_length}|{strategy}|{kind.name}|v3".encode())
    h.update(kind.settings().encode())  # a prompt task's templates and answer words
    return h.hexdigest()[:24]


def encode_cached(split: Split, tokenizer, max_length: int, strategy: str, folder: Path | None,
                  task_type: "TaskType") -> Encoded:
    """:func:`encode_split`, read from / written to ``folder`` when one is given."""
    kind = task_type
    if folder is None:
        return encode_split(split, tokenizer, max_length, strategy, kind)
    path = Path(folder) / f"{cache_key(split, tokenizer, max_length, strategy, kind)}.json"
    if path.is_file():  # plain JSON: a cache file can hold nothing but token ids
        payload = json.loads(path.read_text())
        return Encoded(payload["examples"], int(payload["n_truncated"]), cached=True,
                       tokens_cut=[int(n) for n in payload.get("tokens_cut", [])])
    encoded = encode_split(split, tokenizer, max_length, strategy, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"examples": encoded.examples, "n_truncated": encoded.n_truncated,
                               "tokens_cut": encoded.tokens_cut}))
    os.replace(tmp, path)
    return encoded


# A split whose share of cut examples is above this has its run's numbers flagged in the report.
CUT_FLAG_SHARE = 0.05


def cut_summary(encoded: dict[str, Encoded], max_length: int, strategy: str, turns: bool = False) -> dict:
    """Per split: examples, how many were cut and by how many tokens (median, largest), for the
    run's details and the report; ``strategy`` is the side that was kept; ``turns``: the examples
    are conversations, which lose whole turns first (:mod:`harness.tasks.chat`)."""
    import statistics

    splits = {}
    for name, enc in encoded.items():
        lost = enc.tokens_cut
        splits[name] = {"examples": len(enc.examples), "cut": enc.n_truncated,
                        "tokens_cut_median": statistics.median(lost) if lost else 0,
                        "tokens_cut_max": max(lost, default=0)}
    return {"max_length": max_length, "strategy": strategy, "splits": splits, **({"turns": True} if turns else {})}


def cut_line(summary: dict) -> str | None:
    """One console line on what was cut, split by split, by how much and what to do; None when
    nothing was."""
    sides = {"head": "start", "tail": "end", "head_tail": "start and end"}
    cut = {name: s for name, s in summary["splits"].items() if s["cut"]}
    if not cut:
        return None
    counts = ", ".join(f"{name} {s['cut']} of {s['examples']}" for name, s in cut.items())
    median = max(s["tokens_cut_median"] for s in cut.values())
    most = max(s["tokens_cut_max"] for s in cut.values())
    flag = any(s["cut"] / max(s["examples"], 1) > CUT_FLAG_SHARE for s in cut.values())
    side = sides.get(summary["strategy"], summary["strategy"])
    kept = (f"its latest turns (the earliest dropped whole first) and the {side} of its last turn"
            if summary.get("turns") else f"its {side}")  # conversations lose whole turns first
    return (f"examples longer than task.max_length={summary['max_length']} were cut, each keeping "
            f"{kept} (task.truncation={summary['strategy']}): "
            f"{counts}; by {median:g} tokens (median) and at most {most}; task.max_length="
            f"{summary['max_length'] + most} would keep them whole"
            + (f". Over {CUT_FLAG_SHARE:.0%} of a split: the report flags this run" if flag else ""))


class ChoiceCollator:
    """Pads (batch, choices, length) to the longest sequence in the batch."""

    def __init__(self, tokenizer) -> None:
        from transformers import DataCollatorWithPadding  # heavy: imported when a run batches

        self.pad = DataCollatorWithPadding(tokenizer, padding="longest")

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        n = len(examples[0]["input_ids"])
        per_choice = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in examples[0]]
        flat = [{k: ex[k][j] for k in per_choice} for ex in examples for j in range(n)]
        batch = {k: v.view(len(examples), n, -1) for k, v in self.pad(flat).items()}
        for key in set(examples[0]) - set(per_choice):  # one value per example: labels, task_ids
            batch[key] = torch.tensor([ex[key] for ex in examples])
        return batch
