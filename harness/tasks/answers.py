"""How a generated answer is compared with the reference: ``normalized_match``'s normalization,
and the final answer of a longer completion (``task.answer_pattern``).

A chain-of-thought completion (GSM8K's "... #### 72", MetaMathQA's "... The answer is: 72") is
right when its final answer is: the pattern's last non-empty match in the text (its first group,
or the whole match). A text without a match is its own answer, so a prediction that is just "72" is
scored as "72", and the majority baseline (the most common final answer in training) needs no
pattern of its own. A number is compared as a number: "1,000", "$1000" and "1000.00" are one
answer ("1000"), as peft's MetaMathQA benchmark compares decimals; "3,5" or "2 3" are not numbers.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache

_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(,\d{3})+(\.\d*)?$")


def normalize(text: str) -> str:
    """Case, punctuation and whitespace taken out of an answer (``normalized_match``)."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", str(text).lower())).strip()


def canonical_number(text: str) -> str | None:
    """The number ``text`` writes, in one form ("1,000.50" -> "1000.5"), else None."""
    bare = text.strip().removeprefix("$").strip().rstrip(".")
    if _THOUSANDS.match(bare):  # 1,000 or 12,345.5: separators, not a list of numbers
        bare = bare.replace(",", "")
    try:
        value = Decimal(bare)
    except (InvalidOperation, ValueError):
        return None
    if not value.is_finite():
        return None
    value = value.normalize()
    return f"{value:f}" if value != 0 else "0"


@lru_cache(maxsize=8)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def final_answer(text: str, pattern: str | None) -> str:
    """The answer a completion ends with (see the module's docstring); the text, stripped, when
    ``pattern`` is None."""
    text = str(text).strip()
    if pattern is None:
        return text
    matches = list(_compiled(pattern).finditer(text))
    last = next((m for m in reversed(matches) if m.group(0)), matches[-1] if matches else None)
    if last is not None:
        group = last.group(1) if last.re.groups else None
        text = (group if group is not None else last.group(0)).strip()
        text = text.split("\n", 1)[0].strip().rstrip(".!?").strip()
    number = canonical_number(text)
    return number if number is not None else text
