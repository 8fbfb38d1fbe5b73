"""`python -m harness.results import` and `copy`: no second finished run of a configuration, kept
files checked (hash, finite metrics, prediction lengths, shape) and refused in one line without
being renamed, a store that refuses the write is one line; SQLite and a real PostgreSQL server."""
from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from harness.results.fingerprint import HARNESS_VERSION
from harness.results.identity import config_hash
from harness.results import load
from harness.results.__main__ import main as results_cli
from harness.results.backends.sqlite import SQLiteStore
from harness.results.store import SCHEMA_VERSION, open_store

CONFIG = {"seed": 0, "method": {"name": "lora", "lr": 0.001, "r": 8},
          "task": {"name": "synthetic", "loader": "synthetic"},
          "model": {"name": "tiny_bert", "tiny": True},
          "trainer": {"device": "cpu", "autocast": "off", "epochs": 1}, "store": {"url": "***"}}
IDENTITY = {"harness_version": HARNESS_VERSION, "data_fingerprint": "d4t4", "model_fingerprint": "tiny",
            "device_kind": "cpu"}
CURVES = [{"epoch": 1, "split": "validation", "metric": "accuracy", "value": 0.5},
          {"epoch": 1, "split": "train", "metric": "loss", "value": 0.7}]


def kept_run(run_id="u1", seed=0, predictions=None, config=None, identity=None, **extra) -> dict:
    """A kept run as the runner writes it, its hash the hash of its config and recorded identity."""
    config = json.loads(json.dumps(config or {**CONFIG, "seed": seed}))
    identity = identity or IDENTITY
    autocast = config["trainer"]["autocast"]
    row = {"run_id": run_id, "status": "finished", "method": "lora", "model": "tiny_bert",
           "task": "synthetic", "quant": "none", "seed": seed, "r": 8, "lr": 0.001,
           "config_hash": config_hash(config, {**identity, "autocast": autocast}),
           "config_json": json.dumps(config, sort_keys=True), "created_at": "2026-01-01T00:00:00+00:00",
           "schema_version": SCHEMA_VERSION, "accuracy": 0.75, "eval_loss": 0.6, "n_test": 3,
           **identity}
    preds = {"test": {"labels": [0, 1, 1], "predictions": [0, 1, 0], "majority": [1, 1, 1]}}
    return {"row": row | extra, "curves": CURVES,
            "predictions": preds if predictions is None else predictions}


