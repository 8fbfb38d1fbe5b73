"""A conversation's prompt turns through the tokenizer's chat template, fitted to ``task.max_length``
(the turns come from :mod:`harness.tasks.conversations`).

A conversation longer than ``task.max_length`` loses its earliest turns first (a system turn is
kept), while it still ends with the last user turn; a last user turn that alone leaves no room is
cut from the side ``task.truncation`` keeps, as a plain prompt is, and a system turn that leaves
no room even then goes too. Cut conversations are counted as cut prompts.
"""
from __future__ import annotations

import json

from harness.tasks.data import TaskDataError


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
        for turn in json.loads(text):
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
    from harness.tasks.cutting import cut_to_fit

    ids, last = render_conversation(task, tokenizer, turns), turns[-1]

    def with_last(content: str) -> list[int]:
        return render_conversation(task, tokenizer, [*turns[:-1], {**last, "content": content}])

    if len(ids) + answer <= max_length:
        return ids
    budget = max_length - len(with_last("")) - answer
    if budget < 1:
        return None
    return cut_to_fit(ids, with_last, last["content"], tokenizer, answer, max_length, budget, strategy)[0]
