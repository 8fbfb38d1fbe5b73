"""The ``task`` config group: the data, its splits, and prompt tasks' templates; and the registry
of task loaders' own schemas (subclasses of :class:`TaskConfig`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness.config.checks import check, positive_int
from harness.config.enums import Truncation
from harness.errors import ConfigError


# Loaders of a user's own file (harness.tasks.files): their runs take the file's name as task name.
FILE_LOADERS = ("csv", "jsonl", "parquet")
MIN_LENGTH = 8  # task.max_length below this leaves a text a token or two beside [CLS]/[SEP] or a template


@dataclass
class TaskConfig:
    name: str = "rotten_tomatoes"
    loader: str = "rotten_tomatoes"
    data_path: Optional[str] = None
    text_column: str = "text"
    label_column: str = "label"
    # CSV/TSV: whether the first row names the columns; false: columns are named by position, from
    # 0 (task.text_column=0 task.label_column=1). Any column may be given by position when no
    # column has that name.
    header: bool = True
    # CSV/TSV: the delimiter, one character ("tab" for a tab); null: "," for .csv (or the ";", tab
    # or "|" of a .csv whose first row holds no comma), tab for .tsv.
    delimiter: Optional[str] = None
    # CSV/TSV: csv: a value that begins with a double quote is quoted whole, its own quotes doubled
    # (as spreadsheets and pandas write it); none: double quotes are text, as written (a TSV saved
    # by joining fields with tabs). A value quoted otherwise is refused, naming its line.
    quoting: str = "csv"
    # --- task types, own data, long documents (docs/tasks.md) ---
    # single_label | multi_label | multiple_choice (harness.tasks.types).
    task_type: str = "single_label"
    # Several text columns, joined by a blank line (replaces text_column when set).
    text_columns: Optional[list[str]] = None
    choices_column: str = "choices"  # multiple choice: a list of candidate answers per row
    split_column: Optional[str] = None  # train/validation/test per row; null: drawn from split_seed
    # The allowed labels, in order; null: the loader's or the sorted values found in the data.
    labels: Optional[list[str]] = None
    subset: Optional[str] = None  # LexGLUE: ecthr_a, ecthr_b, scotus, eurlex, ledgar, unfair_tos, case_hold
    prefix_parties: bool = False  # SCOTUS: start the text with the names of the two parties
    truncation: Truncation = Truncation.auto
    cache_tokens: bool = True  # keep tokenized splits on disk, keyed by data, tokenizer, settings
    max_length: int = 128
    # Examples drawn per split (null: all the split has). The splits come from split_seed.
    train_size: Optional[int] = None
    val_size: Optional[int] = None
    test_size: Optional[int] = None
    # keep: every row, as the data holds it; drop: one row per text (its first), before the splits
    # are drawn, so that no test text is also a training text (the preflight counts them either way).
    duplicates: str = "keep"
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    # --- prompt tasks (task_type generation or choice; docs/language_models.md) ---
    # The prompt made of the text column: "{text}" stands for it (null: the text as it is).
    prompt_template: Optional[str] = None
    # Wrap the prompt in the tokenizer's chat template (as a user turn) when it has one.
    chat_template: bool = True
    system_prompt: Optional[str] = None  # the chat's system turn (null: the template's default)
    # Answer text per label name (choice: the candidates; generation: the completion), e.g.
    # {"True": "yes", "False": "no"}; a label not in it answers with its own name.
    label_words: dict[str, str] = field(default_factory=dict)
    # Put before every answer: " " after a plain prompt ending in "Answer:", as the tokenizer
    # expects (dropped inside a chat template, where the answer opens the assistant's turn).
    answer_prefix: str = ""
    # Generation from a file of chat conversations: the column holding each row's list of turns
    # ({"role", "content"}, or ShareGPT's {"from", "value"}); the last turn, the assistant's, is the
    # completion, the turns before it the prompt (through the chat template). Replaces text_column
    # and label_column (docs/language_models.md).
    messages_column: Optional[str] = None
    # Generation: tokens generated at most (null: the longest training completion, plus its end).
    max_new_tokens: Optional[int] = None
    # Generation: a regular expression whose first group (or whole match) is the final answer in
    # a longer completion, e.g. "####\\s*(.+)" for GSM8K; the last non-empty match counts, and a text
    # without one is its own answer. Predictions and references are scored on that answer.
    answer_pattern: Optional[str] = None

    def __post_init__(self) -> None:
        if self.loader in FILE_LOADERS and self.name == self.loader and self.data_path:
            # A file task is named after its file, so that a report never pools two files' runs
            # under "csv" (the config hash, computed from the config as written, is unchanged).
            path = Path(str(self.data_path))
            if path.suffix.lower() in (".gz", ".bz2", ".xz", ".zip"):  # data.csv.gz is "data"
                path = path.with_suffix("")
            self.name = path.stem or self.name
        if self.delimiter is not None:
            self.delimiter = {"tab": "\t", "\\t": "\t"}.get(str(self.delimiter), str(self.delimiter))
            check(len(self.delimiter) == 1 and self.delimiter not in "\"\r\n",
                  f"task.delimiter must be one character (e.g. ';', '|', or tab), got {self.delimiter!r}")
        check(self.quoting in ("csv", "none"), f"task.quoting must be one of csv, none, got {self.quoting!r}")
        check(self.duplicates in ("keep", "drop"),
              f"task.duplicates must be one of keep, drop, got {self.duplicates!r}")
        positive_int("task.max_length", self.max_length)
        check(self.max_length >= MIN_LENGTH, f"task.max_length must be at least {MIN_LENGTH} tokens "
                                             f"(room for a text beside the model's special tokens), "
                                             f"got {self.max_length}")
        if self.max_new_tokens is not None:
            positive_int("task.max_new_tokens", self.max_new_tokens)
        if self.answer_pattern is not None:
            try:
                groups = re.compile(self.answer_pattern).groups
            except re.error as exc:
                raise ConfigError(f"task.answer_pattern is not a regular expression: {exc}") from None
            check(groups <= 1, f"task.answer_pattern must have at most one group (the answer), "
                               f"got {groups}: {self.answer_pattern!r}")
        if self.messages_column is not None:
            check(self.loader in (*FILE_LOADERS, "hub"), f"task.messages_column reads conversations from a file "
                                                         f"(task=csv, jsonl or parquet) or the hub (loader: hub), "
                                                         f"not task {self.name} (loader {self.loader})")
            for key in ("prompt_template", "text_columns", "label_words"):
                check(not getattr(self, key), f"task.{key} applies to a text column, not to conversations "
                                              f"(task.messages_column); leave it unset")
            check(self.chat_template, "task.messages_column renders conversations by the chat template: "
                                      "task.chat_template must stay true")
        check(self.prompt_template is None or "{text}" in self.prompt_template,
              f"task.prompt_template must contain {{text}} (where the text goes), got {self.prompt_template!r}")
        for key in ("train_size", "val_size", "test_size"):
            value = getattr(self, key)
            if value is not None:
                positive_int(f"task.{key}", value)
        check(0 < self.val_fraction < 1 and 0 < self.test_fraction < 1
              and self.val_fraction + self.test_fraction < 1,
              "task.val_fraction and task.test_fraction must be in (0, 1) and sum to less than 1")


# Task loaders with fields of their own (the multi-task loader's sub-tasks) do as methods do
# (harness.config.method): they subclass TaskConfig and register it with ``register_task_schema``,
# keyed by loader name (``defaults: [<loader>_schema, _self_]`` in the task YAML).
TASK_SCHEMAS: dict[str, type[TaskConfig]] = {}


def register_task_schema(loader: str, schema: type[TaskConfig]) -> type[TaskConfig]:
    TASK_SCHEMAS[loader] = schema
    return schema
