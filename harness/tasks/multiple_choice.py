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
        from harness.tasks.labels import refuse_nested, row_of

        n = check_choices(frame, cfg)
        refuse_nested(frame, cfg, "choice index")
        labels = frame["label"].map(lambda v: int(v) if str(v).lstrip("-").isdigit() else -1)
        bad = [i for i, v in enumerate(labels) if not 0 <= v < n]
        if bad:
            raise TaskDataError(f"task {cfg.name}: {row_of(frame, bad[0])}: answer "
                                f"{frame['label'].iloc[bad[0]]!r} is not a choice index in 0..{n - 1}")
        return [str(i) for i in range(n)], lambda column: [int(v) for v in column]

    def encode_examples(self, split, tokenizer, max_length, strategy):
        """One (context, choice) pair per choice; the context is cut to leave room for its
        longest choice (at most half of ``max_length``), and counted when cut."""
        from harness.tasks.cutting import Encoded, cap_chars, cut_texts

        # A choice is kept whole unless it is absurdly long (cut in characters, then by the pair
        # tokenization below): only the contexts' cuts are counted.
        choices = [[cap_chars(c, max_length, "head")[0] for c in cs] for cs in split.choices]
        choice_len = tokenizer([c for cs in choices for c in cs], add_special_tokens=False,
                               truncation=True, max_length=max_length)["input_ids"]
        n_choices = len(choices[0])
        longest = [max(len(ids) for ids in choice_len[i:i + n_choices])
                   for i in range(0, len(choice_len), n_choices)]
        special = tokenizer.num_special_tokens_to_add(pair=True)
        texts, n_cut, lost = [], 0, []
        for text, room in zip(split.texts, longest):
            kept, cut = cut_texts([text], tokenizer, max_length - special - min(room, max_length // 2),
                                  strategy, lost)
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
        return Encoded(examples, n_cut, tokens_cut=lost)

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


def check_choices(frame, cfg) -> int:
    """Each row's choices (the ``choices`` column): a list of at least two distinct, non-empty
    strings or numbers, as many in every row; the number. A row without a list, a JSON object
    for a choice, two equal choices or one alone would train and score a question that has no
    answer to pick (accuracy 1.0 with one choice), so each is refused naming its row."""
    from harness.tasks.data import TaskDataError
    from harness.tasks.labels import row_of

    n, first = None, 0
    for position, cell in enumerate(frame["choices"]):
        problem = _choices_problem(cell, f"task.choices_column={getattr(cfg, 'choices_column', 'choices')}")
        if problem is None and n is not None and len(cell) != n:
            problem = (f"{len(cell)} choices, but {row_of(frame, first)} has {n}; every row needs the "
                       f"same number of choices")
        if problem:
            raise TaskDataError(f"task {cfg.name}: {row_of(frame, position)}: {problem}")
        if n is None:
            n, first = len(cell), position
    return n


def _choices_problem(cell, setting: str) -> str | None:
    """What is wrong with one row's choices, or None."""
    from harness.tasks.labels import kind_of, preview

    if cell is None or (isinstance(cell, float) and cell != cell):
        return f"no choices ({setting} is empty in this row)"
    if kind_of(cell) != "a JSON list":
        text = isinstance(cell, str)
        return (f"the choices ({setting}) are {kind_of(cell) or ('a text' if text else 'a number')}, "
                f"{preview(cell)}, not a list of choices"
                + ("; a CSV cell holds no list: use a JSON Lines or Parquet file" if text else ""))
    texts = []
    for k, choice in enumerate(cell):
        if kind_of(choice):
            return f"choice {k} is {kind_of(choice)}, {preview(choice)}; choices must be strings or numbers"
        texts.append(str(choice).strip())
    if len(texts) < 2:
        return f"{len(texts)} choice(s), {preview(list(cell))}; a row needs at least two to pick from"
    if "" in texts:
        return f"choice {texts.index('')} is empty"
    twice = next((t for k, t in enumerate(texts) if t in texts[:k]), None)
    if twice is not None:
        k = texts.index(twice)
        return (f"the choice {preview(twice)} is there twice (choices {k} and "
                f"{texts.index(twice, k + 1)}, counted from 0); each choice must differ")
    return None
