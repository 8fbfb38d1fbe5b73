"""The results store: schema, atomic records, refusal of foreign files, backends chosen by URL,
list/export CLI."""
from __future__ import annotations

import os
import sqlite3

import pandas as pd
import pytest

from harness.results import StoreError, check_row, load, load_curves
from harness.results.__main__ import main as results_cli
from harness.results.backends.sqlite import SQLiteStore
from harness.results.store import (SCHEMA_VERSION, STORE_BACKENDS, check_store, open_store,
                                   store_scheme)


def row(run_id="r1", **extra) -> dict:
    base = {"run_id": run_id, "status": "finished", "method": "lora", "model": "tiny_bert",
            "task": "synthetic", "quant": "none", "seed": 0, "config_hash": "abc",
            "config_json": "{}", "created_at": "2026-01-01T00:00:00+00:00",
            "schema_version": SCHEMA_VERSION, "accuracy": 0.75}
    return base | extra


def test_record_and_load_round_trip(store_path):
    store = SQLiteStore(store_path)
    store.record(row(), [{"epoch": 1, "split": "validation", "metric": "accuracy", "value": 0.5}])
    df = load(store_path)
    assert len(df) == 1 and df.loc[0, "accuracy"] == 0.75 and df.loc[0, "config"] == {}
    curves = load_curves(store_path)
    assert curves.to_dict("records") == [{"run_id": "r1", "epoch": 1, "variant": "", "split": "validation",
                                          "metric": "accuracy", "value": 0.5}]
    assert store.finished_hashes() == {"abc"}


def test_a_run_is_recorded_whole_or_not_at_all(store_path):
    store = SQLiteStore(store_path)
    bad_curve = [{"epoch": 1, "split": "validation", "metric": "accuracy", "value": 0.5},
                 {"epoch": 2, "split": "validation"}]  # missing keys: fails mid-transaction
    with pytest.raises(KeyError):
        store.record(row(), bad_curve)
    assert load(store_path).empty and load_curves(store_path).empty


@pytest.mark.parametrize("bad,needle", [
    ({"accuracy": "high"}, "accuracy"), ({"status": "done"}, "status"),
    ({"nonsense": 1}, "unknown result field"), ({"method": None}, "method"),
])
def test_rows_are_checked_against_the_schema(bad, needle):
    with pytest.raises(ValueError, match=needle):
        check_row(row(**bad))


def test_a_file_that_is_not_a_store_is_refused_and_left_alone(tmp_path):
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database")
    with pytest.raises(StoreError, match="is not a results store"):
        open_store(text)
    assert text.read_text() == "not a database"
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not a results store"):
        open_store(other)