def write(folder: Path, kept, text: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "unrecorded.json"
    path.write_text(text if text is not None else json.dumps(kept))
    return path


def count(store_path) -> int:
    return len(load(store_path, decode=False)) if Path(store_path).exists() else 0


def one_error_line(capsys, *needles: str) -> str:
    """stderr held exactly one line, ``error: ...``, holding every needle, and no traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and all(n in lines[0] for n in needles), err
    return lines[0]


# --- import: a good file, duplicates ------------------------------------------------------------

def test_a_good_file_is_imported_and_renamed(tmp_path, store_path, capsys):
    path = write(tmp_path / "run1", kept_run())
    assert results_cli(["import", str(tmp_path), "--store", str(store_path)]) == 0
    assert "imported 1 run(s)" in capsys.readouterr().out
    assert not path.exists() and path.with_name("unrecorded.imported.json").exists()
    assert load(store_path)["run_id"].tolist() == ["u1"]
    assert SQLiteStore(store_path).predictions()["u1"]["predictions"].tolist() == [0, 1, 0]


def test_a_run_hashed_on_another_machine_is_checked_against_what_it_recorded(tmp_path, store_path):
    gpu = {**CONFIG, "trainer": {"device": "auto", "autocast": "auto"}}
    far = {**IDENTITY, "device_kind": "cuda", "data_fingerprint": "elsewhere",
           "model_fingerprint": "hub:org/model@abc"}
    write(tmp_path / "run1", kept_run(config=gpu, identity=far))
    assert results_cli(["import", str(tmp_path), "--store", str(store_path)]) == 0
    assert count(store_path) == 1


def test_a_finished_configuration_the_store_holds_is_not_added_again(tmp_path, store_path, capsys):
    first = kept_run("u1")
    open_store(store_path).record(first["row"], CURVES)
    path = write(tmp_path / "again", kept_run("u2"))  # same configuration, another run
    assert results_cli(["import", str(tmp_path), "--store", str(store_path)]) == 0
    out = capsys.readouterr().out
    assert "imported 0 run(s)" in out and "1 skipped: a finished run of their configuration" in out
    assert load(store_path)["run_id"].tolist() == ["u1"]
    assert path.with_name("unrecorded.imported.json").exists()  # handled: nothing left to import


def test_two_files_of_one_configuration_add_one_finished_run_and_a_failed_one_beside(tmp_path, store_path,
                                                                                     capsys):
    write(tmp_path / "a", kept_run("u1"))
    write(tmp_path / "b", kept_run("u2"))
    write(tmp_path / "c", kept_run("u3", status="failed", error="boom", accuracy=None))
    assert results_cli(["import", str(tmp_path), "--store", str(store_path)]) == 0
    assert "imported 2 run(s)" in capsys.readouterr().out
    runs = load(store_path, decode=False)
    assert sorted(runs["status"]) == ["failed", "finished"] and runs["config_hash"].nunique() == 1
    assert results_cli(["import", str(tmp_path), "--store", str(store_path)]) == 0  # nothing left
    assert count(store_path) == 2


# --- import: refused files ----------------------------------------------------------------------

def _refused(tmp_path, store_path, capsys, path: Path, *needles: str) -> None:
    before, text = count(store_path), path.read_bytes()
    assert results_cli(["import", str(path.parent), "--store", str(store_path)]) == 2
    one_error_line(capsys, str(path), *needles)
    assert path.read_bytes() == text and not path.with_name("unrecorded.imported.json").exists()
    assert count(store_path) == before


def test_a_hash_that_is_not_its_configs_is_refused(tmp_path, store_path, capsys):
    kept = kept_run()
    kept["row"]["config_hash"] = "0123456789abcdef"
    _refused(tmp_path, store_path, capsys, write(tmp_path / "r", kept), "config_hash", "does not match")
    kept = kept_run()
    kept["row"]["config_json"] = json.dumps({**CONFIG, "seed": 1})  # the config edited, the hash not
    _refused(tmp_path, store_path, capsys, write(tmp_path / "r", kept), "does not match")


@pytest.mark.parametrize("field,value", [("accuracy", math.nan), ("eval_loss", math.inf),
                                         ("lr", -math.inf)])
def test_a_metric_that_is_not_finite_is_refused(tmp_path, store_path, capsys, field, value):
    path = write(tmp_path / "r", kept_run(**{field: value}))
    _refused(tmp_path, store_path, capsys, path, field, "not a finite number")


def test_a_curve_value_that_is_not_finite_is_refused(tmp_path, store_path, capsys):
    kept = kept_run()
    kept["curves"] = [CURVES[0], {**CURVES[1], "value": math.nan}]
    _refused(tmp_path, store_path, capsys, write(tmp_path / "r", kept), "curves[1].value", "finite")


@pytest.mark.parametrize("predictions,needle", [
    ({"test": {"labels": [0, 1], "predictions": [0, 1]}}, "has 2 entries but the test split has 3"),
    ({"test": {"labels": [0, 1, 1], "predictions": [0, 1, 0, 1]}}, "has 4 entries"),
    ({"validation": {"labels": [0, 1], "predictions": [0]}}, "has 1 entries"),
])
def test_predictions_that_do_not_match_their_split_are_refused(tmp_path, store_path, capsys,
                                                              predictions, needle):
    path = write(tmp_path / "r", kept_run(predictions=predictions))
    _refused(tmp_path, store_path, capsys, path, needle)


def _malformed():
    kept = kept_run()
    row = kept["row"]
    return [
        ("", "is empty"), ("   \n", "is empty"), ("[1, 2]", "not a JSON object"),
        ("{not json", "not JSON"), ('"text"', "not a JSON object"), ("\xff\xfe", "not JSON"),
        (json.dumps({"row": row}), "expected ['curves', 'row']"),
        (json.dumps({**kept, "extra": 1}), "has keys"),
        (json.dumps({**kept, "row": [1]}), "row must be an object"),
        (json.dumps({**kept, "row": {**row, "nonsense": 1}}), "unknown result field"),
        (json.dumps({**kept, "row": {k: v for k, v in row.items() if k != "method"}}), "'method' is required"),
        (json.dumps({**kept, "row": {**row, "seed": "zero"}}), "seed"),
        (json.dumps({**kept, "row": {**row, "seed": True}}), "seed"),
        (json.dumps({**kept, "row": {**row, "n_test": 2**70}}), "64-bit"),
        (json.dumps({**kept, "row": {**row, "total_params": -2**64}}), "64-bit"),
        (json.dumps({**kept, "row": {**row, "status": "done"}}), "status"),
        (json.dumps({**kept, "row": {**row, "sweep": "a\x00b"}}), "NUL"),
        (json.dumps({**kept, "row": {**row, "config_json": "{nope"}}), "config_json"),
        (json.dumps({**kept, "row": {**row, "config_json": "[1]"}}), "config_json"),
        (json.dumps({**kept, "curves": {"epoch": 1}}), "curves must be a list"),
        (json.dumps({**kept, "curves": [1]}), "curves[0] must be an object"),
        (json.dumps({**kept, "curves": [{"epoch": 1, "split": "train"}]}), "curves[0] has keys"),
        (json.dumps({**kept, "curves": [{**CURVES[0], "value": "high"}]}), "must be a number"),
        (json.dumps({**kept, "curves": [{**CURVES[0], "epoch": 2**64}]}), "64-bit"),
        (json.dumps({**kept, "curves": [{**CURVES[0], "oops": 1}]}), "has keys"),
        (json.dumps({**kept, "predictions": [1, 2]}), "predictions must map"),
        (json.dumps({**kept, "predictions": {"test": {"labels": [[0], [1, 2], [3]]}}}), "not an array"),
        (json.dumps({**kept, "predictions": {"test": {"labels": [{"a": 1}] * 3}}}), "not an array"),
        (json.dumps({**kept, "predictions": {"test": {"labels": 3}}}), "not an array"),
        (json.dumps({**kept, "predictions": {"test": {"labels": [2**80] * 3}}}), "not an array"),
    ]


@pytest.mark.parametrize("text,needle", _malformed())
def test_a_malformed_file_is_one_line_and_left_as_it_was(tmp_path, store_path, capsys, text, needle):
    open_store(store_path).record(kept_run("other", seed=9)["row"], [])
    path = tmp_path / "r" / "unrecorded.json"
    path.parent.mkdir()
    path.write_bytes(text.encode("utf-8", "surrogateescape") if text != "\xff\xfe" else b"\xff\xfe")
    _refused(tmp_path, store_path, capsys, path, needle)


def test_the_good_files_of_an_import_go_in_and_the_bad_ones_stay(tmp_path, store_path, capsys):
    good = write(tmp_path / "a", kept_run("u1"))
    bad = write(tmp_path / "b", kept_run("u2", seed=1, accuracy=math.inf))
    assert results_cli(["import", str(tmp_path), "--store", str(store_path)]) == 2
    captured = capsys.readouterr()
    assert "imported 1 run(s)" in captured.out and "1 file(s) refused" in captured.out
    assert captured.err.count("\n") == 1 and str(bad) in captured.err
    assert bad.exists() and not good.exists() and load(store_path)["run_id"].tolist() == ["u1"]


def test_refusing_every_file_makes_no_store_and_a_missing_folder_is_one_line(tmp_path, store_path, capsys):
    write(tmp_path / "r", None, "[]")
    assert results_cli(["import", str(tmp_path), "--store", str(store_path)]) == 2
    one_error_line(capsys, "not a JSON object")
    assert not store_path.exists()
    assert results_cli(["import", str(tmp_path / "typo"), "--store", str(store_path)]) == 2
    one_error_line(capsys, "no such file or folder", "typo")


# --- a store that refuses the write -------------------------------------------------------------

def test_a_read_only_sqlite_store_is_one_line(tmp_path, store_path, capsys, monkeypatch):
    open_store(store_path).record(kept_run("other", seed=9)["row"], [])
    path = write(tmp_path / "r", kept_run())
    source = tmp_path / "source.sqlite"
    open_store(source).record(kept_run("s1", seed=5)["row"], [])

    def read_only(self, *args):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(SQLiteStore, "record", read_only)
    assert results_cli(["import", str(path.parent), "--store", str(store_path)]) == 2
    one_error_line(capsys, f"cannot write the results store {store_path}", "readonly")
    assert results_cli(["copy", str(source), str(store_path)]) == 2
    one_error_line(capsys, "cannot write the results store", "readonly")
    monkeypatch.undo()
    assert path.exists() and count(store_path) == 1


@contextmanager
def unwritable(path: Path):
    """``path`` read-only for this process: its mode (and its folder's), or, under root, who may
    write any file, the file made immutable (``chattr +i``); skips where neither is possible."""
    if os.geteuid() != 0:
        path.chmod(0o444), path.parent.chmod(0o555)
        try:
            yield
        finally:
            path.parent.chmod(0o755), path.chmod(0o644)
        return
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(path)],
                                                     capture_output=True).returncode:
        pytest.skip("as root a file is made read-only with chattr +i, which this file system refuses")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_store_file_that_cannot_be_written_is_one_line(tmp_path, capsys):
    store = tmp_path / "store" / "results.sqlite"
    open_store(store).record(kept_run("other", seed=9)["row"], [])
    path = write(tmp_path / "runs" / "r", kept_run())
    source = tmp_path / "source.sqlite"
    open_store(source).record(kept_run("s1", seed=5)["row"], [])
    with unwritable(store):
        assert results_cli(["import", str(tmp_path / "runs"), "--store", str(store)]) == 2
        one_error_line(capsys, f"cannot write the results store {store}")
        assert results_cli(["copy", str(source), str(store)]) == 2
        one_error_line(capsys, f"cannot write the results store {store}")
    assert path.exists() and count(store) == 1


# --- copy ---------------------------------------------------------------------------------------

def test_copy_adds_no_second_finished_run_of_a_configuration(tmp_path, store_path, capsys):
    source = tmp_path / "laptop.sqlite"
    local = open_store(source)
    local.record(kept_run("a")["row"], CURVES)
    local.record(kept_run("b", status="failed", error="boom", accuracy=None)["row"], [])
    open_store(store_path).record(kept_run("t")["row"], [])  # the same configuration, finished
    assert results_cli(["copy", str(source), str(store_path)]) == 0
    out = capsys.readouterr().out
    assert "copied 1 run(s)" in out and "1 skipped: a finished run of their configuration" in out
    runs = load(store_path, decode=False).set_index("run_id")
    assert sorted(runs.index) == ["b", "t"] and runs.loc["b", "status"] == "failed"


def test_copy_refuses_the_rows_another_program_wrote_and_copies_the_rest(tmp_path, store_path, capsys):
    source = tmp_path / "theirs.sqlite"
    src = open_store(source)
    src.record(kept_run("good", seed=1)["row"], CURVES)
    src.record(kept_run("inf", seed=2)["row"], [])
    src.record(kept_run("text", seed=3)["row"], [])
    src.record(kept_run("huge", seed=4)["row"], [])
    src.record(kept_run("short", seed=5)["row"], [], {"test": {"labels": np.array([0, 1])}})
    src.record(kept_run("blob", seed=6)["row"], [], {"test": {"labels": np.array([0, 1, 1])}})
    with sqlite3.connect(source) as conn:
        conn.execute("UPDATE runs SET accuracy=? WHERE run_id='inf'", (math.inf,))
        conn.execute("UPDATE runs SET accuracy='NaN' WHERE run_id='text'")
        conn.execute("UPDATE runs SET total_params=? WHERE run_id='huge'", (1e300,))
        conn.execute("UPDATE predictions SET data=x'00ff' WHERE run_id='blob'")
    assert results_cli(["copy", str(source), str(store_path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith("error: run ") for line in lines), captured.err
    for run_id, needle in [("inf", "inf, not a finite"), ("text", "nan, not a finite"),
                           ("huge", "64-bit"), ("short", "has 2 entries but the test split has 3"),
                           ("blob", "predictions cannot be read")]:
        assert any(f"run {run_id} in {source}" in line and needle in line for line in lines), (run_id, lines)
    assert "copied 1 run(s)" in captured.out and "5 refused" in captured.out
    assert load(store_path)["run_id"].tolist() == ["good"]


# --- PostgreSQL ---------------------------------------------------------------------------------

def _reader(postgres_server, pg_url) -> str:
    """A role of its own on ``pg_url``'s database that may read every table and write none."""
    database = pg_url.split("/")[3].split("?")[0]
    role = f"reader_{database}"
    postgres_server.sql(f"CREATE ROLE {role} LOGIN")
    postgres_server.sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}", database)
    return postgres_server.url(database, user=role).replace(f"{role}@", f"{role}:s3cret@")


def test_import_and_copy_into_postgres_as_a_role_that_may_only_read(pg_url, postgres_server,
                                                                    tmp_path, capsys):
    open_store(pg_url).record(kept_run("other", seed=9)["row"], [])
    reader = _reader(postgres_server, pg_url)
    path = write(tmp_path / "r", kept_run())
    assert results_cli(["import", str(tmp_path), "--store", reader]) == 2
    line = one_error_line(capsys, "cannot write the results store postgresql://reader_",
                          ":***@", "permission denied")
    assert "s3cret" not in line and path.exists() and len(load(pg_url)) == 1
    source = tmp_path / "laptop.sqlite"
    open_store(source).record(kept_run("s1", seed=5)["row"], [])
    assert results_cli(["copy", str(source), reader]) == 2
    assert "s3cret" not in one_error_line(capsys, "permission denied")
    assert len(load(pg_url)) == 1


def test_copy_from_postgres_refuses_an_infinite_metric_and_no_duplicates_go_in(pg_url, tmp_path, capsys):
    import psycopg

    shared = open_store(pg_url)
    shared.record(kept_run("a")["row"], CURVES)
    shared.record(kept_run("bad", seed=3)["row"], [])
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE runs SET eval_loss='-Infinity' WHERE run_id='bad'")
    back = tmp_path / "back.sqlite"
    open_store(back).record(kept_run("mine")["row"], [])  # run a's configuration, finished
    assert results_cli(["copy", pg_url, str(back)]) == 2
    captured = capsys.readouterr()
    one = captured.err.strip().splitlines()
    assert len(one) == 1 and "run bad in postgresql://" in one[0] and "eval_loss" in one[0]
    assert "copied 0 run(s)" in captured.out and "1 skipped" in captured.out
    assert load(back)["run_id"].tolist() == ["mine"]
