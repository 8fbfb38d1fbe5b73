"""The ``multiple_choice`` task type: a context and n candidate answers (CaseHOLD).

Every (context, choice) pair gets one logit from a 1-output sequence-classification head; softmax
over the choices. The same head works for encoders and decoders, so no family needs a special
multiple-choice class. (A causal LM can also score the candidates by their likelihood: the
``choice`` type of :mod:`harness.tasks.prompts`.)
"""
from __future__ import annotations

from harness.tasks.types import TASK_TYPES, TaskType


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
