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
        """Candidates per row (a ``choices`` column; :func:`check_choices`), or the label names.
        Both are checked here, where the preflight and the run read them: a question with one
        candidate, or two the same, has nothing to pick and would score 1.0."""
        from harness.tasks.labels import name_of, refuse_long, refuse_nested

        if "choices" in frame.columns:  # a list of candidate answers per row: the label is an index
            from harness.tasks.multiple_choice import MultipleChoice

            self.candidates = None
            out = MultipleChoice().encode_labels(frame, cfg)
            refuse_long(frame, (max(map(str, row), key=len) for row in frame["choices"]), cfg, "longest choice")
            return out
        refuse_nested(frame, cfg)
        _refuse_missing_choices(frame, cfg)
        names, encode = super().encode_labels(frame, cfg)
        self._check_words(names, cfg)
        self.candidates = [self.answer_text(n) for n in names]
        _refuse_equal_candidates(names, self.candidates, cfg)
        refuse_long(frame, (self.answer_text(name_of(v)) for v in frame["label"]), cfg)
        return names, encode

    def settings(self) -> str:
        return super().settings() + json.dumps(self.candidates)

    def encode_examples(self, split, tokenizer, max_length, strategy):
        from harness.tasks.cutting import Encoded

        rows = split.choices or [self.candidates] * len(split)
        options = [[self.answer_ids(tokenizer, c) for c in row] for row in rows]
        room = [min(max(len(c) for c in row), max_length // 2) for row in options]
        lost: list[int] = []
        prompts, n_cut = self.prompts(tokenizer, split.texts, room, max_length, strategy, lost)
        examples = []
        for p, row, label in zip(prompts, options, split.labels):
            row = [c[:max_length - len(p)] for c in row]  # an absurdly long candidate is cut
            right = row[label]
            examples.append({"input_ids": p + right, "attention_mask": [1] * (len(p) + len(right)),
                             "n_prompt": len(p), "answer": label, "options": row})
        return Encoded(examples, n_cut, tokens_cut=lost)

    def score_batch(self, model, batch):
        from harness.tasks.scoring.lm import option_scores

        scores = option_scores(model, batch, self.model_inputs, self.pad_id(self.tokenizer))
        # The right answer's score is its teacher-forced log-likelihood: the loss needs no pass of its own.
        answers = list(batch["answer"])
        loss = -sum(s[a] for s, a in zip(scores, answers))
        weight = sum(len(o[a]) for o, a in zip(batch["options"], answers))
        return loss, weight, [max(range(len(s)), key=s.__getitem__) for s in scores], answers

    def metrics(self, predictions, references, num_labels, labels=None):
        from harness.tasks.scoring.metrics import classification_metrics

        return classification_metrics(predictions, references, num_labels, labels)


def _refuse_missing_choices(frame, cfg) -> None:
    """Without a choices column the candidates are the label names. A ``task.choices_column``
    the data lacks, or labels that are only the indices 0..n-1 with no ``task.label_words``
    for them, mean the per-row choices are missing: the model would pick between "0" and "1"."""
    from harness.tasks.data import TaskDataError
    from harness.tasks.labels import name_of

    column = getattr(cfg, "choices_column", "choices")
    if column != "choices":
        raise TaskDataError(f"task {cfg.name}: task.choices_column={column} is not a column of the data "
                            f"({frame.attrs.get('source', cfg.loader)})")
    found = {name_of(v) for v in frame["label"]}
    if not cfg.label_words and found == {str(i) for i in range(len(found))}:
        raise TaskDataError(f"task {cfg.name}: the data has no choices column (task.choices_column="
                            f"{column}) and its labels are the indices {sorted(found, key=int)[:5]}: give "
                            f"each row its choices, or name each label's answer in task.label_words")


def _refuse_equal_candidates(names: list[str], candidates: list[str], cfg) -> None:
    """Two labels with one answer text (``task.label_words``), or an empty one, cannot be told apart."""
    from harness.tasks.data import TaskDataError

    seen: dict[str, str] = {}
    for name, text in zip(names, candidates):
        if not text.strip():
            raise TaskDataError(f"task {cfg.name}: label {name!r} has an empty answer (task.label_words)")
        if text.strip() in seen:
            raise TaskDataError(f"task {cfg.name}: labels {seen[text.strip()]!r} and {name!r} have the same "
                                f"answer {text.strip()!r} (task.label_words); the candidates must differ")
        seen[text.strip()] = name
