"""Prompt tasks for causal language models: ``generation`` and ``choice``.

Both feed a decoder a prompt (the text column, put into ``task.prompt_template`` and, when
``task.chat_template`` is on and the tokenizer has one, into its chat template as a user turn)
followed by an answer, and train with the loss on the answer's tokens only: the prompt and the
padding are masked out (label -100). The answer ends with the tokenizer's end-of-sequence token,
so the model learns where to stop. A long prompt is cut from the side ``task.truncation`` says
(by default its end is kept, where the question is; the text inside the template is cut, never
the template or the answer); cut prompts are counted, with the tokens each lost.

- ``generation`` (:mod:`harness.tasks.generation`): the answer is the label column (``task.label_words`` can map label names to
  answer texts). Evaluated by greedy generation: ``accuracy`` is exact match, ``normalized_match``
  ignores case, punctuation and runs of whitespace; ``eval_loss`` is the answer tokens' mean loss
  (teacher forced) and ``perplexity`` its exponential. When the answers form a closed set (at most
  ``MAX_ANSWER_CLASSES`` distinct), they are classes too: macro/micro-F1 over them, with one extra
  class for any other answer the model gives, and per-example predictions kept for paired tests.
  The majority baseline answers the most common training completion.
- ``choice``: every candidate answer is scored by the log-likelihood the model gives it (and its
  end token) after the prompt, the highest wins, as lm-evaluation-harness scores multiple choice.
  Candidates are the label names (or ``task.label_words``), or a ``choices`` column per row
  (CaseHOLD), whose label is the index of the right one. Trained on the right answer with the
  same loss; accuracy, F1 and the majority baseline as for classification.

Training and scoring rows are padded on the right, and the model computes logits only at the
positions that predict answer tokens (``logits_to_keep``): a long prompt costs no
vocabulary-sized logits. Prompts for generation are padded on the left (:mod:`harness.tasks.scoring.lm`).

With ``task.answer_pattern``, a generation task scores the final answer of each completion
(:mod:`harness.tasks.answers`): train on chains of thought, score the number they end with.
"""
from __future__ import annotations

import json

from harness.tasks.answers import final_answer
from harness.tasks.chat import conversation_prompts, render_conversation
from harness.tasks.types import TaskType

IGNORE = -100
MAX_ANSWER_CLASSES = 1000


