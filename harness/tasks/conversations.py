"""Chat conversations as prompt/completion pairs (``task.messages_column``).

A file (or hub datasets) of conversations, one per row, each a list of turns, as OpenAI's fine-tuning files and
Hugging Face chat datasets hold them (``{"role": "user", "content": "..."}``; ShareGPT's
``{"from": "human", "value": "..."}`` is read as the same), trains and scores a ``generation``
task on each conversation's last turn, which must be the assistant's: that turn is the
completion, and every turn before it (a system turn first, if any, then user and assistant turns)
is the prompt, rendered by the tokenizer's chat template up to the opening of the assistant's
turn. Earlier assistant turns are context, not trained on, so every row is one example whose
answer is scored as a generation task's.

Rendering and fitting a conversation to ``task.max_length``: :mod:`harness.tasks.chat`.
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.tasks.data import TaskDataError

ROLES = ("system", "user", "assistant")
OPENAI_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system"}


class Unusable(Exception):
    """A well-formed conversation that holds no example to train on: left out and counted (the
    message is the reason, as the preflight's note says it)."""


def _content(value, where: str) -> str:
    """A turn's text: a string, a number, or OpenAI's list of text parts joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # Parquet: an array of parts
        value = value.tolist()
    if isinstance(value, (list, tuple)) and all(isinstance(p, dict) for p in value):
        other = [str(p.get("type")) for p in value if p.get("type") != "text" or not isinstance(p.get("text"), str)]
        if not other:
            return "".join(p["text"] for p in value)
        raise TaskDataError(f"{where} has a content part of type {other[0]!r}; only text parts are read")
    kind = "no content" if value is None else f"content of type {type(value).__name__}"
    raise TaskDataError(f"{where} has {kind}; a turn's content must be text")


def _turn(value, where: str) -> dict:
    """One turn as ``{"role", "content"}`` (and its ``weight``, where it has one); TaskDataError
    naming ``where`` if it is not one."""
    if not isinstance(value, dict):
        raise TaskDataError(f"{where} is {type(value).__name__} {str(value)[:40]!r}, not a turn "
                            f"({{\"role\": ..., \"content\": ...}})")
    if value.get("role") is not None:
        roles, role, content = OPENAI_ROLES, value["role"], value.get("content")
    elif value.get("from") is not None:  # ShareGPT
        roles, role, content = SHAREGPT_ROLES, value["from"], value.get("value")
    else:
        raise TaskDataError(f"{where} has keys {sorted(map(str, value))[:6]}; a turn has role and content "
                            f"(or ShareGPT's from and value)")
    if role not in roles:
        raise TaskDataError(f"{where} has role {role!r}; allowed: {', '.join(roles)}")
    turn = {"role": roles[role], "content": _content(content, where)}
    if value.get("weight") is not None:  # OpenAI's and axolotl's: 0 = not trained on
        turn["weight"] = value["weight"]
    return turn


def split_conversation(value, where: str) -> tuple[list[dict], str]:
    """A conversation's prompt turns and its completion (the last turn, the assistant's, after a
    user turn). TaskDataError if it is not a conversation; Unusable if it holds no example."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # Parquet: an array of turns
        value = value.tolist()
    if isinstance(value, str) and value.lstrip().startswith("["):  # a list of turns saved as JSON text
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise TaskDataError(f"{where} is not valid JSON: {exc}") from None
    if isinstance(value, str):
        raise TaskDataError(f"{where} holds text, not a list of turns (as JSON Lines, a JSON array or "
                            f"Parquet hold them, or a JSON list in a cell)")
    if not isinstance(value, (list, tuple)) or not value:
        raise TaskDataError(f"{where} is not a non-empty list of turns")
    turns = [_turn(t, f"{where}, turn {i + 1}") for i, t in enumerate(value)]
    late = [i for i, t in enumerate(turns) if t["role"] == "system" and i > 0]
    if late:
        raise TaskDataError(f"{where}, turn {late[0] + 1} is a system turn; a system turn may only come first")
    last = turns[-1]
    if last["role"] != "assistant":
        raise Unusable(f"ending with a {last['role']} turn")
    if not last["content"].strip():
        raise Unusable("ending with an empty assistant turn")
    if last.get("weight") == 0:
        raise Unusable("whose last assistant turn has weight 0")
    if len(turns) < 2 or turns[-2]["role"] != "user":
        raise Unusable("without a user turn right before the last assistant turn")
    return [{"role": t["role"], "content": t["content"]} for t in turns[:-1]], last["content"]


