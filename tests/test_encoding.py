"""Truncation strategies cut where they say and are counted; tokenized splits come from the cache."""
from __future__ import annotations

import pytest

from harness.models.load import build_tiny
from harness.tasks import Split
from harness.tasks.cutting import cut_texts
from harness.tasks.encoding import encode_cached, encode_split
from harness.tasks.multiple_choice import MultipleChoice
from harness.tasks.types import MultiLabel, SingleLabel
from tests.conftest import compose_config, validate


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    cfg = validate(compose_config(["model=tiny_bert"]))
    return AutoTokenizer.from_pretrained(build_tiny(cfg.model.tiny))


def plain(tokenizer, ids) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True).replace("##", "").replace(" ", "")


LONG = "aa bb cc dd ee ff gg hh ii jj"  # the tiny tokenizer: one piece per letter


def test_each_strategy_keeps_its_end_of_a_long_text(tokenizer):
    (head,), n = cut_texts([LONG], tokenizer, 8, "head")
    assert head == "aa bb cc dd" and n == 1
    (tail,), _ = cut_texts([LONG], tokenizer, 8, "tail")
    assert tail == "gg hh ii jj"
    (both,), _ = cut_texts([LONG], tokenizer, 8, "head_tail")
    assert both == "aa hh ii jj"  # a quarter of the budget from the start, the rest from the end
    kept, n = cut_texts(["ab", LONG], tokenizer, 30, "head")
    assert kept == ["ab", LONG] and n == 0


def test_encoded_splits_fit_max_length_and_count_the_truncated(tokenizer):
    split = Split(["ab", LONG, LONG + " kk"], [0, 1, 1])
    enc = encode_split(split, tokenizer, 10, "tail", SingleLabel())
    assert enc.n_truncated == 2
    assert all(len(e["input_ids"]) <= 10 for e in enc.examples)
    assert plain(tokenizer, enc.examples[1]["input_ids"]) == "gghhiijj"  # the last 8 pieces


def test_multiple_choice_cuts_the_context_and_keeps_every_choice(tokenizer):
    split = Split([LONG], [1], choices=[["xy", "zz", "qq"]])
    enc = encode_split(split, tokenizer, 12, "tail", MultipleChoice())
    ids = enc.examples[0]["input_ids"]
    assert len(ids) == 3 and all(len(s) <= 12 for s in ids) and enc.n_truncated == 1
    assert [plain(tokenizer, s)[-2:] for s in ids] == ["xy", "zz", "qq"]


def test_second_encoding_comes_from_the_cache_and_settings_change_the_key(tokenizer, tmp_path):
    split = Split(["ab cd", LONG], [0, 1])
    kind = SingleLabel()
    first = encode_cached(split, tokenizer, 10, "head", tmp_path, kind)
    again = encode_cached(split, tokenizer, 10, "head", tmp_path, kind)
    assert not first.cached and again.cached
    assert again.examples == first.examples and again.n_truncated == first.n_truncated == 1
    assert not encode_cached(split, tokenizer, 12, "head", tmp_path, kind).cached
    assert not encode_cached(split, tokenizer, 10, "tail", tmp_path, kind).cached
    assert not encode_cached(Split(["ab cd", LONG], [1, 1]), tokenizer, 10, "head", tmp_path, kind).cached
    assert len(list(tmp_path.glob("*.json"))) == 4


def test_an_edited_chat_template_is_a_new_cache_key(tokenizer, tmp_path):
    """Prompts render through the chat template: a model folder whose template was edited (the
    same vocabulary) must not reuse the tokens of the old one."""
    split, kind = Split(["ab cd", LONG], [0, 1]), SingleLabel()
    before = getattr(tokenizer, "chat_template", None)
    try:
        for template in ("{{ messages }}", "{{ messages }} edited"):
            tokenizer.chat_template = template
            assert not encode_cached(split, tokenizer, 10, "head", tmp_path, kind).cached
            assert encode_cached(split, tokenizer, 10, "head", tmp_path, kind).cached
    finally:
        tokenizer.chat_template = before


def test_two_task_types_never_share_a_cache_file(tokenizer, tmp_path):
    split = Split(["ab cd", LONG], [0, 1])
    single = encode_cached(split, tokenizer, 10, "head", tmp_path, SingleLabel())
    multi = encode_cached(split, tokenizer, 10, "head", tmp_path, MultiLabel())
    assert not single.cached and not multi.cached  # same data and settings, another type
    assert len(list(tmp_path.glob("*.json"))) == 2
    assert encode_cached(split, tokenizer, 10, "head", tmp_path, MultiLabel()).cached


def test_each_task_type_encodes_and_batches_its_own_way(tokenizer):
    mc = Split(["ab cd", LONG], [2, 0], task_ids=[1, 0], choices=[["xy", "zz", "qq"]] * 2)
    enc = encode_split(mc, tokenizer, 12, "tail", MultipleChoice())
    assert MultipleChoice().encode(mc, tokenizer, 12, "tail") == enc  # task ids included
    assert [len(e["input_ids"]) for e in enc.examples] == [3, 3]  # one sequence per choice
    assert [(e["labels"], e["task_ids"]) for e in enc.examples] == [(2, 1), (0, 0)]
    batch = MultipleChoice().collator(tokenizer)(enc.examples)
    assert batch["input_ids"].shape[:2] == (2, 3) and batch["task_ids"].tolist() == [1, 0]
    plain_split = Split(["ab cd", LONG], [[1, 0], [0, 1]], task_ids=[0, 1])
    enc = encode_split(plain_split, tokenizer, 12, "tail", MultiLabel())
    assert MultiLabel().encode(plain_split, tokenizer, 12, "tail") == enc
    assert all(isinstance(e["input_ids"][0], int) for e in enc.examples)  # one sequence per text
    assert [e["task_ids"] for e in enc.examples] == [0, 1]
    batch = MultiLabel().collator(tokenizer)(enc.examples)
    assert batch["input_ids"].dim() == 2 and batch["labels"].tolist() == [[1, 0], [0, 1]]


def test_a_run_records_truncation_and_reuses_tokens(run_tiny):
    first = run_tiny("task.max_length=8", "task.truncation=tail")
    second = run_tiny("task.max_length=8", "task.truncation=tail", "method=dora")  # same tokens
    import json

    assert first["status"] == second["status"] == "finished"
    assert first["n_truncated_train"] == first["n_train"]  # every synthetic text is longer than 8
    assert first["n_truncated_test"] == first["n_test"]
    assert json.loads(second["details_json"])["tokens_from_cache"] is True
