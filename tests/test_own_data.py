"""A user's own data, right the first time: long prompts keep their question and say what was cut,
generation runs keep what the model wrote, header-less files and positional columns, runs named
after their file, a resumed sweep's report, Ctrl-C, and settings refused before anything trains."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.results.identity import config_hash
from harness.results import load, load_answers
from tests.conftest import TINY, compose_config
from tests.test_bad_input import BASE, run_harness

ROOT = Path(__file__).resolve().parents[1]
LM = ["model=tiny_llama", "trainer=smoke", "trainer.isolate=false", "trainer.latency_batches=1",
      "trainer.generation_tokens=2"]
QUESTION = "which word ends this?"


def long_prompts(path: Path, n: int = 40) -> Path:
    """Prompts of a long clause, then the question at the end, as the contract-clause data were."""
    rows = [{"prompt": " ".join(["clause"] * 150) + f" option {i % 2}. {QUESTION}", "answer": ["yes", "no"][i % 2]}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_auto_truncation_keeps_a_prompts_end_and_a_documents_start_and_hashes_as_before():
    from harness.models.load import load_tokenizer
    from harness.tasks.types import resolve_truncation, task_type
    from harness.job.validation import validate

    cfg = validate(compose_config([*LM, "task=rotten_tomatoes_prompt", "task.max_length=64"]))
    assert resolve_truncation(cfg.task.truncation.value, cfg.task.task_type) == "tail"
    assert resolve_truncation("auto", "single_label") == "head"
    kind = task_type(cfg.task.task_type).for_task(cfg.task)
    tok = load_tokenizer(cfg.model)
    lost: list[int] = []
    ids, cut = kind.prompts(tok, [" ".join(["clause"] * 150) + " " + QUESTION], [3], 64, "tail", lost)
    assert cut == 1 and len(ids[0]) + 3 <= 64 and lost[0] > 0
    assert QUESTION.replace(" ", "") in tok.decode(ids[0]).replace(" ", "")  # the question survives
    # auto hashes as the side it keeps: a classification run's identity is the one it had with head
    plain = [*TINY, "store.url=x.sqlite"]
    assert config_hash(_container(plain)) == config_hash(_container([*plain, "task.truncation=head"]))
    prompt = [*LM, "task=rotten_tomatoes_prompt"]
    assert config_hash(_container(prompt)) == config_hash(_container([*prompt, "task.truncation=tail"]))
    assert config_hash(_container(prompt)) != config_hash(_container([*prompt, "task.truncation=head"]))


def _container(overrides):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose_config(overrides), resolve=True)


def test_cut_prompts_are_counted_by_the_preflight_and_the_run_kept_answers_and_flagged_in_the_report(
        tmp_path, monkeypatch, capsys):
    from harness import __main__ as cli
    from harness.report.build import build_report
    from harness.config import ReportConfig

    data = long_prompts(tmp_path / "clauses.jsonl")
    store = tmp_path / "s.sqlite"
    monkeypatch.chdir(tmp_path)
    argv = [*LM, "task=jsonl", f"task.data_path={data}", "task.text_column=prompt",
            "task.label_column=answer", "task.task_type=generation", "task.max_length=48",
            f"store.url={store}"]
    monkeypatch.setattr(sys, "argv", ["harness", *argv])
    cli.main()
    out, err = capsys.readouterr()
    # the preflight says how many were cut, by how much, which end kept; its run does not say it again
    line = next(l for l in err.splitlines() if "longer than task.max_length=48" in l)
    assert "test 8 of 8" in line and "keeping its end (task.truncation=tail)" in line, line
    assert "the report flags this run" in line
    assert "longer than task.max_length" not in out and err.count("longer than task.max_length") == 1
    from harness.tasks.check import already_noted

    said = line.split(": ", 2)[-1]  # "[harness] note: task clauses (tiny_llama): <line>"
    assert already_noted("clauses", "tiny_llama", said) and not already_noted("other", "tiny_llama", said)
    assert not already_noted("clauses", "tiny_gpt2", said)  # another tokenizer counts its own
    assert len(os.environ["PEFT_HARNESS_NOTED"]) == 12  # a key, not the note
    monkeypatch.setenv("PEFT_HARNESS_SWEEP_HOST", "another-host")  # a run on a node prints its own
    assert not already_noted("clauses", "tiny_llama", said)
    assert "recorded as run " in out and str(store) in out  # where the row went
    row = load(store).iloc[0]
    assert row.task == "clauses"  # named after its file, not "jsonl"
    assert row.n_truncated_test == 8 and row.details["truncation"]["splits"]["test"]["tokens_cut_max"] > 0
    answers = load_answers(store)
    assert len(answers) == row.n_test and set(answers.reference) <= {"yes", "no"}
    assert answers.generated.map(type).eq(str).all()
    report = build_report(store, tmp_path / "report", options=ReportConfig(pdf=False, formats=["md"]))
    text = (report.out_dir / "report.md").read_text()
    assert "FLAGGED: 1 of 1 runs" in text and "100% of its" in text
    assert "Generated answers that missed (as written)" in text
    missed = answers[~answers.match]
    assert f"expected {missed.reference.iloc[0]!r}, wrote {missed.generated.iloc[0]!r}" in text
    assert f"({len(missed)} of {len(answers)} test answers differ" in text


def test_an_answer_longer_than_max_length_is_refused_by_the_preflight_not_by_the_run(tmp_path):
    data = tmp_path / "summaries.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Summarize case {i}.", "answer": " ".join(["the court held"] * 40)})
                            + "\n" for i in range(40)))
    store = tmp_path / "s.sqlite"
    ran = run_harness([*LM, "task=jsonl", f"task.data_path={data}", "task.text_column=prompt",
                       "task.label_column=answer", "task.task_type=generation", "task.max_length=64",
                       f"store.url={store}"], tmp_path)
    assert ran.code == 2, ran.err
    assert ran.err_lines[0].startswith("error: task summaries (tiny_llama): an answer of ") and \
        "leaves no room for the prompt in task.max_length=64" in ran.err_lines[0], ran.err
    assert not store.exists()  # nothing trained, no row of a failed run


def header_less(path: Path, n: int = 40) -> Path:
    lines = [f"{'pos' if i % 2 else 'neg'}\tthe film number {i} was {'good' if i % 2 else 'bad'} in every way"
             for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_header_less_file_is_explained_and_read_by_position(tmp_path):
    data = header_less(tmp_path / "films.tsv")
    store = tmp_path / "s.sqlite"
    ran = run_harness([*BASE, "task=csv", f"task.data_path={data}", f"store.url={store}"], tmp_path)
    assert ran.code == 2 and len(ran.err_lines) == 1 and not store.exists()
    assert "first row looks like data" in ran.err and "task.header=false" in ran.err
    assert "task.text_column=1 task.label_column=0" in ran.err  # the likely positions
    from harness.tasks.load import load_task
    from harness.job.validation import validate

    task = validate(compose_config([*BASE, "task=csv", f"task.data_path={data}", "task.header=false",
                                    "task.text_column=1", "task.label_column=0"])).task
    loaded = load_task(task)
    assert task.name == "films" and loaded.label_names == ["neg", "pos"]
    assert len(loaded.train) + len(loaded.validation) + len(loaded.test) == 40  # the first row too


def test_compressed_and_semicolon_files_read_as_the_plain_csv(tmp_path):
    """A .csv.gz/.bz2/.xz/.zip gives the rows of the plain file, named after it; a CSV that Excel
    saved with ';' is read as such and the preflight says so; task.delimiter reads a '|' file; a
    .json that is one array reads as JSON Lines do."""
    import bz2
    import gzip
    import lzma
    import zipfile

    from harness.job.validation import validate
    from harness.tasks.load import load_task

    frame = pd.DataFrame({"text": [f"the film number {i} was {'good' if i % 2 else 'bad'}, truly" for i in range(40)],
                          "label": ["pos" if i % 2 else "neg" for i in range(40)]})
    text = frame.to_csv(index=False)
    (tmp_path / "films.csv").write_text(text)
    (tmp_path / "films.csv.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "films.csv.bz2").write_bytes(bz2.compress(text.encode()))
    (tmp_path / "films.csv.xz").write_bytes(lzma.compress(text.encode()))
    with zipfile.ZipFile(tmp_path / "films.csv.zip", "w") as archive:
        archive.writestr("films.csv", text)
    (tmp_path / "semi.csv").write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False, sep=";").encode())
    (tmp_path / "pipe.csv").write_text(frame.to_csv(index=False, sep="|"))

    def loaded(name, *extra):
        task = validate(compose_config([*BASE, "task=csv", f"task.data_path={tmp_path / name}", *extra])).task
        data = load_task(task)
        return task.name, [pair for split in (data.train, data.validation, data.test)
                           for pair in zip(split.texts, split.labels)]

    name, plain = loaded("films.csv")
    assert name == "films" and len(plain) == 40
    for other in ("films.csv.gz", "films.csv.bz2", "films.csv.xz", "films.csv.zip"):
        assert loaded(other) == ("films", plain), other
    assert loaded("semi.csv")[1] == plain  # the BOM and the ';' both read
    assert loaded("pipe.csv", "task.delimiter=|")[1] == plain
    records = frame.to_dict("records")
    (tmp_path / "films.json").write_text(json.dumps(records, indent=2))  # one array, not JSON Lines
    (tmp_path / "lines.json.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))
    assert loaded("films.json", "task=jsonl")[1] == plain and loaded("lines.json.gz", "task=jsonl")[1] == plain
    # a quoted text whose first line holds a ';' and no comma is still a comma CSV (a record, not a line)
    quoted = pd.DataFrame({"text": ["first part; then\na second line", *frame.text[1:]], "label": frame.label})
    (tmp_path / "quoted.csv").write_text(quoted.to_csv(index=False, header=False))
    read = loaded("quoted.csv", "task.header=false", "task.text_column=0", "task.label_column=1")[1]
    assert sorted(t for t, _ in read) == sorted(quoted.text)
    # ... and so is one whose first quoted text is a document longer than any sample (75 kB)
    document = pd.DataFrame({"text": ["The court held; the appeal, however, fails. " * 1700, *frame.text[1:]],
                             "label": frame.label})
    (tmp_path / "long.csv").write_text(document.to_csv(index=False, header=False))
    read = loaded("long.csv", "task.header=false", "task.text_column=0", "task.label_column=1")[1]
    assert sorted(t for t, _ in read) == sorted(document.text)
    from harness.tasks.data import TaskDataError
    from harness.tasks.files import read_table

    (tmp_path / "cut.json.gz").write_bytes(b"not gzip at all")  # read directly, not after the preflight
    with pytest.raises(TaskDataError, match="cannot decompress .*cut.json.gz: Not a gzipped file"):
        read_table(tmp_path / "cut.json.gz", validate(compose_config(
            [*BASE, "task=jsonl", f"task.data_path={tmp_path / 'cut.json.gz'}"])).task)
    with zipfile.ZipFile(tmp_path / "dir.csv.zip", "w") as archive:  # a folder entry beside the one file
        archive.writestr("data/", "")
        archive.writestr("data/films.csv", text)
    assert loaded("dir.csv.zip")[1] == plain
    store = tmp_path / "s.sqlite"
    ran = run_harness([*BASE, "task=csv", f"task.data_path={tmp_path / 'semi.csv'}", f"store.url={store}"], tmp_path)
    assert ran.code == 0, ran.err
    assert "[harness] note: task semi: semi.csv read as ';'-separated (its first row holds no comma; " \
           "task.delimiter sets the delimiter)" in ran.err
    assert load(store).iloc[0].task == "semi"
    ran = run_harness([*BASE, "task=csv", f"task.data_path={tmp_path / 'pipe.csv'}", f"store.url={store}"], tmp_path)
    assert ran.code == 0, ran.err  # "|" sniffed from its first line, as ";" is


def test_texts_a_file_holds_twice_are_counted_in_test_flagged_in_the_report_and_dropped_on_request(tmp_path):
    """A file that holds each text several times, split at random, puts copies of training texts
    in the test split: the preflight counts them, the run records them, the report flags the run;
    task.duplicates=drop keeps one row per text before the splits, and counts what it left out."""
    from harness.report.build import build_report
    from harness.config import ReportConfig

    texts = [f"the film number {i} was {'good' if i % 2 else 'bad'} in every way" for i in range(30)]
    frame = pd.DataFrame({"text": [texts[i % 30] + (" " if i >= 60 else "") for i in range(90)],
                          "label": ["pos" if (i % 30) % 2 else "neg" for i in range(90)]})
    frame.loc[89, "label"] = "pos" if frame.loc[89, "label"] == "neg" else "neg"  # copies that disagree
    data = tmp_path / "films.csv"
    frame.to_csv(data, index=False)
    store = tmp_path / "s.sqlite"
    ran = run_harness([*BASE, "task=csv", f"task.data_path={data}", f"store.url={store}"], tmp_path)
    assert ran.code == 0, ran.err
    note = next(line for line in ran.err.splitlines() if "repeat a training text" in line)
    row = load(store).iloc[0]
    in_train = row.details["in_train"]
    assert in_train["test"] > 0 and in_train["validation"] > 0
    assert note.startswith(f"[harness] note: task films: {in_train['test']} of {row.n_test} test and "
                           f"{in_train['validation']} of {row.n_validation} validation examples repeat a "
                           f"training text"), note
    assert "task.duplicates=drop keeps one row per text" in note
    report = build_report(store, tmp_path / "report", options=ReportConfig(pdf=False, formats=["md"]))
    text = (report.out_dir / "report.md").read_text()
    assert "| Test texts also in train | FLAGGED: 1 of 1 runs had more than 5% of their test examples" in text
    assert f"{in_train['test']} of its {row.n_test} test examples" in text

    ran = run_harness([*BASE, "task=csv", f"task.data_path={data}", "task.duplicates=drop",
                       f"store.url={store}"], tmp_path)
    assert ran.code == 0, ran.err
    assert "[harness] note: task films: 60 of 90 rows of" in ran.err and "(60 repeated text)" in ran.err
    assert "task.duplicates=drop: 1 texts' copies disagreed on the label (the first row's label kept)" in ran.err
    dropped = load(store).set_index("run_id").drop(row.run_id).iloc[0]
    assert dropped.details["in_train"] == {"validation": 0, "test": 0}
    assert dropped.n_train + dropped.n_validation + dropped.n_test == 30 and dropped.dropped_rows == 60
    assert dropped.config_hash != row.config_hash  # another setting, another identity
    from harness.results.identity import config_hash

    plain = _container([*BASE, "task=csv", f"task.data_path={data}"])
    assert config_hash(plain) == config_hash({**plain, "task": {  # keep hashes as before the setting
        k: v for k, v in plain["task"].items() if k not in ("duplicates", "delimiter", "quoting")}})


def test_a_stray_quote_is_refused_not_read_as_rows_joined_into_one_text(tmp_path):
    """A TSV whose texts hold double quotes as written: pandas would read the rows from an opening
    quote to the next quote as one text (60 rows as 39); the harness names the line, and
    task.quoting=none reads every row with its quotes."""
    from harness.job.validation import validate
    from harness.results.identity import config_hash
    from harness.tasks.load import load_task

    texts = [f"film {i} was {'good' if i % 2 else 'bad'}" for i in range(60)]
    texts[20], texts[41] = '"Unclosed quote: film 20 was bad', 'film 41 "ends" well'
    data = tmp_path / "quotes.tsv"
    data.write_text("text\tlabel\n" + "".join(f"{t}\t{'pos' if i % 2 else 'neg'}\n" for i, t in enumerate(texts)))
    assert len(pd.read_csv(data, sep="\t")) == 39  # what reading it as pandas does gives
    store = tmp_path / "s.sqlite"
    ran = run_harness([*BASE, "task=csv", f"task.data_path={data}", f"store.url={store}"], tmp_path)
    assert ran.code == 2 and f"line 22 of {data} (tab-separated): a value begins with a double quote" in ran.err
    task = validate(compose_config([*BASE, "task=csv", f"task.data_path={data}", "task.quoting=none"])).task
    loaded = load_task(task)
    read = sorted(t for split in (loaded.train, loaded.validation, loaded.test) for t in split.texts)
    assert read == sorted(texts)  # every row, each quote as written
    plain = _container([*BASE, "task=csv", f"task.data_path={data}"])
    assert config_hash(_container([*BASE, "task=csv", f"task.data_path={data}", "task.quoting=none"])) \
        != config_hash(plain)


def test_a_multi_task_runs_hash_leaves_out_the_task_keys_added_since_in_each_subtask():
    from harness.results.identity import config_hash, hashed_part

    multi = _container([*TINY, "task=multi_synthetic"])
    subs = multi["task"]["subtasks"]
    assert all(s["duplicates"] == "keep" and s["delimiter"] is None for s in subs.values())
    hashed = hashed_part(multi)["task"]["subtasks"]
    assert all("duplicates" not in s and "delimiter" not in s and "quoting" not in s and "header" in s
               for s in hashed.values())
    before = {**multi, "task": {**multi["task"], "subtasks": {  # the config as it was before the keys
        name: {k: v for k, v in s.items() if k not in ("duplicates", "delimiter", "quoting")}
        for name, s in subs.items()}}}
    assert config_hash(multi) == config_hash(before)
    dropped = {**multi, "task": {**multi["task"], "subtasks": {**subs, "sentiment": {
        **subs["sentiment"], "duplicates": "drop"}}}}
    assert config_hash(dropped) != config_hash(multi)


def test_labels_differing_in_case_and_blank_texts_are_noted_and_trained_as_written(tmp_path):
    data = tmp_path / "votes.csv"
    pd.DataFrame({"text": ["   " if i in (4, 7) else f"sentence {i} says {'overrule' if i % 3 < 2 else 'affirm'}"
                           for i in range(90)],
                  "label": [["Yes", "yes", "No"][i % 3] for i in range(90)]}).to_csv(data, index=False)
    ran = run_harness([*BASE, "task=csv", f"task.data_path={data}", f"store.url={tmp_path / 's.sqlite'}"], tmp_path)
    assert ran.code == 0, ran.err
    assert ("[harness] note: task votes: labels 'Yes' and 'yes' differ only in case and are trained as "
            "different classes; if they are one class, write them alike in the file") in ran.err
    assert "[harness] note: task votes: 2 rows have a text of spaces only, trained on as an empty input" in ran.err
    assert load(tmp_path / "s.sqlite").iloc[0].details["label_names"] == ["No", "Yes", "yes"]
    from types import SimpleNamespace

    from harness.tasks.check import odd_rows

    def said(*names):
        return odd_rows(SimpleNamespace(label_names=list(names), type=SimpleNamespace(named_classes=True)),
                        pd.DataFrame({"text": ["a"]}))
    assert said("neg", "neg ", "pos") == ["labels 'neg' and 'neg ' differ only in spaces around them and are "
                                          "trained as different classes; if they are one class, write them "
                                          "alike in the file"]
    assert "differ only in case or spaces around them" in said("Yes", "yes ")[0]
    assert said("neg", "pos") == []


def test_a_split_column_may_name_its_splits_as_datasets_do(tmp_path):
    from harness.job.validation import validate
    from harness.tasks import TaskDataError
    from harness.tasks.load import load_task

    names = ["Train", "training", " TRAIN", "VALID", "dev", "Development", "Testing", "test"]
    frame = pd.DataFrame({"text": [f"the film number {i} was {'good' if i % 2 else 'bad'}" for i in range(48)],
                          "label": ["pos" if i % 2 else "neg" for i in range(48)],
                          "part": [names[i % 8] for i in range(48)]})
    frame.to_csv(tmp_path / "films.csv", index=False)
    task = validate(compose_config([*BASE, "task=csv", f"task.data_path={tmp_path / 'films.csv'}",
                                    "task.split_column=part"])).task
    data = load_task(task)
    assert (len(data.train), len(data.validation), len(data.test)) == (18, 18, 12)
    frame.loc[5, "part"] = "holdout"
    frame.to_csv(tmp_path / "films.csv", index=False)
    with pytest.raises(TaskDataError, match=r"unknown split value\(s\) \['holdout'\] in the split column; "
                                            r"allowed \(any case\): train \(or training\)"):
        load_task(task)


def test_columns_given_the_wrong_way_round_are_refused_not_trained_as_600_classes(tmp_path):
    """Text read as the label (columns swapped): hundreds of labels, each on one row. Refused in
    one line naming the column, before anything trains; naming the classes (task.labels) lifts it."""
    data = header_less(tmp_path / "films.tsv", n=60)
    store = tmp_path / "s.sqlite"
    swapped = [*BASE, "task=csv", f"task.data_path={data}", "task.header=false", f"store.url={store}"]
    ran = run_harness([*swapped, "task.text_column=0", "task.label_column=1"], tmp_path)
    assert ran.code == 2 and len(ran.err_lines) == 1 and not store.exists()
    assert "the label column '1' holds 60 distinct values in 60 rows, 60 of them on one row only" in ran.err
    assert "task.label_column" in ran.err and "task.labels" in ran.err
    from harness.tasks.labels import MANY_LABELS, refuse_text_as_labels

    class Cfg:
        name, label_column = "t", "label"
    many = [[f"c{i % MANY_LABELS}"] for i in range(2 * MANY_LABELS)]  # 20 classes, two rows each
    refuse_text_as_labels(many, sorted({v for (v,) in many}), Cfg)  # real classes pass
    few = [[f"c{i}"] for i in range(MANY_LABELS - 1)]  # under the threshold: not judged
    refuse_text_as_labels(few, sorted({v for (v,) in few}), Cfg)


def test_two_files_are_two_tasks_and_the_hash_of_a_named_task_is_unchanged(tmp_path):
    a = header_less(tmp_path / "a.tsv")
    b = header_less(tmp_path / "b.tsv")
    from harness.job.validation import validate

    names = {validate(compose_config([*BASE, "task=csv", f"task.data_path={p}"])).task.name for p in (a, b)}
    assert names == {"a", "b"}
    named = validate(compose_config([*BASE, "task=csv", f"task.data_path={a}", "task.name=mine"])).task
    assert named.name == "mine"
    # the name is derived, not written into the config: the hash is the one the config always had
    base = ["task=csv", f"task.data_path={a}", "model=tiny_bert"]
    container = _container(base)
    assert container["task"]["name"] == "csv" and "header" in container["task"]
    assert config_hash(container) == config_hash({**container, "task": {
        k: v for k, v in container["task"].items() if k != "header"}})


BAD = {
    "a negative warm-up": (["trainer.warmup_ratio=-0.1"], "trainer.warmup_ratio must be in [0, 1)"),
    "a warm-up of every step": (["trainer.warmup_ratio=1.0"], "trainer.warmup_ratio must be in [0, 1)"),
    "a max length of 1": (["task.max_length=1"], "task.max_length must be at least 8 tokens"),
    "past the model's positions": (["task.max_length=1024"],
                                   "task.max_length=1024 is more than model tiny_bert has positions for "
                                   "(max_position_embeddings=256"),
    "an unknown key added with +": (["+task.max_lenght=64"],
                                    "unknown key 'task.max_lenght': task has no setting 'max_lenght'"),
    "a network-only dataset offline": (["task=lexglue_scotus"],
                                       "reads coastalcph/lex_glue from the Hugging Face hub, but HF_HUB_OFFLINE is set"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_settings_are_refused_in_one_line_before_anything_trains(case, tmp_path):
    extra, needle = BAD[case]
    store = tmp_path / "s.sqlite"
    ran = run_harness([*TINY, f"store.url={store}", *extra], tmp_path)
    assert ran.code == 2 and len(ran.err_lines) == 1, ran.err
    assert needle in ran.err_lines[0] and not store.exists()


def test_the_hub_is_probed_when_not_told_offline(tmp_path, monkeypatch):
    from harness.tasks import online
    from harness.job.validation import validate

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty"))
    online.hub_reachable.cache_clear()
    task = validate(compose_config([*TINY, "task=lexglue_scotus"])).task
    assert "the hub cannot be reached from here" in online.unreachable_data(task)
    (tmp_path / "empty" / "coastalcph___lex_glue").mkdir(parents=True)  # a cached copy: allowed
    assert online.unreachable_data(task) is None
    online.hub_reachable.cache_clear()


NESTED = {
    "a list in a text column": ({"text": ["a", "list"]}, [], "column 'text' of {path} holds a list in row 4, not text"),
    "an object label": ({"label": {"a": 1}}, [], "row 4 of {path}: the label (task.label_column=label) is a JSON object"),
    "numbers named as the text": ({}, ["task.text_column=label", "task.label_column=text"],
                                  "column 'label' of {path} holds only numbers (row 1: 0), not text"),
}


@pytest.mark.parametrize("case", NESTED, ids=list(NESTED))
def test_nested_or_non_text_columns_are_refused_naming_them(case, tmp_path):
    change, extra, needle = NESTED[case]
    rows = [{"text": f"text {i}", "label": i % 2, **(change if i == 3 else {})} for i in range(30)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = tmp_path / "s.sqlite"
    ran = run_harness([*BASE, "task=jsonl", f"task.data_path={data}", f"store.url={store}", *extra], tmp_path)
    assert ran.code == 2 and len(ran.err_lines) == 1 and not store.exists(), ran.err
    assert needle.format(path=data) in ran.err_lines[0], ran.err_lines[0]


def _sweep(store: Path, out: Path) -> list[str]:
    # LoRA through tests/pausing_methods.py: the run $HARNESS_TEST_HOLD names waits at its last step
    return [sys.executable, "-m", "harness", "-m", *TINY, "trainer.isolate=true", "trainer.max_steps=30",
            "trainer.epochs=30", "method=lora", "seed=0,1", "method.builder=held_test",
            "plugins=[tests.pausing_methods]", f"store.url={store}", f"hydra.sweep.dir={out}",
            "report.pdf=false", "trainer.progress=false"]


def test_ctrl_c_says_what_was_kept_and_the_rerun_reports_every_configuration(tmp_path):
    from tests.pausing_methods import HOLD_ENV

    store, hold = tmp_path / "s.sqlite", tmp_path / "hold"
    hold.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), HOLD_ENV: f"{hold}:2"}  # the second run is held
    # Ctrl-C as a terminal delivers it: SIGINT at its default, even where this test runs with it
    # ignored (a shell's background job), which the command would inherit and Python then keeps
    proc = subprocess.Popen(_sweep(store, tmp_path / "first"), cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while not (hold / "held").exists():  # the first run is recorded, the second is training
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    assert len(load(store, status="finished", decode=False)) == 1
    os.killpg(proc.pid, signal.SIGINT)
    (hold / "go").touch()  # whatever the interrupted command does with its worker, nothing waits on the hold
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the interrupted command did not end within 120 s; stderr: {err[-3000:]}")
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "leaked semaphore" not in err, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert lines[-1].startswith("[harness] interrupted: 1 of 2 configurations are recorded as finished")
    assert "Run the same command again to resume" in lines[-1]
    # the same grid again (another sweep folder): one run is skipped, one trains; the report has both
    again = subprocess.run(_sweep(store, tmp_path / "second"), cwd=tmp_path, env=env, text=True,
                           capture_output=True, timeout=600)
    assert again.returncode == 0, again.stderr
    report = (tmp_path / "second" / "report" / "report.md").read_text()
    assert "2 finished runs" in report
    finished = load(store, status="finished")
    assert sorted(finished.seed) == [0, 1] and set(finished.method) == {"lora"}


def test_library_warnings_go_to_the_log_not_the_terminal(tmp_path):
    env = {**os.environ, "PEFT_HARNESS_CACHE": str(tmp_path), "PYTHONPATH": str(ROOT)}
    code = ("from harness.quiet import quiet_libraries; quiet_libraries()\n"
            "import logging; logging.getLogger('bitsandbytes.backends.cpu.ops').warning('kernel trust')\n")
    ran = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and "kernel trust" not in ran.stderr + ran.stdout
    assert "kernel trust" in (tmp_path / "library-warnings.log").read_text()


def test_runs_of_one_task_name_on_different_data_are_never_pooled_in_a_report():
    from harness.report.select import Selection, select_runs

    runs = pd.DataFrame({"task": ["reviews", "reviews", "reviews", "other", "other"],
                         "status": ["finished"] * 4 + ["failed"],
                         "data_fingerprint": ["aaaa1111bbbb", "aaaa1111bbbb", "cccc2222dddd", "eeee", None],
                         "stage": None, "created_at": "2026-01-01", "method": "lora"})
    finished, failed = select_runs(runs, Selection({"task": ["reviews", "other"]}))
    assert list(finished.task) == ["reviews [data aaaa1111]", "reviews [data aaaa1111]",
                                   "reviews [data cccc2222]", "other"]
    assert list(failed.task) == ["other"]  # a failure recorded without a fingerprint is no version


def test_flagged_runs_are_named_up_to_ten_per_table_and_the_rest_counted():
    from harness.report.data_notes import cut_findings

    runs = pd.DataFrame({"task": "t", "model": "m", "method": "lora", "seed": range(25),
                         "n_truncated_test": 50, "n_test": 100, "details_json": None})
    lines = cut_findings(runs, "t", "m")
    assert len(lines) == 11 and lines[0].startswith("Flagged: lora seed 0 on t (m): 50% of its test")
    assert lines[-1].startswith("… and 15 more runs of this table flagged")