def conversation_rows(values, task: str, where: str) -> tuple[list, list, dict]:
    """Each conversation's prompt turns (as JSON) and completion, None for one with nothing to
    train on, and how many of those by reason; TaskDataError naming the row (``row N of where``)
    of one that is not a conversation, or if none is usable."""
    texts, labels, unusable = [], [], {}
    for position, value in enumerate(values):
        try:
            prompt, answer = split_conversation(value, f"{task}: row {position + 1} of {where}")
        except Unusable as why:  # left out and counted, as rows without a text or label are
            unusable[f"conversation(s) {why}"] = unusable.get(f"conversation(s) {why}", 0) + 1
            texts.append(None)
            labels.append(None)
            continue
        texts.append(json.dumps(prompt, ensure_ascii=False))
        labels.append(answer)
    if len(unusable) and not any(t is not None for t in texts):
        raise TaskDataError(f"{task}: no conversation of {where} ends with an assistant turn after a "
                            f"user turn: {', '.join(f'{n} {why}' for why, n in unusable.items())}")
    return texts, labels, unusable


def read_conversations(df, cfg, path):
    """The file's rows as ``text`` (the prompt turns, as JSON) and ``label`` (the completion)."""
    import pandas as pd

    columns = {"task.messages_column": cfg.messages_column, "task.split_column": cfg.split_column}
    for key, column in columns.items():
        if column is not None and column not in df.columns:
            raise TaskDataError(f"task {cfg.name}: column(s) [{column!r}] not in {path}; its columns: "
                                f"{[str(c)[:40] for c in list(df.columns)[:20]]} ({key})")
    texts, labels, unusable = conversation_rows(df[cfg.messages_column], f"task {cfg.name}", str(path))
    keep = [t is not None for t in texts]
    out = pd.DataFrame({"text": texts, "label": labels}, index=df.index)[keep]
    out.attrs["dropped"] = unusable
    if cfg.split_column:
        out["split"] = df[cfg.split_column][keep]
    out.attrs["source"] = f"file:{Path(path).resolve()}"
    return out


def conversation_hint(df) -> str:
    """Why a text column may be missing: the file holds chat conversations, a list of turns a row."""
    column = next((c for c in df.columns if df[c].dtype == object and looks_like_conversations(df[c])), None)
    if column is None:
        return ""
    return (f". Column {str(column)[:40]!r} holds chat conversations (lists of turns): to train on each "
            f"one's last assistant turn, set task.messages_column={column} task.task_type=generation")


def looks_like_conversations(values) -> bool:
    """Whether a column's first value is a list of turns (for the hint of a missing text column)."""
    first = values.iloc[0] if len(values) else None
    if hasattr(first, "tolist") and not isinstance(first, (str, bytes)):
        first = first.tolist()
    return (isinstance(first, (list, tuple)) and bool(first) and isinstance(first[0], dict)
            and ({"role", "content"} <= set(first[0]) or {"from", "value"} <= set(first[0])))


def readable(text: str) -> str:
    """A conversation's prompt turns (their JSON) as lines of ``role: content``, for display."""
    try:
        return "\n".join(f"{t['role']}: {t['content']}" for t in json.loads(text))
    except (ValueError, TypeError, KeyError):
        return text
