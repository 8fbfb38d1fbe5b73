"""Chat conversations as a generation task (task.messages_column, harness.tasks.conversations): the
last assistant turn is the completion and the only thing trained on; the turns before it are
the prompt, through the chat template; long conversations lose their earliest turns first; a
file of conversations read without the setting, or a conversation that cannot be one, is refused
in one line before anything trains."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from harness.models.load import load_model
from harness.tasks import Split
from harness.tasks.chat import fit_turns
from harness.tasks.conversations import Unusable, split_conversation
from harness.tasks.data import TaskDataError
from harness.tasks.generation import Generation
from harness.tasks.scoring.lm import IGNORE
from harness.job.validation import validate
from tests.conftest import compose_config
from tests.test_bad_input import run_harness

LM = ["model=tiny_llama", "task=synthetic", "trainer=smoke", "task.task_type=generation"]
TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}"
            "{% if add_generation_prompt %}<assistant> {% endif %}")


def turns(*pairs):
    return [{"role": role, "content": content} for role, content in pairs]


@pytest.fixture(scope="module")
def chat_tok():
    cfg = validate(compose_config(LM))
    tok = load_model(cfg.model, cfg.quant, 0, torch.device("cpu"), causal_lm=True).tokenizer
    tok.chat_template = TEMPLATE
    return tok


def _kind(**settings):
    cfg = compose_config(LM).task
    cfg.messages_column = "messages"
    for key, value in settings.items():
        setattr(cfg, key, value)
    return Generation().for_task(cfg)


def test_openai_and_sharegpt_turns_split_into_prompt_and_completion():
    prompt, answer = split_conversation(turns(("system", "be brief"), ("user", "hi"), ("assistant", "hello"),
                                              ("user", "two plus two?"), ("assistant", "4")), "row 1")
    assert answer == "4" and [t["role"] for t in prompt] == ["system", "user", "assistant", "user"]
    sharegpt = [{"from": "human", "value": "two plus two?"}, {"from": "gpt", "value": "4"}]
    assert split_conversation(sharegpt, "row 1") == (turns(("user", "two plus two?")), "4")
    parquet = np.array(turns(("user", "q"), ("assistant", "a")), dtype=object)  # Parquet reads an array
    assert split_conversation(parquet, "row 1")[1] == "a"


def test_openai_variants_are_read_as_they_are_meant():
    parts = [{"role": "developer", "content": "be brief"},  # OpenAI's newer name for the system turn
             {"role": "user", "content": [{"type": "text", "text": "two plus "}, {"type": "text", "text": "two?"}]},
             {"role": "assistant", "content": 4, "weight": 1}]
    assert split_conversation(parts, "row 1") == (turns(("system", "be brief"), ("user", "two plus two?")), "4")
    as_text = json.dumps(turns(("user", "q"), ("assistant", "a")))  # a CSV or Parquet export's cell
    assert split_conversation(as_text, "row 1") == (turns(("user", "q")), "a")


@pytest.mark.parametrize("value, needle", [
    (turns(("user", "q"), ("tool", "x"), ("assistant", "a")),
     "row 3, turn 2 has role 'tool'; allowed: system, developer, user, assistant"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}, {"role": "assistant", "content": "a"}],
     "row 3, turn 1 has a content part of type 'image_url'; only text parts are read"),
    ([{"role": "user", "content": None}, {"role": "assistant", "content": "a"}],
     "row 3, turn 1 has no content; a turn's content must be text"),
    (turns(("user", "q"), ("system", "s"), ("assistant", "a")), "row 3, turn 2 is a system turn; a system turn may only come first"),
    ("the film was good", "row 3 holds text, not a list of turns"),
    ("[{'role': 'user'}]", "row 3 is not valid JSON: Expecting property name"),
    ([{"speaker": "x"}], "row 3, turn 1 has keys ['speaker']; a turn has role and content"),
    ([], "row 3 is not a non-empty list of turns"),
])
def test_what_is_not_a_conversation_is_refused_naming_its_row_and_turn(value, needle):
    with pytest.raises(TaskDataError) as err:
        split_conversation(value, "row 3")
    assert str(err.value).startswith(needle), str(err.value)


@pytest.mark.parametrize("value, reason", [
    (turns(("user", "q")), "ending with a user turn"),
    (turns(("user", "q"), ("assistant", " ")), "ending with an empty assistant turn"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}],
     "whose last assistant turn has weight 0"),
    (turns(("system", "s"), ("assistant", "a")), "without a user turn right before the last assistant turn"),
    (turns(("user", "q"), ("assistant", "a"), ("assistant", "b")), "without a user turn right before"),
])
def test_a_conversation_with_nothing_to_train_on_is_unusable_not_an_error(value, reason):
    with pytest.raises(Unusable, match="^" + reason):
        split_conversation(value, "row 3")


def test_only_the_last_assistant_turn_is_trained_on_after_the_rendered_conversation(chat_tok):
    kind = _kind()
    prompt, answer = split_conversation(turns(("user", "hi"), ("assistant", "hello"), ("user", "two plus two"),
                                              ("assistant", "4")), "row 1")
    enc = kind.encode_examples(Split([json.dumps(prompt)], [answer]), chat_tok, 128, "tail")
    example = enc.examples[0]
    rendered = chat_tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    assert rendered == "<user> hi <assistant> hello <user> two plus two <assistant> "
    assert example["input_ids"][:example["n_prompt"]] == chat_tok(rendered, add_special_tokens=False)["input_ids"]
    batch = kind.collator(chat_tok)(enc.examples)
    labels = batch["labels"][0]
    assert labels[labels != IGNORE].tolist() == chat_tok("4", add_special_tokens=False)["input_ids"] + [chat_tok.eos_token_id]
    assert enc.n_truncated == 0


def test_a_system_prompt_is_added_where_a_conversation_has_none(chat_tok):
    ids = _kind(system_prompt="be brief").render(chat_tok, json.dumps(turns(("user", "hi"))))
    assert chat_tok.decode(ids) == chat_tok.decode(chat_tok("<system> be brief <user> hi <assistant> ",
                                                            add_special_tokens=False)["input_ids"])
    own = _kind(system_prompt="be brief").render(chat_tok, json.dumps(turns(("system", "mine"), ("user", "hi"))))
    assert "mine" in chat_tok.decode(own) and "brief" not in chat_tok.decode(own)


def test_a_long_conversation_loses_its_earliest_turns_then_its_last_turns_start(chat_tok):
    kind = _kind()
    history = [("user", f"question {i}") if i % 2 == 0 else ("assistant", f"answer {i}") for i in range(12)]
    prompt = turns(("system", "sys"), *history, ("user", "last question"))
    assert len(kind.render(chat_tok, json.dumps(prompt))) > 200
    enc = kind.encode_examples(Split([json.dumps(prompt)], ["ok"]), chat_tok, 96, "tail")
    example = enc.examples[0]
    text = chat_tok.decode(example["input_ids"][:example["n_prompt"]], skip_special_tokens=True)  # '<', '>' unknown
    assert enc.n_truncated == 1 and enc.tokens_cut == [240 + 3 - 96] and len(example["input_ids"]) <= 96
    # the system turn kept; the earliest turns gone, whole; resumed with a user turn
    assert text == "system sys user question 10 assistant answer 11 user last question assistant"
    assert example["input_ids"][example["n_prompt"]:] == chat_tok("ok", add_special_tokens=False)["input_ids"] + [chat_tok.eos_token_id]
    long_last = turns(("user", "start " + "middle " * 40 + "end"))  # the last user turn alone is too long
    enc = kind.encode_examples(Split([json.dumps(long_last)], ["ok"]), chat_tok, 48, "tail")
    text = chat_tok.decode(enc.examples[0]["input_ids"][:enc.examples[0]["n_prompt"]], skip_special_tokens=True)
    assert enc.n_truncated == 1 and len(enc.examples[0]["input_ids"]) <= 48
    assert text.startswith("user") and text.endswith("middle end assistant") and "start" not in text


def test_a_tokenizer_without_a_chat_template_is_refused(chat_tok):
    template, chat_tok.chat_template = chat_tok.chat_template, None
    try:
        with pytest.raises(TaskDataError, match="conversations are rendered by the tokenizer's chat template"):
            _kind().render(chat_tok, json.dumps(turns(("user", "hi"))))
    finally:
        chat_tok.chat_template = template


def _conversations(path, n=40):
    rows = [{"messages": turns(*([("system", "add")] if i % 4 == 0 else []), ("user", f"{i % 5} plus {i % 3}"),
                               ("assistant", str(i % 5 + i % 3)))} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return rows


def test_a_conversation_file_trains_through_the_run_and_keeps_each_reference(store_path, tmp_path, monkeypatch):
    from harness.job.runner import run_job
    from harness.models import load
    from harness.results import load_answers
    from tests.conftest import tiny_config

    rows = _conversations(tmp_path / "chat.jsonl")
    made = load.load_tokenizer

    def with_template(*args, **kwargs):  # the tiny model's tokenizer, given a chat template
        tok = made(*args, **kwargs)
        tok.chat_template = TEMPLATE
        return tok

    monkeypatch.setattr(load, "load_tokenizer", with_template)
    row = run_job(tiny_config(store_path, "model=tiny_llama", "task=jsonl", f"task.data_path={tmp_path / 'chat.jsonl'}",
                              "task.messages_column=messages", "task.task_type=generation"))
    assert row["status"] == "finished", row.get("error")
    answers = load_answers(store_path)
    completions = {r["messages"][-1]["content"] for r in rows}
    assert len(answers) == row["n_test"] and set(answers["reference"]) <= completions
    # the dashboard shows each test example's turns as a reader would write them, not their JSON
    from harness.dashboard.data import StoreView
    from harness.dashboard.examples import side, test_texts

    view = StoreView(store_path)
    stored = next(r.to_dict() for _, r in view.snapshot().raw.iterrows())
    texts, why = test_texts(stored, side(stored, view.predictions([stored["run_id"]])[stored["run_id"]]).reference)
    assert not why and len(texts) == row["n_test"]
    assert all(t.startswith(("system: add\nuser: ", "user: ")) and " plus " in t for t in texts), texts[:3]


@pytest.mark.parametrize("extra, needle", [
    ([], "its columns: ['messages']. Column 'messages' holds chat conversations (lists of turns): to train on "
         "each one's last assistant turn, set task.messages_column=messages task.task_type=generation"),
    (["task.messages_column=messages"], "task.messages_column trains on each conversation's last assistant turn: "
                                        "set task.task_type=generation, got single_label"),
    (["task.messages_column=messages", "task.task_type=generation"],
     "task.messages_column: conversations are rendered by the tokenizer's chat template"),
    (["task.messages_column=messages", "task.task_type=generation", "task.prompt_template='q: {text}'"],
     "task.prompt_template applies to a text column, not to conversations"),
    (["task.messages_column=turns", "task.task_type=generation"], "column(s) ['turns'] not in"),
])
def test_a_conversation_file_read_wrongly_is_refused_in_one_line(tmp_path, extra, needle):
    _conversations(tmp_path / "chat.jsonl")
    store = tmp_path / "results.sqlite"
    ran = run_harness(["model=tiny_llama", "trainer=smoke", "task=jsonl", f"task.data_path={tmp_path / 'chat.jsonl'}",
                       f"store.url={store}", *extra], tmp_path)
    assert ran.code == 2 and len(ran.err_lines) == 1, ran.err
    assert needle in ran.err_lines[0]
    assert not store.exists()


def test_a_parquet_file_of_conversations_reads_as_jsonl_does(tmp_path, chat_tok):
    from harness.tasks.files import read_table, select_columns

    rows = _conversations(tmp_path / "chat.jsonl", 8)
    pd.DataFrame(rows).to_parquet(tmp_path / "chat.parquet")
    cfg = compose_config(["task=parquet", f"task.data_path={tmp_path / 'chat.parquet'}", "task.task_type=generation",
                          "task.messages_column=messages"]).task
    frame = select_columns(read_table(tmp_path / "chat.parquet", cfg), cfg, tmp_path / "chat.parquet")
    assert list(frame["label"]) == [r["messages"][-1]["content"] for r in rows]
    assert [json.loads(t) for t in frame["text"]] == [r["messages"][:-1] for r in rows]


def test_unusable_conversations_are_left_out_and_counted_and_a_file_of_none_is_refused(tmp_path):
    from harness.tasks.load import load_rows

    rows = _conversations(tmp_path / "chat.jsonl", 12)
    rows += [{"messages": turns(("user", "unanswered"))}] * 2 + [{"messages": turns(("user", "q"), ("assistant", ""))}]
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = compose_config(["task=jsonl", f"task.data_path={tmp_path / 'chat.jsonl'}", "task.task_type=generation",
                          "task.messages_column=messages"]).task
    frame = load_rows(cfg)
    assert len(frame) == 12 and frame.attrs["dropped"] == {"conversation(s) ending with a user turn": 2,
                                                           "conversation(s) ending with an empty assistant turn": 1}
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(r) for r in rows[12:]))
    with pytest.raises(TaskDataError, match="no conversation of .* ends with an assistant turn after a user turn: "
                                            "2 conversation.s. ending with a user turn, 1 conversation"):
        load_rows(cfg)


def test_a_template_that_refuses_a_conversation_names_its_opening(chat_tok):
    strict = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}"
              "{% endif %}{{ m['content'] }} {% endfor %}")
    template, chat_tok.chat_template = chat_tok.chat_template, strict
    try:
        with pytest.raises(TaskDataError, match="refuses the conversation that begins 'how many legs' "
                                                r"\(roles \['system', 'user'\]\): no system role"):
            _kind().render(chat_tok, json.dumps(turns(("system", "s"), ("user", "how   many\nlegs"))))
    finally:
        chat_tok.chat_template = template


def test_a_system_turn_that_leaves_no_room_goes_last(chat_tok):
    prompt = turns(("system", "you are " + "very " * 20 + "helpful"), ("user", "q"))
    enc = _kind().encode_examples(Split([json.dumps(prompt)], ["ok"]), chat_tok, 32, "tail")
    text = chat_tok.decode(enc.examples[0]["input_ids"][:enc.examples[0]["n_prompt"]], skip_special_tokens=True)
    assert enc.n_truncated == 1 and text == "user q assistant" and len(enc.examples[0]["input_ids"]) <= 32


def test_fitting_a_long_conversation_renders_it_a_few_times_not_once_per_turn():
    history = [("user", f"q{i}") if i % 2 == 0 else ("assistant", f"a{i}") for i in range(400)]
    conversation, calls = turns(*history, ("user", "last")), []

    def length(kept):
        calls.append(len(kept))
        return 3 * len(kept)

    kept, dropped = fit_turns(conversation, length, 2, 62)  # room for 20 turns of 3 tokens
    assert dropped and len(kept) == 19 and kept[0]["role"] == "user" and kept[-1]["content"] == "last"
    assert len(calls) <= 9  # a binary search over 201 places to start


def test_a_sub_task_of_a_multi_task_run_is_checked_as_a_task_is(tmp_path):
    from harness.config import ConfigError

    _conversations(tmp_path / "chat.jsonl")
    base = ["model=tiny_bert", "trainer=smoke", "task=multi_synthetic"]
    sub = ["task.subtasks.sentiment.loader=jsonl", f"task.subtasks.sentiment.data_path={tmp_path / 'chat.jsonl'}",
           "task.subtasks.sentiment.messages_column=messages"]
    with pytest.raises(ConfigError, match="task.messages_column trains on each conversation's last assistant turn: "
                                          "set task.task_type=generation, got single_label"):
        validate(compose_config([*base, *sub]))
    with pytest.raises(ConfigError, match="task.subtasks.sentiment: a multi-task run trains one classification head "
                                          "over its sub-tasks' labels; task.task_type=generation is a prompt task"):
        validate(compose_config([*base, *sub, "task.subtasks.sentiment.task_type=generation"]))


def test_the_cut_note_says_whole_turns_went_first(chat_tok):
    from harness.tasks.encoding import cut_line, cut_summary

    history = [("user", f"question {i}") if i % 2 == 0 else ("assistant", f"answer {i}") for i in range(12)]
    enc = _kind().encode_examples(Split([json.dumps(turns(*history, ("user", "last")))], ["ok"]), chat_tok, 64, "tail")
    line = cut_line(cut_summary({"train": enc}, 64, "tail", turns=True))
    assert line.startswith("examples longer than task.max_length=64 were cut, each keeping its latest turns (the "
                           "earliest dropped whole first) and the end of its last turn (task.truncation=tail): train 1 of 1")
    assert "turns" not in cut_summary({"train": enc}, 64, "tail")  # a plain task's details as they were
