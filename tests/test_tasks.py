"""Each task type end to end on tiny fixtures; the legal and LexGLUE formats; clear data errors."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.job.validation import validate
from harness.tasks import TASK_LOADERS, TaskDataError, data_path_hint, load_task
from harness.tasks.types import TASK_TYPES
from tests.conftest import compose_config

WORDS = {"pos": "good great fine", "neg": "bad awful dull"}


def task_cfg(*overrides: str):
    return validate(compose_config(list(overrides))).task


def write_csv(path, n=40, split=False):
    rows = [{"body": f"the film was {WORDS['pos' if i % 2 else 'neg']} {i}",
             "y": "pos" if i % 2 else "neg"} for i in range(n)]
    df = pd.DataFrame(rows)
    if split:
        df["part"] = ["train"] * (n - 12) + ["dev"] * 6 + ["test"] * 6
    df.to_csv(path, index=False)
    return path


def write_multilabel_jsonl(path, n=48):
    labels = [["a"], ["b"], ["a", "b"], []]
    rows = [{"text": " ".join(["alpha"] * ("a" in labels[i % 4]) + ["beta"] * ("b" in labels[i % 4]) + ["x"]),
             "labels": labels[i % 4]} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def write_casehold(path, n=30):
    lines = []
    for i in range(n):
        choices = [f"holding that rule {j} applies" for j in range(5)]
        prompt = (f'Given the following excerpt from a US court opinion:\n"case {i} says rule {i % 5} '
                  f'(<HOLDING>)"\n\nThe [Masked Holding] is a placeholder for one of the following options:\n'
                  + "\n".join(f"- {c}" for c in choices))
        lines.append(json.dumps({"input_text": prompt, "choices": choices, "answer": choices[i % 5]}))
    path.write_text("\n".join(lines))
    return path


def test_registry_lists_every_task_and_type():
    assert {"rotten_tomatoes", "synthetic", "scotus_outcome", "scotus_issue", "legalbench_tsv",
            "casehold_prompts", "lex_glue", "csv", "jsonl", "parquet"} <= set(TASK_LOADERS.names())
    assert TASK_TYPES.names() == ["choice", "generation", "multi_label", "multiple_choice", "single_label"]


def test_csv_single_label_runs_end_to_end_with_the_files_own_splits(run_tiny, tmp_path):
    path = write_csv(tmp_path / "mine.csv", split=True)
    row = run_tiny("task=csv", f"task.data_path={path}", "task.text_column=body",
                   "task.label_column=y", "task.split_column=part")
    assert row["status"] == "finished", row.get("error")
    assert (row["n_train"], row["n_validation"], row["n_test"]) == (28, 6, 6)
    assert row["majority_accuracy"] == 0.5 and 0 <= row["accuracy"] <= 1
    assert json.loads(row["details_json"])["label_names"] == ["neg", "pos"]


def test_multi_label_runs_end_to_end_with_a_sigmoid_head(run_tiny, tmp_path):
    path = write_multilabel_jsonl(tmp_path / "ml.jsonl")
    row = run_tiny("task=jsonl", f"task.data_path={path}", "task.label_column=labels",
                   "task.task_type=multi_label")
    assert row["status"] == "finished", row.get("error")
    details = json.loads(row["details_json"])
    assert details["task_type"] == "multi_label" and details["label_names"] == ["a", "b"]
    assert 0 <= row["accuracy"] <= 1 and 0 <= row["f1_micro"] <= 1


def test_multiple_choice_runs_end_to_end_on_casehold_prompts(run_tiny, tmp_path):
    path = write_casehold(tmp_path / "ch.jsonl")
    row = run_tiny("task=casehold", f"task.data_path={path}", "task.max_length=48",
                   "task.val_size=5", "task.test_size=10")
    assert row["status"] == "finished", row.get("error")
    assert json.loads(row["details_json"])["label_names"] == ["0", "1", "2", "3", "4"]


def test_multiple_choice_scores_every_choice_with_one_logit(tmp_path):
    import torch

    from harness.models.load import load_model
    from harness.tasks.encoding import ChoiceCollator, encode_split
    from harness.tasks.multiple_choice import MultipleChoice

    cfg = validate(compose_config(["model=tiny_llama", "task=casehold",
                                   f"task.data_path={write_casehold(tmp_path / 'c.jsonl')}"]))
    data = load_task(cfg.task)
    kind = data.type
    assert isinstance(kind, MultipleChoice) and kind.columns == ("choices",)
    loaded = load_model(cfg.model, cfg.quant, kind.head_size(5), torch.device("cpu"), kind.problem_type)
    examples = encode_split(data.test, loaded.tokenizer, 40, "tail", kind).examples[:3]
    collate = kind.collator(loaded.tokenizer)
    assert isinstance(collate, ChoiceCollator)
    batch = collate(examples)
    assert batch["input_ids"].shape[:2] == (3, 5)
    logits = kind.logits(loaded.model, batch)
    assert logits.shape == (3, 5)
    assert data.test.choices[0][data.test.labels[0]] == f"holding that rule {data.test.labels[0]} applies"


def test_legal_loaders_read_the_shared_formats(tmp_path):
    facts = pd.DataFrame({"facts": ["<p>Roe sued.</p>\n<p>Wade &amp; co. won.</p>", "<p>B</p>"] * 10,
                          "first_party": ["Jane Roe", "X"] * 10, "second_party": ["Henry Wade", "Y"] * 10,
                          "first_party_winner": [True, False] * 10, "issue_area": ["Privacy", None] * 10})
    facts.to_csv(tmp_path / "scotus.csv", index=False)
    outcome = load_task(task_cfg("task=scotus_outcome", f"task.data_path={tmp_path / 'scotus.csv'}"))
    text = next(t for t in outcome.train.texts if "Roe" in t)
    assert text == "First party: Jane Roe. Second party: Henry Wade.\nRoe sued.\nWade & co. won."
    assert outcome.label_names == ["False", "True"]
    with pytest.raises(TaskDataError, match="needs at least 2 labels"):  # None rows are dropped
        load_task(task_cfg("task=scotus_issue", f"task.data_path={tmp_path / 'scotus.csv'}"))
    (tmp_path / "o.tsv").write_text("label\ttext\n" + "".join(f"{'Yes' if i % 2 else 'No'}\ts {i}\n"
                                                           for i in range(20)))
    over = load_task(task_cfg("task=overruling", f"task.data_path={tmp_path / 'o.tsv'}"))
    assert over.label_names == ["No", "Yes"] and len(over.train) + len(over.validation) + len(over.test) == 20


def test_lexglue_reads_local_files_in_the_hubs_format(tmp_path):
    import datasets

    names = ["Article 2", "Article 3", "Article 5"]
    features = datasets.Features({"text": datasets.Sequence(datasets.Value("string")),
                                  "labels": datasets.Sequence(datasets.ClassLabel(names=names))})
    for split, n in (("train", 12), ("validation", 4), ("test", 4)):
        rows = {"text": [[f"para {i}", "facts"] for i in range(n)], "labels": [[i % 3] if i % 4 else [] for i in range(n)]}
        (tmp_path / "ecthr_a").mkdir(exist_ok=True)
        datasets.Dataset.from_dict(rows, features=features).to_parquet(
            str(tmp_path / "ecthr_a" / f"{split}-00000-of-00001.parquet"))
    data = load_task(task_cfg("task=lexglue_ecthr_a", f"task.data_path={tmp_path}"))
    assert data.label_names == names and data.task_type == "multi_label"
    assert (len(data.train), len(data.validation), len(data.test)) == (12, 4, 4)
    assert data.train.texts[1] == "para 1\nfacts" and data.train.labels[1] == [0, 1, 0]
    assert data.train.labels[0] == [0, 0, 0]  # no violation
    with pytest.raises(TaskDataError, match="is multi_label, not single_label"):
        load_task(task_cfg("task=lexglue_ecthr_a", f"task.data_path={tmp_path}", "task.task_type=single_label"))


@pytest.mark.parametrize("overrides,needle", [
    (["task=csv"], "needs a data file: set task.data_path="),
    (["task=csv", "task.data_path=/nonexistent/x.csv"], "data file not found"),
    (["task=csv", "task.data_path={csv}", "task.label_column=nope"], r"column\(s\) \['nope'\] not in"),
    (["task=csv", "task.data_path={csv}", "task.labels=[neg]"], r"unknown label\(s\) \['pos'\]"),
    (["task=csv", "task.data_path={train_only}", "task.split_column=part"], "the test split is empty"),
    (["task=csv", "task.data_path={txt}"], "allowed file types"),
    (["task=scotus_outcome"], r"needs a data file: set task.data_path=path/to/scotus_justice\.csv$"),
    (["task=overruling"], r"task overruling needs a data file: set task.data_path=path/to/overruling\.tsv$"),
    (["task=jsonl"], r"needs a data file: set task.data_path=path/to/data\.jsonl$"),
    (["task=csv", "task.data_path={csv}", "task.task_type=multiple_choice"],
     r"column\(s\) \['choices'\] not in"),
    (["task=csv", "task.data_path={csv}", "task.task_type=multiple_choice", "task.choices_column=opts"],
     r"column\(s\) \['opts'\] not in"),
])
def test_bad_data_gives_one_line_errors(tmp_path, overrides, needle):
    df = pd.read_csv(write_csv(tmp_path / "d.csv")).rename(columns={"body": "text", "y": "label"})
    df.to_csv(tmp_path / "d.csv", index=False)
    df.assign(part="train").to_csv(tmp_path / "train_only.csv", index=False)
    (tmp_path / "d.txt").write_text("x")
    files = {"csv": tmp_path / "d.csv", "train_only": tmp_path / "train_only.csv", "txt": tmp_path / "d.txt"}
    with pytest.raises(TaskDataError, match=needle) as err:
        load_task(task_cfg(*[o.format(**files) for o in overrides]))
    assert "\n" not in str(err.value)


def test_file_loaders_read_the_columns_the_task_type_needs(tmp_path):
    rows = [{"q": f"case {i} says rule {i % 3}", "opts": [f"rule {j}" for j in range(3)], "a": i % 3}
            for i in range(30)]
    (tmp_path / "mc.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    data = load_task(task_cfg("task=jsonl", f"task.data_path={tmp_path / 'mc.jsonl'}", "task.text_column=q",
                              "task.label_column=a", "task.choices_column=opts",
                              "task.task_type=multiple_choice"))
    assert data.task_type == "multiple_choice" and data.label_names == ["0", "1", "2"]
    first = data.train.texts[0]
    assert data.train.choices[0] == ["rule 0", "rule 1", "rule 2"]
    assert data.train.choices[0][data.train.labels[0]] == "rule " + first[-1]
    single = load_task(task_cfg("task=jsonl", f"task.data_path={tmp_path / 'mc.jsonl'}",
                                "task.text_column=q", "task.label_column=a"))
    assert single.train.choices is None and single.label_names == ["0", "1", "2"]


def test_loaders_declare_whether_they_need_a_data_file():
    needs = {n for n in TASK_LOADERS.names() if TASK_LOADERS.info(n).get("data_path") == "required"}
    assert needs == {"csv", "jsonl", "parquet", "scotus_outcome", "scotus_issue", "legalbench_tsv",
                     "casehold_prompts"}
    for name in needs:  # every one says what to set, and no loader knows where data lives
        example = TASK_LOADERS.info(name)["example"]
        assert data_path_hint(name) == example and "shared" not in example
    assert data_path_hint("scotus_outcome") == "path/to/scotus_justice.csv"
    assert data_path_hint("legalbench_tsv", "unfair_tos") == "path/to/unfair_tos.tsv"
    assert data_path_hint("casehold_prompts", "casehold") == "path/to/casehold_prompts.jsonl"
    for name in ("synthetic", "rotten_tomatoes", "lex_glue", "multitask", "no_such_loader"):
        assert data_path_hint(name) is None


def test_importing_the_task_registry_does_not_import_torch_or_transformers():
    import subprocess
    import sys

    code = ("import sys, harness.tasks, harness.tasks.types; "
            "print(sorted(m for m in ('torch', 'transformers', 'evaluate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _type_branches(source: str, names: set[str], classes: set[str]) -> list[int]:
    """Lines that compare with a task type's name (``==``, ``!=``, ``in``, ``match``), key a
    table by one, or ask ``isinstance(x, <a task type class>)``."""
    import ast

    def is_name(node) -> bool:
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(is_name(e) for e in node.elts)
        return isinstance(node, ast.Constant) and node.value in names

    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(is_name(n) for n in [node.left, *node.comparators]):
            lines.append(node.lineno)
        elif isinstance(node, ast.MatchValue) and is_name(node.value):
            lines.append(node.lineno)
        elif isinstance(node, ast.Dict) and any(k is not None and is_name(k) for k in node.keys):
            lines.append(node.lineno)
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance"
              and len(node.args) == 2 and {getattr(n, "id", getattr(n, "attr", None)) for n in
                                           ast.walk(node.args[1])} & classes):
            lines.append(node.lineno)
    return lines


def test_the_branch_finder_sees_branches_and_allows_declarations():
    names, classes = {"multi_label", "multiple_choice"}, {"MultipleChoice"}
    bad = ['if kind.name == "multiple_choice":\n    pass',
           'x = "multi_label" != cfg.task_type',
           'y = t in ("single", "multi_label")',
           'match t:\n    case "multiple_choice":\n        pass',
           'z = {"multi_label": 1}[t]',
           'w = isinstance(kind, types.MultipleChoice)']
    assert all(_type_branches(src, names, classes) for src in bad)
    fine = ['@TASK_TYPES.register("multi_label")\nclass A: name = "multi_label"',
            'task_type: str = "multiple_choice"  # a config default',
            'SUBSETS = {"x": ("text", "labels", "multi_label")}',
            '"""multiple_choice == docs"""',
            'kind = cfg.task_type != subset.task_type']
    assert not any(_type_branches(src, names, classes) for src in fine)


def test_no_code_outside_the_task_types_asks_which_type_it_has():
    from pathlib import Path

    import harness
    from harness.tasks import types

    names = set(TASK_TYPES.names())
    classes = {type(types.task_type(n)).__name__ for n in names}
    root = Path(harness.__file__).parent
    found = [f"{path.relative_to(root.parent)}:{line}"
             for path in sorted(root.rglob("*.py")) if path != Path(types.__file__)
             for line in _type_branches(path.read_text(encoding="utf-8"), names, classes)]
    assert not found, f"branching on a task type's name outside harness/tasks/types.py: {found}"
