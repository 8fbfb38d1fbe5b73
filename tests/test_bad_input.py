"""Bad input is refused before anything trains: one line on stderr, exit code 2, store untouched.

Every refusal is provoked through the entry point in a process of its own (``python -m harness``
with the real command line). A fresh interpreter spends ~10 s importing the method libraries
before it can refuse anything, so the cases run in processes forked from this one once those are
imported, each executing ``harness/__main__.py`` as ``python -m harness`` does (``runpy``), with
its own stdout, stderr and exit status; one test runs fresh ``python -m harness`` interpreters to
show they give the same answers.
"""
from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE = ["model=tiny_bert", "trainer=smoke"]


@dataclass
class Ran:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.strip().splitlines()


@pytest.fixture(scope="module", autouse=True)
def _libraries_imported():
    """What the entry point imports before it refuses anything, imported once for every fork."""
    import harness.__main__  # noqa: F401
    from harness.job.plugins import load_plugins

    load_plugins()


def run_harness(args: list[str], cwd: Path, timeout: float = 120) -> Ran:
    """``python -m harness *args`` in ``cwd``, in a forked process; its exit code and output."""
    out, err = cwd / ".stdout", cwd / ".stderr"
    pid = os.fork()
    if pid == 0:  # the child: stdout/stderr are its own files; never returns into pytest
        code = 1
        try:
            os.chdir(cwd)
            for fd, path in ((1, out), (2, err)):
                handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(handle, fd)
                os.close(handle)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            sys.argv = ["harness", *args]
            try:
                runpy.run_module("harness", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"python -m harness {' '.join(args)} ran past {timeout} s")
        time.sleep(0.02)
    return Ran(os.waitstatus_to_exitcode(status), out.read_text(), err.read_text())


# --- data files ----------------------------------------------------------------------------------

def rows(n: int = 40, **columns) -> pd.DataFrame:
    frame = pd.DataFrame({"text": [f"the film was {'good' if i % 2 else 'bad'} {i}" for i in range(n)],
                          "label": ["pos" if i % 2 else "neg" for i in range(n)]})
    return frame.assign(**columns)


def write(path: Path, content) -> Path:
    if isinstance(content, pd.DataFrame):
        content.to_csv(path, index=False)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is None:
        path.mkdir()
    else:
        path.write_text(content)
    return path


def zipped(*members: str) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in members:
            archive.writestr(name, CSV_OK)
    return buffer.getvalue()


GOOD_JSONL = [json.dumps({"text": f"t {i}", "label": i % 2}) for i in range(20)]
CSV_OK = rows().to_csv(index=False).encode()
BAD_BYTE_AT = CSV_OK.index(b"bad 4") + 4  # "the film was bad 4" -> "bad \xff"

