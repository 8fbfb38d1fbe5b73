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
  gets one logit from a 1-output sequence-classification head; softmax over the choices.
- ``generation`` and ``choice`` (:mod:`harness.tasks.prompts`): prompts to a causal language model.

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
    from harness.tasks.cutting import Encoded

TASK_TYPES: Registry["TaskType"] = Registry("task type")


def task_type(kind: "TaskType | str") -> "TaskType":
    """A task type from its registered name (``task.task_type``), or the type itself."""
    return TASK_TYPES.get(kind)() if isinstance(kind, str) else kind


def resolve_truncation(value: str, kind: str) -> str:
    """``task.truncation`` as a run applies it: ``auto`` is the task type's default (the start of
    a document for classification, the end of a prompt, where its question is, for prompt tasks);
    an unknown type (a plug-in not loaded here) takes ``head``."""
    if value != "auto":
        return value
    try:
        return TASK_TYPES.get(kind).default_truncation
    except Exception:  # noqa: BLE001 - the preflight names an unknown task type
        return "head"


def task_truncation(task_cfg) -> str:
    """The side of a long text a run of ``task_cfg`` keeps (``task.truncation``, ``auto`` resolved)."""
    return resolve_truncation(task_cfg.truncation.value, task_cfg.task_type)


class TaskType:
    name = ""
    scoring = "scoring"  # what an evaluation pass does, as its progress bar says
    # Which end of a long text ``task.truncation=auto`` keeps (harness.tasks.cutting.STRATEGIES).
    default_truncation = "head"
    problem_type: str | None = None  # transformers' config.problem_type for this head
    # Loader columns this type needs beyond ``text`` and ``label``: each holds a list of strings
    # per row, is read from ``task.<column>_column`` by the file loaders, and is kept on
    # :class:`harness.tasks.Split` under the same name.
    columns: tuple[str, ...] = ()
    optional_columns: tuple[str, ...] = ()  # the same, read when the data has them
    # Whether the model sees each example as several sequences in a row (one per choice; see
    # model_inputs), e.g. for per-example conditioning (HyperLoRA's task ids).
    sequences_per_example: bool = False
    causal_lm = False  # scored by a causal LM's own output layer (no classification head)
    completes_conversations = False  # trains on chat conversations' last assistant turns (task.messages_column)
    # Whether label_names are class names a file writes (not answers, not choice positions).
    named_classes = False
    peft_task_type = "SEQ_CLS"  # peft's task type for adapters on this type's model

    def for_task(self, cfg) -> "TaskType":
        """This type with the task config's settings it needs (prompt templates); itself here."""
        return self

    def settings(self) -> str:
        """The settings that change how a split is encoded (part of the token cache's key)."""
        return ""

    def prepare(self, tokenizer, train_examples: list[dict]) -> None:
        """Called once with the tokenizer and the encoded training split, before anything is
        evaluated (a prompt task sizes its generation budget from the training answers)."""

    # --- data: labels, tokens, batches ---

    def texts_to_keep(self, kept: dict) -> dict:
        """Per-example texts to store with the test predictions (``kept``: the evaluation's raw
        ``predictions`` and ``labels``); none for a task whose answers are class ids."""
        return {}

    def encode_labels(self, frame: "pd.DataFrame", cfg) -> tuple[list[str], Callable]:
        """(label names, a function from a label column to encoded labels: class indices).

        The names are ``task.labels`` when set (any other value in the data is an error), else the
        loader's (``frame.attrs["label_names"]``, e.g. hub features), else the sorted values found."""
        from harness.tasks.labels import (label_space, name_of, refuse_float_labels, refuse_nested,
                                          require_two_classes)

        refuse_nested(frame, cfg, "label")  # a list or object would be a class named by its text
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
        (:func:`harness.tasks.cutting.cut_texts`) to fit ``max_length``; the cut are counted."""
        from harness.tasks.cutting import Encoded, cut_texts

        budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
        lost: list[int] = []
        texts, n_cut = cut_texts(split.texts, tokenizer, budget, strategy, lost)
        enc = tokenizer(texts, truncation=True, max_length=max_length)
        examples = [{"input_ids": ids, "attention_mask": mask, "labels": label}
                    for ids, mask, label in zip(enc["input_ids"], enc["attention_mask"], split.labels)]
        return Encoded(examples, n_cut, tokens_cut=lost)

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

    def batch_loss(self, model, batch: dict) -> "torch.Tensor":
        """The training loss of a batch (the trainer and probes minimise it)."""
        return self.loss(self.logits(model, batch), batch["labels"])

    def score_batch(self, model, batch: dict) -> tuple[float, float, list, list]:
        """(loss summed over the batch, its weight, predictions, references) of an eval batch;
        the weight is the batch's examples here (tokens for prompt tasks)."""
        logits = self.logits(model, batch)
        n = len(batch["labels"])
        return (float(self.loss(logits, batch["labels"])) * n, n, self.predict(logits),
                batch["labels"].tolist())

    def loss_metrics(self, mean_loss: float) -> dict[str, float]:
        """Metrics derived from the mean eval loss (perplexity for prompt tasks); none here."""
        return {}

    def prediction_ids(self, values: list) -> list | None:
        """Per-example predictions or references as the store keeps them (class ids, 0/1 rows);
        None when they have no such form (open-ended generations)."""
        return values

    def predict(self, logits: "torch.Tensor") -> list:
        return logits.argmax(-1).tolist()

    def metrics(self, predictions: list, references: list, num_labels: int,
                labels: list[int] | None = None) -> dict[str, float]:
        """``labels``: average F1 over these labels only (one task's, in multi-task data)."""
        from harness.tasks.scoring.metrics import classification_metrics

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
    named_classes = True


@TASK_TYPES.register("multi_label")
class MultiLabel(TaskType):
    name = "multi_label"
    problem_type = "multi_label_classification"
    named_classes = True

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
        from harness.tasks.scoring.metrics import multilabel_metrics

        return multilabel_metrics(predictions, references)

    def majority_prediction(self, train_labels):
        """The most frequent label set (possibly empty) of the training split."""
        sets, counts = np.unique(np.asarray(train_labels, dtype=int), axis=0, return_counts=True)
        return [int(v) for v in sets[counts.argmax()]]
