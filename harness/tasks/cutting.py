"""Cutting a text to a token budget at the end(s) a strategy keeps, and what an encoded split is.

``head`` keeps the start of a text, ``tail`` its end, ``head_tail`` a quarter from the start and
the rest from the end (Sun et al. 2019 found head+tail best for long documents). The cut is made
on the text at token boundaries (from the tokenizer's offsets), so it works for any fast
tokenizer, encoder or decoder. Task types (:mod:`harness.tasks.types`) cut with these; the token
cache (:mod:`harness.tasks.encoding`) stores what they encode.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

STRATEGIES = ("head", "tail", "head_tail")


@dataclass
class Encoded:
    examples: list[dict]
    n_truncated: int
    cached: bool = False
    # Tokens cut from each cut example (a lower bound for a text first cut in characters).
    tokens_cut: list[int] = field(default_factory=list)


# A token is rarely longer than this many characters: a text is cut to CHARS_PER_TOKEN characters
# per token of its budget (at the end it keeps) before it is tokenized, so that one huge line
# costs the tokenizer no more than max_length tokens' worth of work and memory.
CHARS_PER_TOKEN = 50
_VISIBLE = re.compile(r"\S")


def cap_chars(text: str, budget: int, strategy: str) -> tuple[str, bool]:
    """``text`` cut to ``CHARS_PER_TOKEN * budget`` characters at the end(s) ``strategy`` keeps
    (head_tail: that many from each end), and whether anything but whitespace was cut away."""
    cap = CHARS_PER_TOKEN * max(budget, 1)
    if len(text) <= (2 * cap if strategy == "head_tail" else cap):
        return text, False
    if strategy == "head":
        return text[:cap], bool(_VISIBLE.search(text, cap))
    if strategy == "tail":
        return text[-cap:], bool(_VISIBLE.search(text, 0, len(text) - cap))
    return text[:cap] + " " + text[-cap:], bool(_VISIBLE.search(text, cap, len(text) - cap))


def cut_to_fit(ids: list[int], render, text: str, tokenizer, room: int, max_length: int, budget: int,
               strategy: str) -> tuple[list[int], bool]:
    """A prompt's ``ids`` (``render(text)``) made again from ``text`` cut to ``budget`` tokens from
    ``strategy``'s side, the budget shrinking by what the template's seams add, until they fit
    with an answer of ``room`` tokens in ``max_length`` (or the budget runs out); and whether
    the text was cut."""
    cut = False
    while len(ids) + room > max_length and budget >= 1:
        kept, _ = cut_texts([text], tokenizer, budget, strategy)
        ids, cut = render(kept[0]), True
        budget -= max(1, len(ids) + room - max_length)
    return ids, cut


def cut_texts(texts: list[str], tokenizer, budget: int, strategy: str,
              lost: list[int] | None = None) -> tuple[list[str], int]:
    """Shorten every text longer than ``budget`` tokens; return the texts and how many were cut
    (and append to ``lost``, when given, the tokens each cut text lost).

    Texts far longer than the budget are first cut in characters (:func:`cap_chars`), so the
    tokenizer never sees more than ``CHARS_PER_TOKEN`` characters per token of the budget; a text
    cut there is counted as cut even if what is left fits, and what it lost is counted from what
    the characters kept (a lower bound)."""
    budget = max(budget, 1)
    capped = [cap_chars(t, budget, strategy) for t in texts]
    texts = [t for t, _ in capped]
    offsets = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    out, n_cut = [], 0
    for text, spans, (_, shortened) in zip(texts, offsets, capped):
        if len(spans) <= budget:
            out.append(text)
            n_cut += shortened
            if shortened and lost is not None:
                lost.append(1)
            continue
        n_cut += 1
        if lost is not None:
            lost.append(len(spans) - budget)
        if strategy == "head":
            out.append(text[:spans[budget - 1][1]])
        elif strategy == "tail":
            out.append(text[spans[-budget][0]:])
        else:
            head = budget // 4
            tail = budget - head
            out.append((text[:spans[head - 1][1]] + " " if head else "") + text[spans[-tail][0]:])
    return out, n_cut
