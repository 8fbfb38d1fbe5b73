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


def turns_of(text: str) -> list[dict]:
    return json.loads(text)


def fit_turns(turns: list[dict], length, room: int, max_length: int) -> tuple[list[dict], bool]:
    """The latest turns that fit with an answer of ``room`` tokens (``length(turns)``: the
    rendered prompt's tokens): the earliest dropped first, a system turn kept, the rest starting
    with a user turn; and whether any was dropped. A binary search over where the kept turns start
    (fewer turns render shorter), so a long conversation costs a few renders, not one per turn.
    May still be too long (the last user turn alone): the caller cuts its content."""
    head = turns[:1] if turns and turns[0]["role"] == "system" else []
    rest = turns[len(head):]
    starts = [i for i, t in enumerate(rest) if t["role"] == "user"] or [0]
    low, high = 0, len(starts) - 1  # the first start that fits, else the last one
    while low < high:
        mid = (low + high) // 2
        if length(head + rest[starts[mid]:]) + room <= max_length:
            high = mid
        else:
            low = mid + 1
    return head + rest[starts[low]:], starts[low] > 0


def _opening(turns: list[dict]) -> str:
    """A conversation named by its first user turn's opening, to find it in a file."""
    first = next((t["content"] for t in turns if t["role"] == "user"), turns[0]["content"] if turns else "")
    return f"that begins {' '.join(first.split())[:60]!r}"


def render_conversation(task, tokenizer, turns: list[dict]) -> list[int]:
    """A conversation's prompt turns (``task.system_prompt`` first where it has no system
    turn), rendered by the chat template up to the opening of the assistant's turn."""
    if not task.uses_chat(tokenizer):
        raise TaskDataError(f"task.messages_column: conversations are rendered by the tokenizer's chat "
                            f"template, and {getattr(tokenizer, 'name_or_path', '') or 'this tokenizer'} "
                            f"has none; use an instruction-tuned model's tokenizer")
    if task.system and turns[0]["role"] != "system":
        turns = [{"role": "system", "content": task.system}, *turns]
    try:
        rendered = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # noqa: BLE001 - the template's own refusal (jinja2), in one line
        raise TaskDataError(f"the chat template of {getattr(tokenizer, 'name_or_path', 'the tokenizer')} "
                            f"refuses the conversation {_opening(turns)} (roles "
                            f"{[t['role'] for t in turns][:8]}): {(str(exc).splitlines() or [''])[0][:200]}") from None
    return tokenizer(rendered, add_special_tokens=False)["input_ids"]


def conversation_prompts(task, tokenizer, texts, room, max_length, strategy, lost):
    """``PromptTask.prompts`` for conversations: the earliest turns dropped first (a system turn
    kept), then the last user turn's text cut from ``strategy``'s side; a system turn that
    still leaves no room goes too. A turn is first capped to what ``max_length`` tokens can
    hold (``cutting.cap_chars``), so a huge one costs no more to render than that."""
    from harness.tasks.cutting import cap_chars

    out, n_cut = [], 0
    for text, answer in zip(texts, room):
        turns, capped = [], False
        for turn in turns_of(text):
            content, cut = cap_chars(turn["content"], max_length, strategy)
            turns.append({**turn, "content": content})
            capped = capped or cut
        ids = render_conversation(task, tokenizer, turns)
        if len(ids) + answer <= max_length and not capped:
            out.append(ids)
            continue
        if lost is not None:
            lost.append(max(len(ids) + answer - max_length, 1))
        turns, _ = fit_turns(turns, lambda t: len(render_conversation(task, tokenizer, t)), answer, max_length)
        ids = _cut_last_turn(task, tokenizer, turns, answer, max_length, strategy)
        if ids is None and turns[0]["role"] == "system":  # the system turn alone leaves no room
            ids = _cut_last_turn(task, tokenizer, turns[1:], answer, max_length, strategy)
        if ids is None:
                    raise TaskDataError(f"an answer of {answer} tokens leaves no room for the conversation "
                                f"{_opening(turns)} in task.max_length={max_length}, even without its "
                                f"earlier turns; raise task.max_length")
        out.append(ids)
        n_cut += 1
    return out, n_cut

def _cut_last_turn(task, tokenizer, turns, answer, max_length, strategy) -> list[int] | None:
    """``turns`` rendered, the last one's text cut (from ``strategy``'s side) until they fit
    with an answer of ``answer`` tokens; None if the other turns and the template leave no room."""
    from harness.tasks.cutting import cut_texts

    ids, last = render_conversation(task, tokenizer, turns), turns[-1]
    overhead = len(render_conversation(task, tokenizer, [*turns[:-1], {**last, "content": ""}]))
    budget = max_length - overhead - answer
    if len(ids) + answer <= max_length:
        return ids
    if budget < 1:
        return None
    while len(ids) + answer > max_length and budget >= 1:  # re-cut at the template's seams
        kept, _ = cut_texts([last["content"]], tokenizer, budget, strategy)
        ids = render_conversation(task, tokenizer, [*turns[:-1], {**last, "content": kept[0]}])
        budget -= max(1, len(ids) + answer - max_length)
    return ids
