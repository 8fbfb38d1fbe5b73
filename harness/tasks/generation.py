"""The ``generation`` prompt task (:mod:`harness.tasks.prompts` has the shared machinery): the
label column holds each prompt's completion; evaluated by greedy generation, scored by exact and
normalized match, with macro/micro-F1 over a closed answer set, and what the model wrote kept
beside each reference (``harness.results.load_answers``).
"""
from __future__ import annotations

from collections import Counter

from harness.tasks.answers import normalize
from harness.tasks.prompts import MAX_ANSWER_CLASSES, PromptTask
from harness.tasks.types import TASK_TYPES


@TASK_TYPES.register("generation")
class Generation(PromptTask):
    name = "generation"
    answers: list[str] = []
    scoring = "generating answers"
    completes_conversations = True  # task.messages_column: the last assistant turn is the answer

    def texts_to_keep(self, kept: dict) -> dict:
        """What the model wrote for each test example, beside its reference, as stored arrays."""
        import numpy as np

        return {"generated": np.asarray([str(t) for t in kept["predictions"]], dtype=str),
                "reference": np.asarray([str(t) for t in kept["labels"]], dtype=str)}

    def encode_labels(self, frame, cfg):
        """The label column holds each prompt's completion (mapped by ``task.label_words``)."""
        from harness.tasks.data import TaskDataError
        from harness.tasks.labels import name_of, refuse_long, refuse_nested, row_of

        refuse_nested(frame, cfg)  # a JSON object or list is no completion; nor is one past the context
        names = sorted({name_of(v) for v in frame["label"]})
        self._check_words(names, cfg)
        texts = [self.answer_text(name_of(v)) for v in frame["label"]]
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise TaskDataError(f"task {cfg.name}: {row_of(frame, empty[0])}: an empty completion in "
                                f"task.label_column={cfg.label_column}")
        refuse_long(frame, texts, cfg)
        distinct = sorted({self.final(t) for t in texts})
        self.answers = distinct if len(distinct) <= MAX_ANSWER_CLASSES else []
        return list(self.answers), lambda column: [self.answer_text(name_of(v)) for v in column]

    def encode_examples(self, split, tokenizer, max_length, strategy):
        from harness.tasks.cutting import Encoded

        answers = [self.answer_ids(tokenizer, a) for a in split.labels]
        lost: list[int] = []
        prompts, n_cut = self.prompts(tokenizer, split.texts, [len(a) for a in answers],
                                      max_length, strategy, lost)
        return Encoded([{"input_ids": p + a, "attention_mask": [1] * (len(p) + len(a)),
                         "n_prompt": len(p), "answer": ref}
                        for p, a, ref in zip(prompts, answers, split.labels)], n_cut, tokens_cut=lost)

    def score_batch(self, model, batch):
        from harness.tasks.scoring.lm import generate

        loss, weight = self.teacher_forced(model, batch)
        texts = generate(model, batch, self.tokenizer, self.budget, self.eos_id(self.tokenizer))
        return loss, weight, [t.strip() for t in texts], list(batch["answer"])

    def metrics(self, predictions, references, num_labels, labels=None):
        from harness.tasks.scoring.metrics import classification_metrics

        n = max(len(references), 1)
        predictions, references = [self.final(p) for p in predictions], [self.final(r) for r in references]
        out = {"accuracy": sum(p == r for p, r in zip(predictions, references)) / n,
               "normalized_match": sum(normalize(p) == normalize(r)
                                       for p, r in zip(predictions, references)) / n}
        out["exact_match"] = out["accuracy"]
        ids, refs = self.prediction_ids(predictions), self.prediction_ids(references)
        if ids is not None:
            other = len(self.answers)
            classes = num_labels + (other in ids)
            scores = classification_metrics(ids, refs, classes)
            out.update(f1_macro=scores["f1_macro"], f1_micro=scores["f1_micro"])
        return out

    def prediction_ids(self, values):
        """Answers as class ids over the closed answer set (any other answer: one more id)."""
        if not self.answers:
            return None
        index = {a: i for i, a in enumerate(self.answers)}
        return [index.get(self.final(v), len(self.answers)) for v in values]

    def majority_prediction(self, train_labels):
        """The most common training answer (its final answer, with ``task.answer_pattern``); of
        tied answers, the first in sorted order (as the other task types break ties between label
        ids)."""
        counts = Counter(self.final(a) for a in train_labels)
        top = max(counts.values())
        return min(a for a, n in counts.items() if n == top)
