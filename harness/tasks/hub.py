"""Prompt/completion data from the Hugging Face hub, each split from a dataset of its own.

Instruction tuning is usually judged on other data than it trains on: peft's method comparison
trains on MetaMathQA and tests on GSM8K. ``task.hub_splits`` names, per split, the dataset (a
hub id), its config (``subset``), its split and its two columns; a missing validation split is
carved from train (``task.val_fraction``). ``datasets.load_dataset`` reads each one, from the hub
or, with ``task.data_path=<folder>``, from ``<folder>/<hub id>``: a local copy of the dataset's
repository (its README's ``configs`` and its data files, as ``git clone`` of the hub repo gives),
read the same way, offline, through a cache of that folder's own content
(:mod:`harness.tasks.localhub`); the preflight loads it too (:func:`check_local`).
``task.max_chars`` leaves out training and validation rows whose prompt and completion are
longer than that many characters together (counted as dropped rows; the test set stays whole,
so scores compare with published ones), one cut for every model, as peft's benchmark filters
MetaMathQA by characters rather than by any one tokenizer's tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from harness.config import ConfigError, TaskConfig, register_task_schema
from harness.tasks.conversations import conversation_rows
from harness.tasks.data import TASK_LOADERS, TaskDataError
from harness.tasks.localhub import cache_dir, check_repo, load_as_the_run_does, reason
from harness.tasks.splits import SPLITS


@dataclass
class HubSplit:
    dataset: str = ""  # a hub id, e.g. openai/gsm8k
    subset: Optional[str] = None  # the dataset's config name, e.g. main (null: its default)
    split: str = "train"  # the dataset's split to read
    text_column: Optional[str] = None  # the prompt (null: task.text_column)
    label_column: Optional[str] = None  # the completion (null: task.label_column)
    revision: Optional[str] = None  # a commit, tag or branch of the dataset (null: main)
    messages_column: Optional[str] = None  # conversations (task.messages_column set): this split's column


@dataclass
class HubTaskConfig(TaskConfig):
    loader: str = "hub"
    # train / validation / test -> where that split comes from (the keys of HubSplit; train and
    # test are needed). Plain dicts, so that the command line can add one:
    # +task.hub_splits.validation={dataset: openai/gsm8k, subset: main, split: train, ...}
    hub_splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Leave out training and validation rows longer than this, prompt and completion together.
    max_chars: Optional[int] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.hub_splits) - set(SPLITS))
        if unknown:
            raise ConfigError(f"task.hub_splits: unknown split(s) {unknown}; allowed: {', '.join(SPLITS)}")
        missing = [s for s in ("train", "test") if s not in self.hub_splits]
        if missing:
            raise ConfigError(f"task.hub_splits needs a {missing[0]} entry ({{dataset: <hub id>, "
                              f"split: ..., text_column: ..., label_column: ...}})")
        for name, src in self.splits().items():
            if not src.dataset:
                raise ConfigError(f"task.hub_splits.{name}.dataset is empty; give a hub id, e.g. openai/gsm8k")
        if self.max_chars is not None and (not isinstance(self.max_chars, int) or self.max_chars < 1):
            raise ConfigError(f"task.max_chars must be a positive integer or null, got {self.max_chars!r}")

    def splits(self) -> dict[str, HubSplit]:
        """``hub_splits`` as :class:`HubSplit` objects; an unknown key is a ConfigError."""
        known = [f.name for f in fields(HubSplit)]
        out = {}
        for name, entry in self.hub_splits.items():
            entry = dict(entry or {})
            unknown = sorted(set(entry) - set(known))
            if unknown:
                raise ConfigError(f"task.hub_splits.{name}: unknown key(s) {unknown}; allowed: {', '.join(known)}")
            out[name] = HubSplit(**entry)
        return out


register_task_schema("hub", HubTaskConfig)


def _local_repo(cfg, src: HubSplit) -> Path:
    folder = Path(cfg.data_path).expanduser() / src.dataset
    if not folder.is_dir():
        raise TaskDataError(f"task {cfg.name}: no local copy of {src.dataset} at {folder} "
                            f"(task.data_path holds <hub id> folders; null reads the hub)")
    return folder


def check_local(cfg) -> None:
    """The preflight's look at ``task.data_path``: every dataset the task reads is loaded and
    checked as the run loads it (:func:`load_hub`, the task type's checks of its answers), so a
    card without data files, a broken file, a wrong column or a git-lfs pointer stops the command
    in one line instead of failing the run."""
    load_as_the_run_does(cfg, cfg.data_path)


def _where(src: HubSplit) -> str:
    return f"{src.dataset}{'/' + src.subset if src.subset else ''}:{src.split}"


def _read(cfg, name: str, src: HubSplit) -> tuple[pd.DataFrame, str, dict]:
    import datasets

    where = _where(src)
    cache = None
    if cfg.data_path:
        folder = _local_repo(cfg, src)
        check_repo(cfg, folder, f"a copy of {src.dataset}")
        location, source = str(folder), f"local:{folder.resolve()}{'/' + src.subset if src.subset else ''}:{src.split}"
        cache = cache_dir(folder)  # this folder's content only: never another's or older rows
    else:
        location, source = src.dataset, f"hub:{where}{'@' + src.revision if src.revision else ''}"
    try:
        ds = datasets.load_dataset(location, src.subset, split=src.split, revision=src.revision,
                                   cache_dir=cache)
    except Exception as exc:  # noqa: BLE001 - datasets' errors (YAML, JSON, configs), on one line
        raise TaskDataError(f"task {cfg.name}: cannot read {where} for the {name} split: "
                            f"{reason(exc)}") from None
    text, label = src.text_column or cfg.text_column, src.label_column or cfg.label_column
    chat = src.messages_column or cfg.messages_column
    absent = [c for c in ((chat,) if cfg.messages_column else (text, label)) if c not in ds.column_names]
    if absent:
        raise TaskDataError(f"task {cfg.name}: column(s) {absent} not in {where} "
                            f"(task.hub_splits.{name}); its columns: {ds.column_names[:20]}")
    if ds.num_rows == 0:
        raise TaskDataError(f"task {cfg.name}: {where} has no rows (task.hub_splits.{name})")
    if cfg.messages_column:  # chat conversations (harness.tasks.conversations); unusable ones: None
        texts, labels, unusable = conversation_rows(ds.select_columns([chat]).to_pandas()[chat],
                                                    f"task {cfg.name}", f"{where} (task.hub_splits.{name})")
        return pd.DataFrame({"text": texts, "label": labels, "split": name}), source, unusable
    frame = ds.select_columns([text, label]).to_pandas()
    return pd.DataFrame({"text": frame[text], "label": frame[label], "split": name}), source, {}


def _answer_column(cfg, src: HubSplit) -> str:
    if cfg.messages_column:
        return f"{src.messages_column or cfg.messages_column} (its last assistant turn)"
    return src.label_column or cfg.label_column


@TASK_LOADERS.register("hub", data_path="optional", data_source="hub", reads="folder", check=check_local)
def load_hub(cfg) -> pd.DataFrame:
    frames, sources, dropped = [], [], {}
    for name, src in cfg.splits().items():
        frame, source, unusable = _read(cfg, name, src)
        frames.append(frame)
        sources.append(f"{name}={source}")
        for why, n in unusable.items():
            dropped[why] = dropped.get(why, 0) + n
    out = pd.concat(frames, ignore_index=True)
    if cfg.messages_column:  # conversations with nothing to train on (counted in dropped)
        out = out[out["text"].notna()]
    if cfg.max_chars:
        chars = out["text"].astype(str).str.len() + out["label"].astype(str).str.len()
        long = (chars > cfg.max_chars) & (out["split"] != "test")  # the test set stays whole
        out = out[~long]  # the index stays: a bad row is named by its place in its split
        if long.any():
            dropped[f"longer than task.max_chars={cfg.max_chars}"] = int(long.sum())
    starts = np.cumsum([0] + [len(f) for f in frames])  # rows are named per split (labels.row_of)
    out.attrs["split_rows"] = {name: (int(start), f"{_where(src)}, column {_answer_column(cfg, src)}")
                               for (name, src), start in zip(cfg.splits().items(), starts)}
    out.attrs["source"] = "; ".join(sources)
    out.attrs["dropped"] = dropped
    return out