class PromptTask(TaskType):
    causal_lm = True
    default_truncation = "tail"  # the question ends a prompt: keep it (task.truncation=auto)
    peft_task_type = "CAUSAL_LM"
    template: str | None = None
    chat = True
    system: str | None = None
    words: dict | None = None
    prefix = ""
    max_new: int | None = None
    pattern: str | None = None
    loss_chunk: int | None = None  # trainer.loss_chunk_tokens (harness.tasks.scoring.lm.answer_nll)
    conversation = False  # task.messages_column: each text is a conversation's prompt turns (JSON)

    def for_task(self, cfg) -> "PromptTask":
        self.template, self.chat = cfg.prompt_template, bool(cfg.chat_template)
        self.system, self.max_new = cfg.system_prompt, cfg.max_new_tokens
        self.words = {str(k): str(v) for k, v in (cfg.label_words or {}).items()}
        self.prefix = cfg.answer_prefix or ""
        self.pattern = getattr(cfg, "answer_pattern", None)
        self.conversation = bool(getattr(cfg, "messages_column", None))
        return self

    def final(self, text: str) -> str:
        """What a completion is scored on: its final answer (``task.answer_pattern``), or itself."""
        return final_answer(text, self.pattern)

    def settings(self) -> str:
        return json.dumps([self.template, self.chat, self.system, self.words, self.prefix]
                          + (["conversation"] if self.conversation else []), sort_keys=True)

    def _check_words(self, names: list[str], cfg) -> None:
        from harness.tasks.data import TaskDataError

        unknown = sorted(set(self.words or {}) - set(names))
        if unknown:
            raise TaskDataError(f"task {cfg.name}: task.label_words has label(s) {unknown[:5]} not in "
                                f"the data; its labels: {names[:20]}")

    def answer_text(self, name: str) -> str:
        return self.prefix + (self.words or {}).get(name, name)

    # --- tokens ---

    def render(self, tokenizer, text: str) -> list[int]:
        """The prompt's token ids: the template, the chat template when on and available; a
        conversation's turns (:mod:`harness.tasks.conversations`) through the chat template."""
        if self.conversation:
            return render_conversation(self, tokenizer, json.loads(text))
        prompt = self.template.replace("{text}", text) if self.template else text
        if self.uses_chat(tokenizer):
            turns = ([{"role": "system", "content": self.system}] if self.system else [])
            rendered = tokenizer.apply_chat_template(turns + [{"role": "user", "content": prompt}],
                                                     add_generation_prompt=True, tokenize=False)
            return tokenizer(rendered, add_special_tokens=False)["input_ids"]
        return tokenizer(prompt)["input_ids"]

    def uses_chat(self, tokenizer) -> bool:
        return bool(self.chat and getattr(tokenizer, "chat_template", None))

    @staticmethod
    def eos_id(tokenizer) -> int:
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        if eos is None:
            from harness.tasks.data import TaskDataError

            raise TaskDataError("the tokenizer has no end-of-sequence (or separator) token to end answers")
        return int(eos)

    def answer_ids(self, tokenizer, answer: str) -> list[int]:
        """The answer's tokens and the end token; in a chat, the answer opens the assistant's
        turn, so a leading space (there for a plain prompt's "...:") is dropped."""
        answer = answer.lstrip() if self.uses_chat(tokenizer) else answer
        return tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.eos_id(tokenizer)]

    def prompts(self, tokenizer, texts: list[str], room: list[int], max_length: int,
                strategy: str, lost: list[int] | None = None) -> tuple[list[list[int]], int]:
        """Each text's prompt ids, its text cut (from ``strategy``'s side) so that prompt plus an
        answer of ``room`` tokens fits ``max_length``; and how many were cut (``lost``, when
        given, gets the tokens each cut prompt was over)."""
        from harness.tasks.data import TaskDataError
        from harness.tasks.cutting import cut_to_fit

        if self.conversation:
            return conversation_prompts(self, tokenizer, texts, room, max_length, strategy, lost)
        overhead = len(self.render(tokenizer, ""))
        out, n_cut = [], 0
        for text, answer in zip(texts, room):
            budget = max_length - overhead - answer
            if budget < 1:
                raise TaskDataError(f"an answer of {answer} tokens leaves no room for the prompt in "
                                    f"task.max_length={max_length} (the template takes {overhead}); "
                                    f"raise task.max_length")
            ids = self.render(tokenizer, text)
            if lost is not None and len(ids) + answer > max_length:
                lost.append(len(ids) + answer - max_length)
            ids, cut = cut_to_fit(ids, lambda t: self.render(tokenizer, t), text, tokenizer, answer, max_length,
                                  budget, strategy)
            out.append(ids)
            n_cut += cut
        return out, n_cut

    def pad_id(self, tokenizer) -> int:
        return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id(tokenizer)

    def collator(self, tokenizer, packed: bool = False):
        """Padded batches; ``packed``: training batches as one padding-free row (trainer.packing)."""
        from harness.tasks.scoring.lm import PackedPromptCollator, PromptCollator

        return (PackedPromptCollator if packed else PromptCollator)(self.pad_id(tokenizer))

    def prepare(self, tokenizer, train_examples: list[dict]) -> None:
        self.tokenizer = tokenizer
        longest = max((len(e["input_ids"]) - e["n_prompt"] for e in train_examples), default=1)
        self.budget = self.max_new or longest  # the answer's tokens and its end

    # --- model ---

    def head_size(self, num_labels: int) -> int:
        return 0  # no head: the language model's own output layer

    def model_inputs(self, batch: dict) -> dict:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids", "task_ids")
                  if k in batch}
        if batch.get("packed"):  # no mask, no cache: the model finds the rows from the positions
            inputs.pop("attention_mask", None)
            inputs["use_cache"] = False
        return inputs

    def batch_loss(self, model, batch):
        from harness.tasks.scoring.lm import answer_nll

        nll, mask = answer_nll(model, self.model_inputs(batch), batch["labels"], self.loss_chunk)
        return nll.sum() / mask.sum().clamp(min=1)

    def teacher_forced(self, model, batch) -> tuple[float, float]:
        from harness.tasks.scoring.lm import answer_nll

        nll, mask = answer_nll(model, self.model_inputs(batch), batch["labels"], self.loss_chunk)
        return float(nll.sum()), float(mask.sum())

    def loss_metrics(self, mean_loss: float) -> dict[str, float]:
        import math

        return {"perplexity": math.exp(min(mean_loss, 700.0))}
