"""Task types: what changes between single-label, multi-label and multiple-choice tasks.

Each type says which columns its loader must give, how its labels are encoded, how a split is
tokenized and batched, how big the model's head is, how a batch becomes logits and a loss, how
logits become predictions, how predictions are scored, and what the majority baseline predicts.
The loaders, the encoding and the training loop call these and never ask which type they have.

- ``single_label``: one class per text; softmax cross-entropy; argmax.
- ``multi_label``: any subset of the labels per text (ECtHR: which articles were violated);
  a sigmoid per label with binary cross-entropy; a label is predicted when its logit is > 0.
  ``accuracy`` is exact-match (subset) accuracy. F1 is micro/macro over the labels plus one extra
  "no label" column that is on when a text has no label, as LexGLUE reports ECtHR and UNFAIR-ToS.
- ``multiple_choice``: a context and n candidate answers (CaseHOLD). Every (context, choice) pair
  gets one logit from a 1-output sequence-classification head; softmax over the choices. The same
  head works for encoders and decoders, so no family needs a special multiple-choice class.

Importing this module is cheap (no torch, transformers or metric libraries): the config checks
and the preflight look types up here; the heavy imports happen inside the methods that need them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from harness.registry import Registry

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from harness.tasks.data import Split
    from harness.tasks.encoding import Encoded

TASK_TYPES: Registry["TaskType"] = Registry("task type")


def task_type(kind: "TaskType | str") -> "TaskType":
    """A task type from its registered name (``task.task_type``), or the type itself."""
    return TASK_TYPES.get(kind)() if isinstance(kind, str) else kind


class TaskType:
    name = ""
    problem_type: str | None = None  # transformers' config.problem_type for this head
    # Loader columns this type needs beyond ``text`` and ``label``: each holds a list of strings
    # per row, is read from ``task.<column>_column`` by the file loaders, and is kept on
    # :class:`harness.tasks.Split` under the same name.
    columns: tuple[str, ...] = ()
    # Whether the model sees each example as several sequences in a row (one per choice; see
    # model_inputs), e.g. for per-example conditioning (HyperLoRA's task ids).
    sequences_per_example: bool = False

    # --- data: labels, tokens, batches ---

    def encode_labels(self, frame: "pd.DataFrame", cfg) -> tuple[list[str], Callable]:
        """(label names, a function from a label column to encoded labels: class indices).

        The names are ``task.labels`` when set (any other value in the data is an error), else the
        loader's (``frame.attrs["label_names"]``, e.g. hub features), else the sorted values found."""
        from harness.tasks.labels import label_space, name_of, refuse_float_labels, require_two_classes

        refuse_float_labels(frame["label"], cfg)
        names, index = label_space(frame, cfg, frame["label"].map(lambda v: [name_of(v)]))
        require_two_classes(frame["label"], names, cfg)
        return names, lambda column: [index[name_of(v)] for v in column]

    def encode(self, split: "Split", tokenizer, max_length: int, strategy: str) -> "Encoded":
        """The split's examples as the model takes them (:meth:`encode_examples`), each with its
        task's id in multi-task data (``task_ids``; the method reads them, ``Adapted.condition``)."""
        encoded = self.encode_examples(split, tokenizer, max_length, strategy)
        if split.task_ids is not None:
            for example, task_id in zip(encoded.examples, split.task_ids):
                example["task_ids"] = task_id
        return encoded

    def encode_examples(self, split: "Split", tokenizer, max_length: int, strategy: str) -> "Encoded":
        """Token ids and the label of each example: one sequence per text, cut by ``strategy``
        (:func:`harness.tasks.encoding.cut_texts`) to fit ``max_length``; the cut are counted."""
        from harness.tasks.encoding import Encoded, cut_texts

        budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
        texts, n_cut = cut_texts(split.texts, tokenizer, budget, strategy)
        enc = tokenizer(texts, truncation=True, max_length=max_length)
        examples = [{"input_ids": ids, "attention_mask": mask, "labels": label}
                    for ids, mask, label in zip(enc["input_ids"], enc["attention_mask"], split.labels)]
        return Encoded(examples, n_cut)

    def collator(self, tokenizer) -> Callable[[list[dict]], dict]:
        """Makes a batch of :meth:`encode`'s examples, padded to the batch's longest sequence."""
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer, padding="longest")

    # --- model: head, logits, loss, predictions, metrics ---

    def head_size(self, num_labels: int) -> int:
        """Outputs of the classification head (``num_labels`` of the model config)."""
        return num_labels

    def model_inputs(self, batch: dict) -> dict:
        """The batch as the model takes it (labels removed)."""
        return {k: v for k, v in batch.items() if k != "labels"}

    def logits(self, model, batch: dict) -> "torch.Tensor":
        return model(**self.model_inputs(batch)).logits.float()

    def loss(self, logits: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
        import torch.nn.functional as F

        return F.cross_entropy(logits, labels)

    def predict(self, logits: "torch.Tensor") -> list:
        return logits.argmax(-1).tolist()

    def metrics(self, predictions: list, references: list, num_labels: int,
                labels: list[int] | None = None) -> dict[str, float]:
        """``labels``: average F1 over these labels only (one task's, in multi-task data)."""
        from harness.metrics import classification_metrics

        return classification_metrics(predictions, references, num_labels, labels)

    def majority_prediction(self, train_labels: list):
        """The most common training label: the prediction of the majority baseline."""
        values, counts = np.unique(np.asarray(train_labels), return_counts=True)
        return int(values[counts.argmax()])

    def majority_metrics(self, train_labels: list, test_labels: list, num_labels: int) -> dict:
        guess = self.majority_prediction(train_labels)
        return self.metrics([guess] * len(test_labels), test_labels, num_labels)


@TASK_TYPES.register("single_label")
class SingleLabel(TaskType):
    name = "single_label"
    problem_type = "single_label_classification"


@TASK_TYPES.register("multi_label")
class MultiLabel(TaskType):
    name = "multi_label"
    problem_type = "multi_label_classification"

    def encode_labels(self, frame, cfg):
        """Labels are a list of names per row (or ``a|b`` in a CSV cell) -> 0/1 vectors."""
        from harness.tasks.labels import label_space, name_list, refuse_float_labels

        refuse_float_labels(frame["label"], cfg)
        names, index = label_space(frame, cfg, frame["label"].map(name_list))

        def encode(column: "pd.Series") -> list[list[int]]:
            rows = []
            for vs in column.map(name_list):
                hot = [0] * len(names)
                for v in vs:
                    hot[index[v]] = 1
                rows.append(hot)
            return rows

        return names, encode

    def loss(self, logits, labels):
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(logits, labels.float())

    def predict(self, logits):
        return (logits > 0).int().tolist()

    def metrics(self, predictions, references, num_labels, labels=None):
        from harness.metrics import multilabel_metrics

        return multilabel_metrics(predictions, references)

    def majority_prediction(self, train_labels):
        """The most frequent label set (possibly empty) of the training split."""
        sets, counts = np.unique(np.asarray(train_labels, dtype=int), axis=0, return_counts=True)
        return [int(v) for v in sets[counts.argmax()]]


@TASK_TYPES.register("multiple_choice")
class MultipleChoice(TaskType):
    name = "multiple_choice"
    problem_type = "single_label_classification"
    columns = ("choices",)
    sequences_per_example = True

    def encode_labels(self, frame, cfg):
        """The label is the index of the right choice; the names are the positions "0".."n-1"."""
        from harness.tasks.data import TaskDataError

        counts = frame["choices"].map(len)
        if counts.nunique() != 1:
            raise TaskDataError(f"task {cfg.name}: every row needs the same number of choices, "
                                f"found {sorted(counts.unique())[:5]}")
        n = int(counts.iloc[0])
        labels = frame["label"].map(lambda v: int(v) if str(v).lstrip("-").isdigit() else -1)
        bad = labels[(labels < 0) | (labels >= n)]
        if len(bad):
            raise TaskDataError(f"task {cfg.name}: answer {frame['label'][bad.index[0]]!r} in row "
                                f"{bad.index[0]} is not a choice index in 0..{n - 1}")
        return [str(i) for i in range(n)], lambda column: [int(v) for v in column]

    def encode_examples(self, split, tokenizer, max_length, strategy):
        """One (context, choice) pair per choice; the context is cut to leave room for its
        longest choice (at most half of ``max_length``), and counted when cut."""
        from harness.tasks.encoding import Encoded, cap_chars, cut_texts

        # A choice is kept whole unless it is absurdly long (cut in characters, then by the pair
        # tokenization below): only the contexts' cuts are counted.
        choices = [[cap_chars(c, max_length, "head")[0] for c in cs] for cs in split.choices]
        choice_len = tokenizer([c for cs in choices for c in cs], add_special_tokens=False,
                               truncation=True, max_length=max_length)["input_ids"]
        n_choices = len(choices[0])
        longest = [max(len(ids) for ids in choice_len[i:i + n_choices])
                   for i in range(0, len(choice_len), n_choices)]
        special = tokenizer.num_special_tokens_to_add(pair=True)
        texts, n_cut = [], 0
        for text, room in zip(split.texts, longest):
            kept, cut = cut_texts([text], tokenizer, max_length - special - min(room, max_length // 2),
                                  strategy)
            texts += kept
            n_cut += cut
        firsts = [t for t in texts for _ in range(n_choices)]
        seconds = [c for cs in choices for c in cs]
        enc = tokenizer(firsts, seconds, truncation="longest_first", max_length=max_length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        examples = []
        for i, label in enumerate(split.labels):
            rows = slice(i * n_choices, (i + 1) * n_choices)
            examples.append({**{k: enc[k][rows] for k in keys}, "labels": label})
        return Encoded(examples, n_cut)

    def collator(self, tokenizer):
        """Pads (batch, choices, length) to the longest sequence in the batch."""
        from harness.tasks.encoding import ChoiceCollator

        return ChoiceCollator(tokenizer)

    def head_size(self, num_labels):
        return 1  # one score per (context, choice) pair

    def model_inputs(self, batch):
        # (batch, choices, length) -> (batch * choices, length): each pair is one sequence.
        return {k: v.flatten(0, 1) if v.dim() == 3 else v for k, v in batch.items() if k != "labels"}

    def logits(self, model, batch):
        n_choices = batch["input_ids"].shape[1]
        return model(**self.model_inputs(batch)).logits.float().view(-1, n_choices)
