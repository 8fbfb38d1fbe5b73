"""The ``choice`` prompt task (:mod:`harness.tasks.prompts` has the shared machinery): every
candidate answer is scored by the log-likelihood a causal LM gives it (and its end token) after
the prompt, the highest wins, as lm-evaluation-harness scores multiple choice. Candidates are the
label names (or ``task.label_words``), or a ``choices`` column per row (CaseHOLD), whose label is
then the index of the right one. Trained on the right answer with the answer-only loss.
"""
from __future__ import annotations

import json

from harness.tasks.prompts import PromptTask
from harness.tasks.types import TASK_TYPES


@TASK_TYPES.register("choice")
class Choice(PromptTask):
    name = "choice"
    optional_columns = ("choices",)
    candidates: list[str] | None = None  # shared candidates (label words); None: per row

    def encode_labels(self, frame, cfg):
        if "choices" in frame.columns:  # a list of candidate answers per row: the label is an index
            from harness.tasks.multiple_choice import MultipleChoice

            self.candidates = None
            return MultipleChoice().encode_labels(frame, cfg)
        names, encode = super().encode_labels(frame, cfg)
        self._check_words(names, cfg)
        self.candidates = [self.answer_text(n) for n in names]
        return names, encode

    def settings(self) -> str:
        return super().settings() + json.dumps(self.candidates)

    def encode_examples(self, split, tokenizer, max_length, strategy):
        from harness.tasks.encoding import Encoded

        rows = split.choices or [self.candidates] * len(split)
        options = [[self.answer_ids(tokenizer, c) for c in row] for row in rows]
        room = [min(max(len(c) for c in row), max_length // 2) for row in options]
        prompts, n_cut = self.prompts(tokenizer, split.texts, room, max_length, strategy)
        examples = []
        for p, row, label in zip(prompts, options, split.labels):
            row = [c[:max_length - len(p)] for c in row]  # an absurdly long candidate is cut
            right = row[label]
            examples.append({"input_ids": p + right, "attention_mask": [1] * (len(p) + len(right)),
                             "n_prompt": len(p), "answer": label, "options": row})
        return Encoded(examples, n_cut)

    def score_batch(self, model, batch):
        from harness.lm import option_scores

        scores = option_scores(model, batch, self.model_inputs, self.pad_id(self.tokenizer))
        # The right answer's score is its teacher-forced log-likelihood: the loss needs no pass of its own.
        answers = list(batch["answer"])
        loss = -sum(s[a] for s, a in zip(scores, answers))
        weight = sum(len(o[a]) for o, a in zip(batch["options"], answers))
        return loss, weight, [max(range(len(s)), key=s.__getitem__) for s in scores], answers

    def metrics(self, predictions, references, num_labels, labels=None):
        from harness.metrics import classification_metrics

        return classification_metrics(predictions, references, num_labels, labels)