def test_schema_version_is_stored(store_path):
    SQLiteStore(store_path)
    with sqlite3.connect(store_path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


def test_cli_lists_and_exports_csv_and_parquet(store_path, tmp_path, capsys):
    SQLiteStore(store_path).record(row(), [])
    assert results_cli(["list", "--store", str(store_path)]) == 0
    assert "lora" in capsys.readouterr().out
    for ext in ("csv", "parquet"):
        out = tmp_path / f"runs.{ext}"
        assert results_cli(["export", "--store", str(store_path), "--out", str(out)]) == 0
        df = pd.read_csv(out) if ext == "csv" else pd.read_parquet(out)
        assert df.loc[0, "run_id"] == "r1" and df.loc[0, "accuracy"] == 0.75


def test_cli_on_a_missing_store_says_so_in_one_line(tmp_path, capsys):
    assert results_cli(["list", "--store", str(tmp_path / "none.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no results store" in err and "\n" not in err


def test_a_store_from_an_older_schema_gains_the_new_columns(store_path):
    with sqlite3.connect(store_path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT NOT NULL, method TEXT)")
        conn.execute("INSERT INTO runs VALUES ('old', 'finished', 'lora')")
    store = SQLiteStore(store_path)
    store.record(row("new", n_truncated_test=3), [])
    df = load(store_path, decode=False).set_index("run_id")
    assert df.loc["new", "n_truncated_test"] == 3 and df.loc["old", "method"] == "lora"
    with sqlite3.connect(store_path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


def test_a_path_and_a_sqlite_url_open_the_same_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    open_store("sub/results.sqlite").record(row("by-path"), [])
    open_store("sqlite:///sub/results.sqlite").record(row("by-relative-url", config_hash="b"), [])
    open_store(f"sqlite:///{tmp_path / 'sub' / 'results.sqlite'}").record(row("by-abs-url", config_hash="c"), [])
    for url in ("sub/results.sqlite", "sqlite:///sub/results.sqlite", tmp_path / "sub" / "results.sqlite"):
        assert set(load(url)["run_id"]) == {"by-path", "by-relative-url", "by-abs-url"}
    assert sorted(os.listdir(tmp_path)) == ["sub"]  # one file, nothing else made


@pytest.mark.parametrize("url", ["mysql://user:secret@db.example/results", "s3://bucket/results"])
def test_an_unknown_scheme_fails_in_one_line_naming_the_known_ones(url, tmp_path):
    for call in (open_store, check_store, load):
        with pytest.raises(StoreError) as err:
            call(url)
        message = str(err.value)
        assert "\n" not in message and "scheme" in message
        assert f"'{url.split(':')[0]}'" in message and "known: postgres, postgresql, sqlite" in message
        assert "secret" not in message  # a URL may hold credentials; only its scheme is repeated


def test_a_sqlite_url_without_a_path_is_refused():
    with pytest.raises(StoreError, match="sqlite:///path"):
        check_store("sqlite://host/results.sqlite")


class MemoryStore:
    """A backend for the test scheme ``mem://name``: rows kept in a dict per name."""

    stores: dict = {}
    checked: list = []

    def __init__(self, url: str, create: bool = True) -> None:
        if url not in self.stores and not create:
            raise StoreError(f"no results store at {url}")
        self.rows = self.stores.setdefault(url, [])

    @classmethod
    def check(cls, url: str) -> None:
        cls.checked.append(url)

    def record(self, row: dict, curves: list[dict]) -> None:
        check_row(row)
        self.rows.append(row)

    def runs(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def curves(self) -> pd.DataFrame:
        return pd.DataFrame(columns=["run_id", "epoch", "variant", "split", "metric", "value"])

    def finished_hashes(self) -> set[str]:
        return {r["config_hash"] for r in self.rows if r["status"] == "finished"}


@pytest.fixture
def memory_backend():
    STORE_BACKENDS.register("mem")(MemoryStore)
    yield MemoryStore
    STORE_BACKENDS._items.pop("mem")
    STORE_BACKENDS._info.pop("mem")
    MemoryStore.stores.clear()
    MemoryStore.checked.clear()


def test_open_store_dispatches_on_the_scheme_to_a_registered_backend(memory_backend, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert store_scheme("MEM://a") == "mem" and store_scheme("a/b.sqlite") == "sqlite"
    check_store("mem://a")
    assert memory_backend.checked == ["mem://a"]
    with pytest.raises(StoreError, match="no results store at mem://a"):
        load("mem://a")
    store = open_store("mem://a")
    assert isinstance(store, MemoryStore)
    store.record(row(), [])
    assert load("mem://a", decode=False).loc[0, "run_id"] == "r1"
    assert open_store("mem://a").finished_hashes() == {"abc"}
    assert results_cli(["list", "--store", "mem://a"]) == 0
    assert os.listdir(tmp_path) == []  # no file was made for it
    with pytest.raises(StoreError, match="known: mem, postgres, postgresql, sqlite"):
        open_store("nope://a")


def test_load_on_a_missing_store_fails_in_one_line_and_creates_nothing(tmp_path):
    for url in (tmp_path / "none.sqlite", f"sqlite:///{tmp_path}/none.sqlite", tmp_path / "no" / "dir.sqlite"):
        for read in (load, load_curves):
            with pytest.raises(StoreError) as err:
                read(url)
            assert str(err.value).startswith("no results store at ") and "\n" not in str(err.value)
    with pytest.raises(StoreError, match="no results store"):
        open_store(tmp_path / "none.sqlite", create=False)
    assert os.listdir(tmp_path) == []


def test_check_store_creates_nothing_and_refuses_what_cannot_be_a_store(tmp_path):
    check_store(tmp_path / "new" / "deeper" / "results.sqlite")
    check_store(f"sqlite:///{tmp_path}/results.sqlite")
    assert os.listdir(tmp_path) == []
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database")
    with pytest.raises(StoreError, match="is not a results store"):
        check_store(text)
    with pytest.raises(StoreError, match="is a directory"):
        check_store(tmp_path)
    with pytest.raises(StoreError, match="not a folder"):
        check_store(text / "results.sqlite")
    assert text.read_text() == "not a database"
    open_store(tmp_path / "ok.sqlite")
    check_store(tmp_path / "ok.sqlite")


@pytest.mark.parametrize("denied", ["file", "folder"])
def test_check_store_refuses_a_location_it_cannot_write(tmp_path, monkeypatch, denied):
    import harness.results.backends.sqlite as backend

    locked = tmp_path / "locked"
    open_store(locked / "results.sqlite")
    blocked = {"file": locked / "results.sqlite", "folder": locked}[denied]
    real_access = os.access
    # os.access, not chmod: the tests may run as root, who may write anywhere
    monkeypatch.setattr(backend.os, "access", lambda p, mode: p != blocked and real_access(p, mode))
    urls = [locked / "results.sqlite"] + ([locked / "sub" / "new.sqlite"] if denied == "folder" else [])
    for url in urls:
        with pytest.raises(StoreError, match=r"permission denied") as err:
            check_store(url)
        assert str(blocked) in str(err.value) and "\n" not in str(err.value)
    check_store(tmp_path / "elsewhere.sqlite")


def test_reading_an_older_store_changes_nothing_and_shows_every_column(store_path):
    with sqlite3.connect(store_path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT NOT NULL, method TEXT, "
                     "created_at TEXT, config_hash TEXT)")
        conn.execute("CREATE TABLE curves (run_id TEXT, epoch INTEGER, variant TEXT, split TEXT, "
                     "metric TEXT, value REAL)")
        conn.execute("INSERT INTO runs VALUES ('old', 'finished', 'lora', '2025', 'h')")

    def schema():
        with sqlite3.connect(store_path) as conn:
            return (conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall(),
                    conn.execute("SELECT * FROM meta").fetchall())

    before = schema()
    df = load(store_path, decode=False)
    load_curves(store_path), check_store(store_path), open_store(store_path, create=False)
    assert schema() == before
    assert df.loc[0, "method"] == "lora" and df.loc[0, "n_truncated_test"] is None
