"""Prompt and choice data, and local hub-layout folders, are checked before anything trains.

The checks live where the task type reads its labels (``TaskType.encode_labels``) and where a hub
folder is read (``harness.tasks.hub``, ``harness.tasks.lexglue``), so the preflight
(:func:`harness.sweep.preflight.preflight`, called in-process here) and the run refuse the same data
with the same line. One forked ``python -m harness`` per kind of data shows the whole path: exit
code 2, one line on stderr, no store. And a local hub folder is never read from a stale cache.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.sweep.preflight import PreflightError, preflight
from harness.tasks import TaskDataError, load_task
from harness.job.validation import validate
from tests.conftest import compose_config
from tests.test_bad_input import run_harness
from tests.test_tasks import write_casehold

LM = ["model=tiny_llama", "trainer=smoke"]


@pytest.fixture(scope="module", autouse=True)
def _libraries_imported():
    """What the entry point imports before it refuses anything, imported once for the forks."""
    import harness.__main__  # noqa: F401
    from harness.job.plugins import load_plugins

    load_plugins()


def refused(args: list[str], store: Path) -> str:
    """The one line the preflight refuses ``args`` with; the store is not made."""
    with pytest.raises(PreflightError) as err:
        preflight([*LM, *args, f"store.url={store}"])
    assert "\n" not in str(err.value)
    assert not store.exists()
    return str(err.value)


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def answers(n: int = 40, change: dict | None = None) -> list[dict]:
    """Question/answer rows; ``change``: row index (0-based) -> the answer it gets instead."""
    rows = [{"text": f"what is {i} plus one?", "label": f"{i + 1}"} for i in range(n)]
    for i, value in (change or {}).items():
        rows[i]["label"] = value
    return rows


def choices(n: int = 40, bad: dict | None = None, drop: int | None = None) -> list[dict]:
    """Rows with three choices each; ``bad``: row index -> its choices instead; ``drop``: a row
    index that loses its choices."""
    rows = [{"text": f"pick rule {i % 3}", "choices": [f"rule {j}" for j in range(3)], "label": i % 3}
            for i in range(n)]
    for i, value in (bad or {}).items():
        rows[i]["choices"] = value
    if drop is not None:
        del rows[drop]["choices"]
    return rows


# --- prompt and choice data -------------------------------------------------------------------

# (rows, extra overrides, what the line must say; {path} is the file)
PROMPT_CASES = {
    "a JSON object answer": (answers(change={5: {"a": 1}}), ["task.task_type=generation"],
                             'row 6 of {path}: the answer (task.label_column=label) is a JSON object, {{"a": 1}}'),
    "a JSON list answer": (answers(change={0: [1, 2]}), ["task.task_type=generation"],
                           "row 1 of {path}: the answer (task.label_column=label) is a JSON list, [1, 2]"),
    "a JSON object answer to choose": (answers(change={7: {"a": 1}}), ["task.task_type=choice"],
                                       "row 8 of {path}: the answer (task.label_column=label) is a JSON object"),
    "a 5 MB answer": (answers(change={2: "x" * 5_000_000}), ["task.task_type=generation"],
                      "row 3 of {path}: the answer is 5000000 characters, more than task.max_length=128 "
                      "tokens can hold (counted in characters, no tokenizer"),
    "an empty completion": (answers(change={4: "  "}), ["task.task_type=generation"],
                            "row 5 of {path}: an empty completion"),
    "duplicate choices": (choices(bad={3: ["rule 0", "rule 1", "rule 0"]}), ["task.task_type=choice"],
                          'row 4 of {path}: the choice "rule 0" is there twice (choices 0 and 2'),
    "an empty choice": (choices(bad={9: ["rule 0", " ", "rule 2"]}), ["task.task_type=choice"],
                        "row 10 of {path}: choice 1 is empty"),
    "a single choice": ([{**r, "choices": ["rule 0"], "label": 0} for r in choices()], ["task.task_type=choice"],
                        'row 1 of {path}: 1 choice(s), ["rule 0"]; a row needs at least two'),
    "a choice that is an object": (choices(bad={2: ["rule 0", {"x": 1}, "rule 2"]}), ["task.task_type=choice"],
                                   "row 3 of {path}: choice 1 is a JSON object"),
    "a row without choices": (choices(drop=6), ["task.task_type=choice"],
                              "row 7 of {path}: no choices (task.choices_column=choices is empty in this row)"),
    "rows with more choices": (choices(bad={5: ["a", "b", "c", "d"]}), ["task.task_type=choice"],
                               "row 6 of {path}: 4 choices, but row 1 of {path} has 3"),
    "a missing choices column": ([{k: v for k, v in r.items() if k != "choices"} for r in choices()],
                                 ["task.task_type=choice"],
                                 "the data has no choices column (task.choices_column=choices) and its "
                                 "labels are the indices ['0', '1', '2']"),
    "a choices column named but absent": (choices(), ["task.task_type=choice", "task.choices_column=options"],
                                          "task.choices_column=options is not a column of the data"),
    "two labels with one answer": (answers(), ["task.task_type=choice", "+task.label_words.1=yes",
                                               "+task.label_words.2=yes"],
                                   "labels '1' and '2' have the same answer 'yes'"),
    "multiple choice on an encoder": (choices(bad={0: ["rule 0", "rule 0", "rule 2"]}),
                                      ["model=tiny_bert", "task.task_type=multiple_choice"],
                                      'row 1 of {path}: the choice "rule 0" is there twice'),
}


@pytest.mark.parametrize("case", list(PROMPT_CASES))
def test_bad_prompt_and_choice_data_is_refused_naming_the_row(case, tmp_path):
    rows, extra, needle = PROMPT_CASES[case]
    path = jsonl(tmp_path / "d.jsonl", rows)
    line = refused(["task=jsonl", f"task.data_path={path}", *extra], tmp_path / "s.sqlite")
    assert line.startswith("task d: ") and needle.format(path=path) in line, line


def test_rows_left_out_before_a_bad_row_do_not_shift_its_number(tmp_path):
    """Rows without an answer are dropped before the types check: the row named is still the
    file's (a CSV's data rows, counted from 1 under the header)."""
    frame = pd.DataFrame(answers(12))
    frame.loc[[1, 2], "label"] = None
    frame.loc[8, "label"] = "  "
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    line = refused(["task=csv", f"task.data_path={path}", "task.task_type=generation"], tmp_path / "s.sqlite")
    assert f"row 9 of {path}: an empty completion" in line, line


def test_a_csv_choices_cell_is_text_not_a_list(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame(choices()).assign(choices="a|b|c").to_csv(path, index=False)
    line = refused(["task=csv", f"task.data_path={path}", "task.task_type=choice"], tmp_path / "s.sqlite")
    assert f"row 1 of {path}: the choices (task.choices_column=choices) are a text" in line
    assert "use a JSON Lines or Parquet file" in line


def test_a_parquet_list_answer_is_refused(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"text": ["q"] * 20, "label": [["a", "b"]] + [["c"]] * 19}).to_parquet(path)
    line = refused(["task=parquet", f"task.data_path={path}", "task.task_type=generation"], tmp_path / "s.sqlite")
    assert f'row 1 of {path}: the answer (task.label_column=label) is a JSON list, ["a", "b"]' in line


def test_casehold_prompts_name_the_line(tmp_path):
    path = write_casehold(tmp_path / "c.jsonl")
    lines = path.read_text().splitlines()
    row = json.loads(lines[4])
    row["choices"][3] = row["choices"][1]
    row["answer"] = row["choices"][0]
    lines[4] = json.dumps(row)
    path.write_text("\n".join(lines[:2] + [""] + lines[2:]))  # a blank line: line 6 is row 5
    line = refused(["task=casehold_prompt", f"task.data_path={path}"], tmp_path / "s.sqlite")
    assert f"line 6 of {path}: the choice" in line and "is there twice (choices 1 and 3" in line
    rows = [json.loads(x) for x in lines]
    rows[1]["choices"] = "holding that rule 0 applies"
    jsonl(path, rows)
    line = refused(["task=casehold_prompt", f"task.data_path={path}"], tmp_path / "s.sqlite")
    assert f"line 2 of {path}: input_text must be a string and choices a list" in line


def test_good_prompt_data_still_passes(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", choices())
    assert preflight([*LM, "task=jsonl", f"task.data_path={path}", "task.task_type=choice",
                      f"store.url={tmp_path / 's.sqlite'}"]) is not None
    words = jsonl(tmp_path / "w.jsonl", [{"text": f"q {i}", "label": i % 2} for i in range(40)])
    assert preflight([*LM, "task=jsonl", f"task.data_path={words}", "task.task_type=choice",
                      "+task.label_words.0=no", "+task.label_words.1=yes",
                      f"store.url={tmp_path / 's.sqlite'}"]) is not None


def test_a_bad_answer_is_refused_by_the_command_in_one_line(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", answers(change={5: {"a": 1}}))
    store = tmp_path / "results.sqlite"
    ran = run_harness([*LM, "task=jsonl", f"task.data_path={path}", "task.task_type=generation",
                       f"store.url={store}"], tmp_path)
    assert ran.code == 2 and len(ran.err_lines) == 1, ran.err
    assert ran.err_lines[0].startswith("error: task d: row 6 of") and "is a JSON object" in ran.err
    assert not store.exists() and not (tmp_path / "outputs").exists()


# --- local hub-layout folders -------------------------------------------------------------------

CARD = ("---\nlicense: mit\nconfigs:\n- config_name: main\n  data_files:\n  - split: train\n    path: train.jsonl\n"
        "  - split: test\n    path: test.jsonl\n---\n# me/data\n")


def qa_lines(n: int, tag: str = "q") -> str:
    return "".join(json.dumps({"q": f"{tag} {i}?", "a": f"a{i % 3}"}) + "\n" for i in range(n))


def hub_folder(root: Path, files: dict | None = None, hub_id: str = "me/data") -> Path:
    """``<root>/<hub id>``: a dataset repository with a card and a train and a test file."""
    folder = root / hub_id
    folder.mkdir(parents=True)
    for name, text in {"README.md": CARD, "train.jsonl": qa_lines(30), "test.jsonl": qa_lines(10),
                       **(files or {})}.items():
        if text is not None:
            (folder / name).write_text(text)
    return root


def hub_args(root: Path, subset: str | None = "main", test_split: str = "test") -> list[str]:
    args = ["task=metamathqa_gsm8k", f"task.data_path={root}", "task.train_size=null",
            "task.val_size=null", "task.max_chars=null", f"task.hub_splits.test.split={test_split}",
            f"task.hub_splits.test.subset={subset or 'null'}"]
    args += [f"+task.hub_splits.train.subset={subset}"] if subset else []
    return args + [f"task.hub_splits.{s}.{k}={v}" for s in ("train", "test")
                   for k, v in (("dataset", "me/data"), ("text_column", "q"), ("label_column", "a"))]


LFS = "version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 12345\n"
PLAIN_CARD = "---\nlicense: mit\n---\n# me/data\n"

# (files that replace the good ones (None: left out), subset, test split, what the line says)
HUB_CASES = {
    "a card without data files": ({"README.md": PLAIN_CARD, "train.jsonl": None, "test.jsonl": None},
                                  None, "train", "doesn't contain any data files"),
    "only text files": ({"README.md": PLAIN_CARD, "train.jsonl": None, "test.jsonl": None,
                         "notes.txt": "hello\nworld\n"}, None, "train",
                        "column(s) ['q', 'a'] not in me/data:train (task.hub_splits.train); its columns: ['text']"),
    "wrong columns": ({"train.jsonl": qa_lines(30).replace('"q"', '"question"'),
                       "test.jsonl": qa_lines(10).replace('"q"', '"question"')}, "main", "test",
                      "column(s) ['q'] not in me/data/main:train (task.hub_splits.train); its columns: ['question', 'a']"),
    "broken JSON": ({"train.jsonl": qa_lines(30) + '{"q": "x", \n'}, "main", "test",
                    "cannot read me/data/main:train for the train split: JSON parse error"),
    "broken YAML": ({"README.md": "---\nconfigs: [\n  - x: : :\n---\n"}, "main", "test",
                    "README.md is broken: expected the node content"),
    "an unknown config": ({}, "socratic", "test", "BuilderConfig 'socratic' not found. Available: ['main']"),
    "an empty array": ({"README.md": PLAIN_CARD, "train.jsonl": None, "test.jsonl": None, "data.json": "[]"},
                       None, "train", "cannot read me/data:train for the train split"),
    "git-lfs pointers": ({"train.jsonl": LFS}, "main", "test",
                         "train.jsonl is a git-lfs pointer, not the data (a copy of me/data); run `git lfs pull` in"),
    "an object answer": ({"train.jsonl": qa_lines(30).replace('"a": "a2"}', '"a": {"x": 1}}', 1)}, "main", "test",
                         'row 3 of the train split (me/data/main:train, column a): the answer is a JSON object, '
                         '{"x": 1}'),
}


@pytest.mark.parametrize("case", list(HUB_CASES))
def test_a_bad_hub_folder_is_refused_at_preflight(case, tmp_path):
    files, subset, test_split, needle = HUB_CASES[case]
    root = hub_folder(tmp_path / "hub", files)
    line = refused(hub_args(root, subset, test_split), tmp_path / "s.sqlite")
    assert line.startswith("task metamathqa_gsm8k: ") and needle in line, line


def test_a_good_hub_folder_passes_and_loads_as_the_preflight_saw_it(tmp_path):
    root = hub_folder(tmp_path / "hub")
    fits = "task.max_length=256"  # tiny_llama's positions (metamathqa_gsm8k's own is 768)
    assert preflight([*LM, *hub_args(root), fits, f"store.url={tmp_path / 's.sqlite'}"]) is not None
    data = load_task(validate(compose_config([*LM, *hub_args(root), fits])).task)
    assert len(data.train) + len(data.validation) == 30 and len(data.test) == 10


def test_a_lexglue_folder_of_lfs_pointers_or_bad_fields_is_refused(tmp_path):
    import datasets

    folder = tmp_path / "lexglue"
    (folder / "case_hold").mkdir(parents=True)
    rows = {"context": [f"case {i}" for i in range(8)], "endings": [["a", "b", "a", "c", "d"]] * 8,
            "label": [0] * 8}
    for split in ("train", "test"):
        datasets.Dataset.from_dict(rows).to_parquet(str(folder / "case_hold" / f"{split}-0.parquet"))
    args = [*LM, "model=tiny_bert", "task=lexglue_case_hold", f"task.data_path={folder}"]
    line = refused(args, tmp_path / "s.sqlite")
    assert 'row 1 of the train split (case_hold/train): the choice "a" is there twice' in line, line
    (folder / "case_hold" / "test-0.parquet").write_text(LFS)
    line = refused(args, tmp_path / "s.sqlite")
    assert "test-0.parquet is a git-lfs pointer, not the data (LexGLUE case_hold)" in line, line


def test_a_bad_hub_folder_is_refused_by_the_command_in_one_line(tmp_path):
    root = hub_folder(tmp_path / "hub", {"train.jsonl": LFS})
    store = tmp_path / "results.sqlite"
    ran = run_harness([*LM, *hub_args(root), f"store.url={store}"], tmp_path)
    assert ran.code == 2 and len(ran.err_lines) == 1, ran.err
    assert "is a git-lfs pointer" in ran.err_lines[0]
    assert not store.exists() and not (tmp_path / "outputs").exists()


# --- no stale cached rows -----------------------------------------------------------------------

def _load(root: Path):
    return load_task(validate(compose_config([*LM, *hub_args(root)])).task)


def test_an_edited_hub_file_is_read_anew_not_from_the_cache(tmp_path):
    root = hub_folder(tmp_path / "hub")
    before = _load(root)
    assert sorted(before.test.texts)[0] == "q 0?"
    test_file = root / "me" / "data" / "test.jsonl"
    edited = qa_lines(10, tag="z")
    assert len(edited) == len(test_file.read_text())  # the same size: only the content differs
    test_file.write_text(edited)
    after = _load(root)
    assert sorted(after.test.texts)[0] == "z 0?"
    (root / "me" / "data" / "train.jsonl").write_text(qa_lines(20))  # fewer rows: new split sizes
    assert len(_load(root).train) + len(_load(root).validation) == 20


def test_two_folders_with_one_hub_id_each_read_their_own_rows(tmp_path):
    one = hub_folder(tmp_path / "one")
    two = hub_folder(tmp_path / "two", {"test.jsonl": qa_lines(10, tag="t")})
    assert sorted(_load(one).test.texts)[0] == "q 0?"
    assert sorted(_load(two).test.texts)[0] == "t 0?"
    assert sorted(_load(one).test.texts)[0] == "q 0?"


def test_a_run_reads_the_edited_rows_its_fingerprint_names(tmp_path):
    """The data fingerprint and the rows change together (the run's identity is what it read)."""
    from harness.results.fingerprint import data_fingerprint

    root = hub_folder(tmp_path / "hub")
    task = {"data_path": str(root), "loader": "hub"}
    first, rows = data_fingerprint(task), _load(root).test.texts
    (root / "me" / "data" / "test.jsonl").write_text(qa_lines(10, tag="z"))
    assert data_fingerprint(task) != first and _load(root).test.texts != rows


def test_a_load_error_in_the_run_is_one_line_too(tmp_path):
    """The run reads the folder with the same code: a broken card is a TaskDataError, no traceback."""
    root = hub_folder(tmp_path / "hub", {"README.md": "---\nconfigs: [\n---\n"})
    with pytest.raises(TaskDataError, match="README.md is broken") as err:
        _load(root)
    assert "\n" not in str(err.value)
