"""Hub instruction data (``loader: hub``): train on one dataset, test on another, read from local
copies of the hub's dataset repositories (MetaMathQA -> GSM8K, as peft's comparison does); and
generation scored on a completion's final answer (``task.answer_pattern``)."""
from __future__ import annotations

import json

import pytest

from harness.config import ConfigError
from harness.tasks import TaskDataError, load_task
from harness.tasks.answers import final_answer
from harness.tasks.generation import Generation
from tests.conftest import compose_config
from harness.job.validation import validate

GSM8K_CARD = """---
license: mit
configs:
- config_name: main
  data_files:
  - split: train
    path: main/train-*
  - split: test
    path: main/test-*
- config_name: socratic
  data_files:
  - split: train
    path: socratic/train-*
  - split: test
    path: socratic/test-*
---
# GSM8K
"""
PATTERN = '(?:####|[Tt]he answer is:?)\\s*((?:(?!####|[Tt]he answer is)[^\\n])+)'


def hub_copies(root, n_train=30, n_test=12):
    """<root>/meta-math/MetaMathQA (a JSON array, as that repo holds) and <root>/openai/gsm8k
    (configs in the card, Parquet files per config), in the layout of the hub repositories."""
    import datasets

    meta = root / "meta-math" / "MetaMathQA"
    meta.mkdir(parents=True)
    (meta / "README.md").write_text("---\nlicense: mit\n---\n# MetaMathQA\n")
    rows = [{"query": f"What is {i} plus {i % 7}?", "type": "GSM_Rephrased",
             "response": f"We add {i} and {i % 7}.\nThe answer is: {i + i % 7}",
             "original_question": ""} for i in range(n_train)]
    rows.append({"query": "A long one? " + "x" * 2000, "type": "MATH_AnsAug",
                 "response": "The answer is: 1", "original_question": ""})
    (meta / "MetaMathQA-395K.json").write_text(json.dumps(rows))
    gsm = root / "openai" / "gsm8k"
    (gsm / "README.md").parent.mkdir(parents=True)
    (gsm / "README.md").write_text(GSM8K_CARD)
    for config, tag in (("main", ""), ("socratic", "How many? ** ")):
        (gsm / config).mkdir()
        for split, n in (("train", 8), ("test", n_test)):
            data = {"question": [f"{tag}Sam has {i} apples and buys {1000 * (i % 2)}. How many?" for i in range(n)],
                    "answer": [f"{i}+{1000 * (i % 2)}={i + 1000 * (i % 2)}\n#### {i + 1000 * (i % 2):,}"
                               for i in range(n)]}
            datasets.Dataset.from_dict(data).to_parquet(str(gsm / config / f"{split}-00000-of-00001.parquet"))
    return root


def task(root, *overrides):
    return validate(compose_config(["model=tiny_llama", "task=metamathqa_gsm8k", f"task.data_path={root}",
                                    "task.train_size=null", "task.val_size=null", *overrides])).task


def test_train_and_test_come_from_two_hub_datasets_read_from_local_copies(tmp_path):
    cfg = task(hub_copies(tmp_path))
    data = load_task(cfg)
    assert (len(data.train) + len(data.validation), len(data.test)) == (30, 12)  # one long row out
    assert data.dropped == {"longer than task.max_chars=1300": 1}
    assert all(t.startswith("What is") for t in data.train.texts)  # MetaMathQA's queries
    assert data.test.texts[3] == "Sam has 3 apples and buys 1000. How many?"  # GSM8K main, test
    assert data.test.labels[3] == " 3+1000=1003\n#### 1,003"  # the whole reference, answer_prefix
    assert "train=local:" in data.source and "meta-math/MetaMathQA:train" in data.source
    assert "test=local:" in data.source and "openai/gsm8k/main:test" in data.source
    socratic = load_task(task(tmp_path, "task.hub_splits.test.subset=socratic"))
    assert socratic.test.texts[0].startswith("How many? **")  # the config named, not the first
    own = load_task(task(tmp_path, "+task.hub_splits.validation={dataset: openai/gsm8k, subset: main, "
                                   "split: train, text_column: question, label_column: answer}"))
    assert len(own.validation) == 8 and len(own.train) == 30  # validation from GSM8K's train split


def test_final_answers_are_compared_as_numbers_after_the_marker():
    assert final_answer("3+1000=1003\n#### 1,003", PATTERN) == "1003"
    assert final_answer("so 7 apples.\nThe answer is: 7.", PATTERN) == "7"
    assert final_answer("The answer is 2, then the answer is: $12.50\nAnd more", PATTERN) == "12.5"
    assert final_answer("12", PATTERN) == "12"  # no marker: the text is its own answer
    assert final_answer("#### seven", PATTERN) == "seven"
    assert final_answer("  Seven ", None) == "Seven"  # no pattern: the stripped text, as before


def test_generation_scores_the_final_answer_and_the_majority_answers_the_commonest(tmp_path):
    cfg = task(hub_copies(tmp_path))
    kind = Generation().for_task(cfg)
    refs = ["3+1000=1003\n#### 1,003", "1+0=1\n#### 1", "2+0=2\n#### 2"]
    preds = ["We add them.\nThe answer is: 1003", "1.0", "The answer is: 3"]
    m = kind.metrics(preds, refs, num_labels=0)
    assert m["accuracy"] == m["exact_match"] == pytest.approx(2 / 3)
    plain = Generation().for_task(task(tmp_path, "task.answer_pattern=null"))
    assert plain.metrics(preds, refs, num_labels=0)["accuracy"] == 0  # whole texts differ
    train = ["a\nThe answer is: 2", "b\nThe answer is: 2.0", "c\nThe answer is: 5"]
    assert kind.majority_prediction(train) == "2"
    assert kind.majority_metrics(train, ["x\n#### 2", "y\n#### 3"], 0)["accuracy"] == 0.5


