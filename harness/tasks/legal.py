"""Legal tasks from local files: Oyez SCOTUS cases, LegalBench sentences, CaseHOLD prompts.

The files are the formats described with the shared data set (``scotus_justice.csv``,
``overruling.tsv``, ``unfair_tos.tsv``, ``casehold_prompts.jsonl``); ``task.data_path`` points
at them, nothing here knows where they live (the registrations give example paths for messages).
"""
from __future__ import annotations

import html
import json
import re

import pandas as pd

from harness.tasks.data import TASK_LOADERS, TaskDataError
from harness.tasks.files import check_text_file, data_file, numbered_lines, read_table

_TAG = re.compile(r"<[^>]+>")


def strip_html(text: str) -> str:
    """Paragraph tags become line breaks; other tags go; entities are decoded."""
    text = re.sub(r"</p>\s*", "\n", str(text))
    return re.sub(r"[ \t]+", " ", html.unescape(_TAG.sub("", text))).strip()


def _require(df: pd.DataFrame, columns: list[str], cfg, path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TaskDataError(f"task {cfg.name}: column(s) {missing} not in {path}; "
                            f"its columns: {list(df.columns)[:20]}")


def _scotus(cfg, label_column: str) -> pd.DataFrame:
    path = data_file(cfg)
    df = read_table(path, cfg)
    _require(df, ["facts", label_column, "first_party", "second_party"], cfg, path)
    facts = df["facts"].map(strip_html)
    if cfg.prefix_parties:
        party = {k: df[k].astype(str).str.strip().str.rstrip(".") for k in ("first_party", "second_party")}
        facts = ("First party: " + party["first_party"] + ". Second party: "
                 + party["second_party"] + ".\n" + facts)
    out = pd.DataFrame({"text": facts, "label": df[label_column]})
    kept = out["text"].str.len() > 0
    out = out[kept]
    out.attrs["dropped"] = {"no text": int((~kept).sum())}  # counted by load_task
    out.attrs["source"] = f"file:{path.resolve()}#{label_column}"
    return out


@TASK_LOADERS.register("scotus_outcome", data_path="required", example="path/to/scotus_justice.csv",
                       reads="file")
def load_scotus_outcome(cfg) -> pd.DataFrame:
    """Case outcome prediction: did the first party win (``first_party_winner``), from the facts."""
    return _scotus(cfg, "first_party_winner")


@TASK_LOADERS.register("scotus_issue", data_path="required", example="path/to/scotus_justice.csv",
                       reads="file")
def load_scotus_issue(cfg) -> pd.DataFrame:
    """The case's issue area (14 classes), from the facts."""
    return _scotus(cfg, "issue_area")


@TASK_LOADERS.register("legalbench_tsv", data_path="required", example="path/to/<task>.tsv", reads="file")
def load_legalbench(cfg) -> pd.DataFrame:
    """A LegalBench classification TSV (``text`` and ``label`` columns, any order)."""
    path = data_file(cfg)
    df = read_table(path, cfg)
    _require(df, [cfg.text_column, cfg.label_column], cfg, path)
    out = pd.DataFrame({"text": df[cfg.text_column].astype(str), "label": df[cfg.label_column]})
    out.attrs["source"] = f"file:{path.resolve()}"
    return out


_GAP = "\n\nThe [Masked Holding] is a placeholder"
_LEAD = re.compile(r'^Given the following excerpt from a US court opinion:\s*"?')


@TASK_LOADERS.register("casehold_prompts", data_path="required",
                       example="path/to/casehold_prompts.jsonl", reads="file")
def load_casehold(cfg) -> pd.DataFrame:
    """CaseHOLD as multiple choice: the excerpt (without the prompt's option list), five
    holdings, and the index of the one that is ``answer``."""
    path = data_file(cfg)
    check_text_file(path, cfg)
    rows, lines = [], []
    for n, line in numbered_lines(path):
        try:
            row = json.loads(line)
            prompt, choices, answer = row["input_text"], row["choices"], row["answer"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TaskDataError(f"task {cfg.name}: line {n} of {path} is not a CaseHOLD prompt "
                                f"with input_text, choices and answer ({exc})") from None
        if not isinstance(prompt, str) or not isinstance(choices, list):
            raise TaskDataError(f"task {cfg.name}: line {n} of {path}: input_text must be a string and "
                                f"choices a list, got a {type(prompt).__name__} and a {type(choices).__name__}")
        if answer not in choices:
            raise TaskDataError(f"task {cfg.name}: line {n} of {path}: the answer is not one of its choices")
        context = _LEAD.sub("", prompt.split(_GAP)[0]).rstrip().rstrip('"')
        rows.append((context, choices, choices.index(answer)))
        lines.append(n - 1)
    # Indexed by line: the task type's checks of the choices (all strings, two or more, none
    # empty or twice) name the file's line (labels.row_of).
    out = pd.DataFrame(rows, columns=["text", "choices", "label"], index=lines)
    out.attrs.update(source=f"file:{path.resolve()}", row_unit="line")
    return out