# (file name, content, extra overrides, what the one line must say)
DATA_CASES = {
    "a folder": ("folder.csv", None, [], "is a folder, but task folder reads a data file"),
    "an empty file": ("empty.csv", "", [], "data file is empty"),
    "a blank file": ("blank.jsonl", "\n  \n", ["task=jsonl"], "data file is empty"),
    "a header only": ("header.csv", "text,label\n", [], "has no rows (columns: ['text', 'label'])"),
    "a missing column": ("d.csv", rows(), ["task.label_column=y"],
                         "column(s) ['y'] not in {path}; its columns: ['text', 'label']"),
    "one class only": ("one.csv", rows(label="pos"), [], "needs at least 2 labels, found ['pos']"),
    "one class of two allowed": ("one.csv", rows(label="pos"), ["task.labels=[neg,pos]"],
                                 "every row has the label 'pos'; a classifier needs at least 2 classes"),
    "non-UTF-8 bytes": ("latin1.csv", CSV_OK[:BAD_BYTE_AT] + b"\xff" + CSV_OK[BAD_BYTE_AT + 1:], [],
                        f"is not UTF-8: byte 0xff at byte offset {BAD_BYTE_AT}"),
    "a broken JSONL line": ("d.jsonl", "\n".join(GOOD_JSONL[:2] + ['{"text": "x", "label": '] + GOOD_JSONL[2:]),
                            ["task=jsonl"], "line 3 of {path} is not valid JSON: Expecting value"),
    "a JSONL line that is no object": ("d.jsonl", "\n".join(GOOD_JSONL[:4] + ["[1, 2]"]), ["task=jsonl"],
                                       "line 5 of {path} is not a JSON object"),
    "too few rows": ("few.csv", rows(3), [], "the validation split is empty (3 rows in all: train 2, "
                                                 "validation 0, test 1)"),
    "float labels": ("float.csv", rows(label=[i / 4 for i in range(40)]), [],
                     "label 0.25 is not a whole number; labels must be integers or strings"),
    "no labels at all": ("nolabel.csv", rows(label=None), [], "no rows with both a text and a label (40 rows; "
                                                              "40 without a label"),
    "a cut gzip file": ("cut.csv.gz", __import__("gzip").compress(CSV_OK)[:-12], [],
                        "cannot decompress {path}: Compressed file ended before the end-of-stream marker"),
    "a zip of two files": ("two.csv.zip", zipped("a.csv", "b.csv"), [],
                           "{path} holds 2 files (a.csv, b.csv); a zipped data file must hold exactly one"),
    "a zip named for no table": ("data.zip", zipped("a.csv"), [],
                                 "cannot tell what data.zip holds: name a compressed file after its contents, "
                                 "e.g. data.csv.zip or data.jsonl.zip"),
    "a compressed parquet file": ("d.parquet.gz", b"x", [], "cannot read d.parquet.gz; allowed file types: .csv, "
                                  ".tsv, .jsonl, .json, .parquet; the text types also compressed (.gz, .bz2, .xz, .zip"),
    "a delimiter for JSON Lines": ("d.jsonl", "\n".join(GOOD_JSONL), ["task=jsonl", "task.delimiter=|"],
                                   "task.delimiter='|' applies to .csv and .tsv files, not d.jsonl; leave it unset"),
    "a delimiter of two characters": ("d.csv", rows(), ["task.delimiter=ab"],
                                      "task.delimiter must be one character (e.g. ';', '|', or tab), got 'ab'"),
    "an unquoted ';'": ("d.csv", rows(), ["task.delimiter=;"],
                        "cannot read task.delimiter=;: Hydra takes a value holding '=', '?', '&', ';', spaces or "
                        "non-ASCII letters only quoted: task.delimiter=';' (in a shell: \"task.delimiter=';'\")"),
    "an unquoted accent": ("d.csv", rows(), ["task.label_column=étiquette"],
                           "cannot read task.label_column=étiquette: Hydra takes a value holding"),
    "a JSON array holding a list": ("d.json", "[" + ",\n".join(GOOD_JSONL[:3] + ["[1, 2]"]) + "]", ["task=jsonl"],
                                    "element 4 of the array in {path} is not a JSON object"),
    "a cut JSON array": ("d.json", "[" + ",\n".join(GOOD_JSONL), ["task=jsonl"],
                         "{path} is not valid JSON: Expecting ',' delimiter at line 20"),
    "an unquoted comma in a text": ("d.csv", "text,label\nthe film was good,pos\nslow, then dull,neg\n", [],
                                    "cannot parse {path}: Error tokenizing data. C error: Expected 2 fields in line 3, "
                                    "saw 3; a value holding the delimiter (',') must be in double quotes"),
    "a Windows-1252 file": ("win.csv", CSV_OK[:BAD_BYTE_AT] + "é".encode("cp1252") + CSV_OK[BAD_BYTE_AT + 1:], [],
                            f"is not UTF-8: byte 0xe9 at byte offset {BAD_BYTE_AT} cannot be decoded (it would be 'é' "
                            f"in Windows-1252, as Excel saves 'CSV' on Windows): save the file as UTF-8 ('CSV "
                            f"UTF-8'), or convert it: iconv -f WINDOWS-1252 -t UTF-8 {{path}} > {{folder}}/utf8-win.csv"),
    "a UTF-16 file": ("u16.csv", CSV_OK.decode().encode("utf-16"), [],
                      "is not UTF-8: byte 0xff at byte offset 0 cannot be decoded; it starts with a UTF-16 "
                      "byte-order mark (as Excel saves 'Unicode Text'): save it as UTF-8"),
    "a quote closed mid-value": ("d.tsv", "text\tlabel\ngood film\tpos\n\"Dull\" was the word\tneg\n", [],
                                 "line 3 of {path} (tab-separated): a value begins with a double quote that closes "
                                 "before the value ends, so the value would lose its quotes or run on over the lines "
                                 "up to the next quote; if the texts hold double quotes as written (a file saved "
                                 "without quoting), set task.quoting=none"),
    "a quote never closed": ("d.csv", "text,label\ngood film,pos\n\"dull film,neg\nslow,neg\n", [],
                             "line 3 of {path} (','-separated): a value begins with a double quote that is never "
                             "closed, so the rest of the file would be read as one text"),
    "quoting for JSON Lines": ("d.jsonl", "\n".join(GOOD_JSONL), ["task=jsonl", "task.quoting=none"],
                               "task.quoting='none' applies to .csv and .tsv files, not d.jsonl; leave it unset"),
    "an unknown quoting": ("d.csv", rows(), ["task.quoting=double"],
                           "task.quoting must be one of csv, none, got 'double'"),
    "a file for a folder loader": ("d.csv", rows(), ["task=lexglue_ecthr_a"],
                                   "is a file, but task lexglue_ecthr_a reads a folder"),
    "a folder without the split files": ("lexglue", None, ["task=lexglue_ecthr_a"],
                                         "no ecthr_a/<split>-*.parquet files under"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_is_refused_in_one_line_before_anything_runs(case, tmp_path):
    name, content, extra, needle = DATA_CASES[case]
    path = write(tmp_path / name, content)
    store = tmp_path / "results.sqlite"
    task = [] if any(o.startswith("task=") for o in extra) else ["task=csv"]
    ran = run_harness([*BASE, *task, *extra, f"task.data_path={path}", f"store.url={store}"], tmp_path)
    assert ran.code == 2, ran.err
    assert len(ran.err_lines) == 1 and ran.err_lines[0].startswith("error: "), ran.err
    assert needle.format(path=path, folder=path.parent) in ran.err_lines[0]
    assert not store.exists() and not (tmp_path / "outputs").exists()  # nothing ran, no store made


def test_a_lexglue_folder_is_checked_from_its_parquet_footers(tmp_path):
    folder = tmp_path / "lexglue"
    (folder / "ecthr_a").mkdir(parents=True)
    for split in ("train", "test"):
        pd.DataFrame({"text": [["facts"]] * 4}).to_parquet(folder / "ecthr_a" / f"{split}-0.parquet")
    store = tmp_path / "results.sqlite"
    ran = run_harness([*BASE, "task=lexglue_ecthr_a", f"task.data_path={folder}", f"store.url={store}"], tmp_path)
    assert ran.code == 2 and len(ran.err_lines) == 1, ran.err
    assert "column(s) ['labels'] not in" in ran.err and "its columns: ['text']" in ran.err
    assert not store.exists()


def test_a_sweep_over_bad_data_names_its_grid_point_and_leaves_an_existing_store_alone(tmp_path):
    from harness.results.store import open_store
    from tests.report_fixture import fixture_row

    store = tmp_path / "results.sqlite"
    open_store(store).record(fixture_row("lora", 0, 0), [])
    before = (store.read_bytes(), store.stat().st_mtime_ns)
    data = write(tmp_path / "d.csv", rows(label=[0.5] * 40))
    ran = run_harness(["-m", *BASE, "task=csv", f"task.data_path={data}", "method=lora,dora",
                       f"store.url={store}"], tmp_path)
    assert ran.code == 2 and len(ran.err_lines) == 1, ran.err
    assert "labels must be integers or strings" in ran.err and "(grid point: method=lora)" in ran.err
    assert (store.read_bytes(), store.stat().st_mtime_ns) == before


# --- config values -------------------------------------------------------------------------------

def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


CONFIG_CASES = [
    (["seed=-1"], "seed must be an integer >= 0, got -1"),
    (["task.split_seed=-3"], "task.split_seed must be an integer >= 0, got -3"),
    (["method.lr=0"], "method.lr must be a finite number > 0, got 0.0"),
    (["method.lr=-1e-3"], "method.lr must be a finite number > 0, got -0.001"),
    (["method.lr=inf"], "method.lr must be a finite number > 0, got inf"),
    (["method.lr=nan"], "method.lr must be a finite number > 0, got nan"),
    (["method.alpha=inf"], "method.alpha must be a finite number > 0, got inf"),
    (["protocol=tuned", "protocol.lr_grid=[1e-3,-1e-3]"],
     "protocol.lr_factors and protocol.lr_grid must be finite and > 0, got -0.001 in protocol.lr_grid="),
    (["protocol=tuned", "protocol.lr_factors=[0.5,inf]"],
     "protocol.lr_factors and protocol.lr_grid must be finite and > 0, got inf in protocol.lr_factors="),
    (["trainer.max_grad_norm=-1"], "trainer.max_grad_norm must be a finite number > 0, got -1.0"),
    (["trainer.max_grad_norm=inf"], "trainer.max_grad_norm must be a finite number > 0, got inf"),
    (["trainer.max_grad_norm=nan"], "trainer.max_grad_norm must be a finite number > 0, got nan"),
    (["trainer.num_threads=-2"], "trainer.num_threads must be >= 0 (0 or null: torch's default), got -2"),
    (["trainer.device=cuda"], "trainer.device=cuda but no CUDA GPU is available; use trainer.device=auto or cpu"),
]


@pytest.mark.parametrize("overrides,needle", CONFIG_CASES, ids=[" ".join(c[0]) for c in CONFIG_CASES])
def test_bad_values_are_refused_in_one_line_naming_value_and_range(overrides, needle, tmp_path):
    if overrides == ["trainer.device=cuda"] and _cuda():
        pytest.skip("a CUDA GPU is available here")
    store = tmp_path / "results.sqlite"
    ran = run_harness([*BASE, "task=synthetic", *overrides, f"store.url={store}"], tmp_path)
    assert ran.code == 2, ran.err
    assert ran.err_lines == [f"error: {needle}"] or (
        len(ran.err_lines) == 1 and needle in ran.err_lines[0]), ran.err
    assert not store.exists()


def test_a_fresh_interpreter_refuses_the_same_way(tmp_path):
    """The real ``python -m harness``, not forked: the same line and exit code (slow: imports)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
           "OMP_NUM_THREADS": "1"}
    store = tmp_path / "results.sqlite"
    data = write(tmp_path / "d.jsonl", "\n".join(GOOD_JSONL[:2] + ["{oops"] + GOOD_JSONL[2:]))
    cmd = [sys.executable, "-m", "harness", *BASE, "task=jsonl", f"task.data_path={data}",
           "trainer.max_grad_norm=inf", f"store.url={store}"]
    fresh = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    forked = run_harness(cmd[3:], tmp_path)
    assert fresh.returncode == forked.code == 2
    assert fresh.stderr == forked.err  # the config value is refused first, in one line
    assert fresh.stderr.strip() == "error: trainer.max_grad_norm must be a finite number > 0, got inf"
    assert not store.exists()


# --- what passes: notes, dropped rows, and no model library in the data checks ---------------------

def test_rows_without_a_label_are_counted_and_noted_and_short_splits_noted(tmp_path, capsys):
    from harness.sweep.preflight import preflight
    from harness.tasks import load_task
    from harness.job.validation import validate
    from tests.conftest import compose_config

    frame = rows(40)
    frame.loc[[3, 7], "label"] = None
    frame.loc[5, "text"] = None
    data = write(tmp_path / "d.csv", frame)
    args = [*BASE, "task=csv", f"task.data_path={data}", f"store.url={tmp_path / 's.sqlite'}"]
    plan = preflight([*args, "task.train_size=500"])
    assert plan is not None and len(plan.jobs) == 1
    err = capsys.readouterr().err
    assert f"[harness] note: task d: 3 of 40 rows of {data} left out (2 no label, 1 no text)\n" in err
    assert "task.train_size=500 but the train split has 26 rows (37 in all: train 26, validation 4, test 7)" in err
    task = load_task(validate(compose_config(args)).task)
    assert task.dropped == {"no label": 2, "no text": 1} and task.dropped_rows == 3
    assert len(task.train) + len(task.validation) + len(task.test) == 37


def test_the_data_checks_import_no_model_library(tmp_path):
    """The preflight's data checks (harness.tasks.check) load and check a file with pandas only."""
    data = write(tmp_path / "d.csv", rows())
    code = f"""
import sys
from harness.config import TaskConfig
from harness.tasks import TaskDataError
from harness.tasks.check import DataCheck
check = DataCheck()
check(TaskConfig(name="csv", loader="csv", data_path={str(data)!r}))
try:
    check(TaskConfig(name="csv", loader="csv", data_path={str(data)!r}, label_column="y"))
except TaskDataError as exc:
    print("refused:", exc)
print(sorted(m for m in ("torch", "transformers", "peft", "datasets") if m in sys.modules))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "refused: task d: column(s) ['y'] not in" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


# --- a huge line is cut before it is tokenized -----------------------------------------------------

class SpyTokenizer:
    """A real tokenizer that remembers the longest text it was given."""

    def __init__(self, tokenizer) -> None:
        self._tok, self.longest = tokenizer, 0

    def __call__(self, first, *args, **kwargs):
        for batch in (first, *args[:1], kwargs.get("text_pair") or []):
            self.longest = max([self.longest, *(len(t) for t in batch)])
        return self._tok(first, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tok, name)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from harness.models.load import build_tiny
    from harness.job.validation import validate
    from tests.conftest import compose_config

    return AutoTokenizer.from_pretrained(build_tiny(validate(compose_config(["model=tiny_bert"])).model.tiny))


def test_a_huge_line_is_cut_in_characters_before_tokenizing_and_counted(tokenizer):
    from harness.tasks import Split
    from harness.tasks.cutting import CHARS_PER_TOKEN, cut_texts
    from harness.tasks.encoding import encode_split
    from harness.tasks.multiple_choice import MultipleChoice
    from harness.tasks.types import SingleLabel

    huge = "ab cd " * 500_000 + "END"  # 3 MB on one line
    spy = SpyTokenizer(tokenizer)
    enc = encode_split(Split([huge, "ab"], [0, 1]), spy, 16, "tail", SingleLabel())
    assert spy.longest <= CHARS_PER_TOKEN * 16
    assert enc.n_truncated == 1 and all(len(e["input_ids"]) <= 16 for e in enc.examples)
    (tail,), _ = cut_texts([huge], spy, 8, "tail")
    assert tail.endswith("cd END")
    for strategy in ("head", "tail", "head_tail"):
        (kept,), n = cut_texts([huge], spy, 8, strategy)
        assert n == 1 and len(tokenizer(kept, add_special_tokens=False)["input_ids"]) <= 8
    (both,), _ = cut_texts([huge], spy, 8, "head_tail")
    assert both.startswith("ab") and both.endswith("END")
    # Cut in characters but what is left fits: counted only if more than whitespace was cut.
    kept, n = cut_texts(["ab" + " " * 5_000, "ab" + " " * 5_000 + "cd"], spy, 8, "head")
    assert n == 1 and kept[0].strip() == kept[1].strip() == "ab"
    assert spy.longest <= 2 * CHARS_PER_TOKEN * 8 + 1  # head_tail: that much from each end
    choices = Split(["context " * 100_000], [0], choices=[["x " * 1_000_000, "y", "z"]])
    enc = encode_split(choices, spy, 24, "tail", MultipleChoice())
    assert spy.longest <= 2 * CHARS_PER_TOKEN * 24 and all(len(s) <= 24 for s in enc.examples[0]["input_ids"])


# --- the HTML report writes names as text, never as markup ----------------------------------------

def test_the_html_report_escapes_method_and_task_names(tmp_path):
    from harness.config import ReportConfig
    from harness.report import build_report
    from harness.results.store import open_store
    from tests.report_fixture import fixture_row

    evil_method, evil_task = "<script>alert(1)</script>", "<img src=x onerror=alert(2)>"
    store = open_store(tmp_path / "s.sqlite")
    i = 0
    for method in ("lora", evil_method):
        for seed in (0, 1):
            row = fixture_row("lora", seed, i)
            store.record({**row, "method": method, "task": evil_task, "run_id": f"{i}",
                          "config_hash": f"h{i}", "accuracy": 0.8 + 0.01 * i}, [])
            i += 1
    report = build_report(tmp_path / "s.sqlite", tmp_path / "out",
                          options=ReportConfig(pdf=False, formats=["html"]))
    pages = [p for p in report.files if p.suffix == ".html"]
    assert pages
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "<script" not in text and "<img" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;img src=x" in text