@pytest.mark.parametrize("override,needle", [
    ("task.answer_pattern='(a)(b)'", "task.answer_pattern must have at most one group"),
    ("task.answer_pattern='(a'", "task.answer_pattern is not a regular expression"),
    ("~task.hub_splits.test", "task.hub_splits needs a test entry"),
    ("+task.hub_splits.dev={dataset: x}", "unknown split(s) ['dev']"),
    ("+task.hub_splits.test.config=main", "task.hub_splits.test: unknown key(s) ['config']; allowed: dataset, subset"),
    ("task.hub_splits.test.dataset=''", "task.hub_splits.test.dataset is empty"),
])
def test_bad_hub_task_settings_are_refused_in_one_line(tmp_path, override, needle):
    with pytest.raises(ConfigError, match=__import__("re").escape(needle)):
        task(tmp_path, override)


def test_a_missing_local_copy_or_column_is_named(tmp_path):
    root = hub_copies(tmp_path)
    with pytest.raises(TaskDataError, match=r"column\(s\) \['problem'\] not in openai/gsm8k/main:test"):
        load_task(task(root, "task.hub_splits.test.text_column=problem"))
    __import__("shutil").rmtree(root / "openai")
    with pytest.raises(TaskDataError, match="no local copy of openai/gsm8k at .*openai/gsm8k"):
        load_task(task(root))


def test_a_run_trains_on_one_dataset_and_scores_the_other_by_final_answer(run_tiny, tmp_path):
    root = hub_copies(tmp_path / "hub")
    row = run_tiny("model=tiny_llama", "task=metamathqa_gsm8k", f"task.data_path={root}", "method=lora",
                   "task.train_size=16", "task.val_size=4", "task.test_size=8", "task.max_new_tokens=8",
                   "task.max_length=96")
    assert row["status"] == "finished", row.get("error")
    details = json.loads(row["details_json"])
    assert "openai/gsm8k/main:test" in details["data_source"] and row["n_test"] == 8
    assert 0 <= row["accuracy"] <= 1 and row["majority_accuracy"] is not None and row["perplexity"] > 1


def test_odd_patterns_and_number_lists_do_not_hang_or_merge():
    assert final_answer("abc 12", r"(\d*)$") == "12"  # a pattern that can match empty ends
    assert final_answer("x = 5", r"=\s*(\d+)?|x") == "5"
    assert final_answer("#### 3,5", PATTERN) == "3,5" and final_answer("#### 2 3", PATTERN) == "2 3"
    assert final_answer("#### 12,345.50", PATTERN) == "12345.5"


def chat_copy(root):
    """<root>/HuggingFaceH4/no_robots in the hub repo's layout: Parquet files per split under data/
    with prompt, prompt_id, messages (role/content turns) and category columns."""
    import datasets

    repo = root / "HuggingFaceH4" / "no_robots"
    (repo / "data").mkdir(parents=True)
    (repo / "README.md").write_text("---\nlicense: cc-by-nc-4.0\nconfigs:\n- config_name: default\n  data_files:\n"
                                    "  - split: train\n    path: data/train-*\n  - split: test\n    path: data/test-*\n---\n")
    for split, n in (("train", 20), ("test", 6)):
        messages = [[{"role": "system", "content": "be brief"}] * (i % 2)
                    + [{"role": "user", "content": f"what is {i} plus one"}, {"role": "assistant", "content": str(i + 1)}]
                    for i in range(n)]
        messages[0] = messages[0][:-1]  # a conversation that ends with the user: left out, counted
        data = {"prompt": [m[-1]["content"] for m in messages], "prompt_id": [str(i) for i in range(n)],
                "messages": messages, "category": ["Chat"] * n}
        datasets.Dataset.from_dict(data).to_parquet(str(repo / "data" / f"{split}-00000-of-00001.parquet"))
    return root


def test_hub_chat_conversations_are_read_by_their_messages_column(tmp_path):
    root = chat_copy(tmp_path)
    splits = ("task.hub_splits={train: {dataset: HuggingFaceH4/no_robots, split: train}, "
              "test: {dataset: HuggingFaceH4/no_robots, subset: null, split: test}}")
    chat = ["task.messages_column=messages", "task.answer_pattern=null", "task.prompt_template=null",
            "task.chat_template=true", "task.answer_prefix=''"]
    cfg = task(root, splits, *chat)
    data = load_task(cfg)
    assert data.dropped == {"conversation(s) ending with a user turn": 2}
    assert len(data.test.texts) == 5 and data.test.labels == [str(i + 1) for i in range(1, 6)]
    first = json.loads(data.test.texts[0])
    assert first == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is 1 plus one"}]
    assert data.type.conversation
    with pytest.raises(TaskDataError, match=r"column\(s\) \['turns'\] not in HuggingFaceH4/no_robots:train"):
        load_task(task(root, splits, *chat, "task.messages_column=turns"))
