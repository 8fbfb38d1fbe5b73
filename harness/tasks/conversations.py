"""Chat conversations as prompt/completion pairs (``task.messages_column``).

A file of conversations, one per row, each a list of turns, as OpenAI's fine-tuning files and
Hugging Face chat datasets hold them (``{"role": "user", "content": "..."}``; ShareGPT's
``{"from": "human", "value": "..."}`` is read as the same), trains and scores a ``generation``
task on each conversation's last turn, which must be the assistant's: that turn is the
completion, and every turn before it (a system turn first, if any, then user and assistant turns)
is the prompt, rendered by the tokenizer's chat template up to the opening of the assistant's
turn. Earlier assistant turns are context, not trained on, so every row is one example whose
answer is scored as a generation task's.

A conversation longer than ``task.max_length`` loses its earliest turns first (a system turn is
kept), while it still ends with the last user turn; a last user turn that alone leaves no room is
cut from the side ``task.truncation`` keeps, as a plain prompt is. Cut conversations are counted
as cut prompts.
"""
from __future__ import annotations

import json
from pathlib import Path

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system"}


def _turn(value, where: str) -> dict:
    """One turn as ``{"role", "content"}``; TaskDataError naming ``where`` if it is not one."""
    from harness.tasks.data import TaskDataError

    if not isinstance(value, dict):
        raise TaskDataError(f"{where} is {type(value).__name__} {str(value)[:40]!r}, not a turn "
                            f"({{\"role\": ..., \"content\": ...}})")
    if "role" in value:
        role, content = value.get("role"), value.get("content")
        allowed = ROLES
    elif "from" in value:  # ShareGPT
        role, content = SHAREGPT_ROLES.get(str(value.get("from")), value.get("from")), value.get("value")
        allowed = tuple(SHAREGPT_ROLES)
    else:
        raise TaskDataError(f"{where} has keys {sorted(map(str, value))[:6]}; a turn has role and content "
                            f"(or ShareGPT's from and value)")
    if role not in ROLES:
        raise TaskDataError(f"{where} has role {role!r}; allowed: {', '.join(allowed)}")
    if not isinstance(content, str):
        kind = "no content" if content is None else f"content of type {type(content).__name__}"
        raise TaskDataError(f"{where} has {kind}; a turn's content must be text (parts such as images "
                            f"are not read)")
    return {"role": role, "content": content}


def split_conversation(value, where: str) -> tuple[list[dict], str]:
    """A conversation's prompt turns and its completion (the last turn, the assistant's)."""
    from harness.tasks.data import TaskDataError

    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # Parquet: an array of turns
        value = value.tolist()
    if isinstance(value, str):
        raise TaskDataError(f"{where} holds text, not a list of turns: conversations are read from JSON "
                            f"Lines, a JSON array or Parquet, where a row's turns are a list")
    if not isinstance(value, (list, tuple)) or not value:
        raise TaskDataError(f"{where} is not a non-empty list of turns")
    turns = [_turn(t, f"{where}, turn {i + 1}") for i, t in enumerate(value)]
    if turns[-1]["role"] != "assistant":
        raise TaskDataError(f"{where} ends with a {turns[-1]['role']} turn; its last turn must be the "
                            f"assistant's, the completion to train on")
    if not turns[-1]["content"].strip():
        raise TaskDataError(f"{where} ends with an empty assistant turn")
    late = [i for i, t in enumerate(turns) if t["role"] == "system" and i > 0]
    if late:
        raise TaskDataError(f"{where}, turn {late[0] + 1} is a system turn; a system turn may only come first")
    if not any(t["role"] == "user" for t in turns[:-1]):
        raise TaskDataError(f"{where} has no user turn before its last assistant turn")
    return turns[:-1], turns[-1]["content"]


def read_conversations(df, cfg, path):
    """The file's rows as ``text`` (the prompt turns, as JSON) and ``label`` (the completion)."""
    import pandas as pd

    from harness.tasks.data import TaskDataError

    columns = {"task.messages_column": cfg.messages_column, "task.split_column": cfg.split_column}
    for key, column in columns.items():
        if column is not None and column not in df.columns:
            raise TaskDataError(f"task {cfg.name}: column(s) [{column!r}] not in {path}; its columns: "
                                f"{[str(c)[:40] for c in list(df.columns)[:20]]} ({key})")
    texts, labels = [], []
    for position, value in enumerate(df[cfg.messages_column]):
        prompt, answer = split_conversation(value, f"task {cfg.name}: row {position + 1} of {path}")
        texts.append(json.dumps(prompt, ensure_ascii=False))
        labels.append(answer)
    out = pd.DataFrame({"text": texts, "label": labels}, index=df.index)
    if cfg.split_column:
        out["split"] = df[cfg.split_column]
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


def turns_of(text: str) -> list[dict]:
    return json.loads(text)


def fit_turns(turns: list[dict], length, room: int, max_length: int) -> tuple[list[dict], bool]:
    """The latest turns that fit with an answer of ``room`` tokens (``length(turns)``: the
    rendered prompt's tokens): the earliest dropped first, a system turn kept, the rest still
    starting with a user turn; and whether any was dropped. May still be too long (the last user
    turn alone): the caller cuts its content."""
    head = turns[:1] if turns and turns[0]["role"] == "system" else []
    rest = turns[len(head):]
    dropped = False
    while len(rest) > 1 and length(head + rest) + room > max_length:
        rest, dropped = rest[1:], True
        while len(rest) > 1 and rest[0]["role"] != "user":  # a conversation resumes with a user turn
            rest = rest[1:]
    return head + rest, dropped
