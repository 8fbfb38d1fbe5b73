"""The PostgreSQL store against a real server started by the tests (tests/postgres_server.py):
the SQLite store's protocol, concurrent writers in several processes, a writer killed mid-record,
claims taken over from a dead owner, migration, read-only reads, refusal of foreign tables."""
from __future__ import annotations

import multiprocessing
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest

from harness.results import StoreError, load, load_curves
from harness.results.__main__ import main as results_cli
from harness.results.store import check_store, open_store
from tests.test_store import row

CURVE = [{"epoch": 1, "split": "validation", "metric": "accuracy", "value": 0.5}]


def test_record_and_read_back_through_the_same_interface(pg_url):
    store = open_store(pg_url)
    preds = {"test": {"labels": np.array([0, 1, 1]), "predictions": np.array([0, 1, 0])}}
    store.record(row(accuracy=0.75, peak_memory_bytes=2**40, git_dirty=True), CURVE, preds)
    df = load(pg_url)
    assert len(df) == 1 and df.loc[0, "accuracy"] == 0.75 and df.loc[0, "config"] == {}
    assert int(df.loc[0, "peak_memory_bytes"]) == 2**40 and df.loc[0, "git_dirty"] == 1  # as SQLite gives
    assert load_curves(pg_url).to_dict("records") == [{"run_id": "r1", "epoch": 1, "variant": "",
                                                        "split": "validation", "metric": "accuracy",
                                                        "value": 0.5}]
    kept = open_store(pg_url, create=False).predictions()
    assert kept["r1"]["predictions"].tolist() == [0, 1, 0]
    assert store.finished_hashes() == {"abc"} and store.claims().empty


def test_a_run_is_recorded_whole_or_not_at_all(pg_url):
    store = open_store(pg_url)
    with pytest.raises(KeyError):
        store.record(row(), CURVE + [{"epoch": 2, "split": "validation"}])
    assert load(pg_url).empty and load_curves(pg_url).empty


def test_reading_creates_nothing_and_a_missing_store_is_one_line(pg_url, postgres_server):
    with pytest.raises(StoreError, match="no results store at postgresql://"):
        load(pg_url)
    check_store(pg_url)  # can become a store: checked, not created
    assert postgres_server.sql("SELECT count(*) FROM pg_tables WHERE schemaname='public'",
                               pg_url.split("/")[3].split("?")[0])[0][0] == 0
    open_store(pg_url)  # a command that trains creates the tables
    with pytest.raises(StoreError, match="opened for reading only"):
        open_store(pg_url, create=False).record(row(), [])


def test_another_programs_tables_are_refused_and_left_alone(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE runs (x int)")
        conn.execute("INSERT INTO runs VALUES (7)")
    for attempt in (lambda: open_store(pg_url), lambda: check_store(pg_url), lambda: load(pg_url)):
        with pytest.raises(StoreError, match="not a results store of this harness"):
            attempt()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT * FROM runs").fetchall() == [(7,)]


def test_a_schema_of_its_own_beside_another_programs_tables(pg_url):
    """The docs' ``?options=-csearch_path%3Dname``: a schema that does not exist yet is named (not
    "may not create its tables"); once created, the store lives there and the other program's
    ``runs`` table in ``public`` stays as it was."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE runs (run_uuid varchar(32) PRIMARY KEY, status varchar(9))")
        conn.execute("INSERT INTO runs VALUES ('abc', 'FINISHED')")
    url = f"{pg_url}&options=-csearch_path%3Dpeft"
    for attempt in (lambda: open_store(url), lambda: check_store(url), lambda: load(url)):
        with pytest.raises(StoreError, match=r"no schema on its search_path \(peft\) exists in database "
                                             r"store_\d+; create it first \(CREATE SCHEMA name;\)"):
            attempt()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA peft")
    check_store(url)
    open_store(url).record(row(), CURVE)
    assert load(url)["run_id"].tolist() == ["r1"]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT * FROM public.runs").fetchall() == [("abc", "FINISHED")]
        assert conn.execute("SELECT count(*) FROM peft.runs").fetchone()[0] == 1


def test_an_unreachable_server_is_one_line_without_the_password():
    with pytest.raises(StoreError) as err:
        open_store("postgresql://me:s3cret@127.0.0.1:1/results?connect_timeout=5")
    message = str(err.value)
    assert "cannot connect to the results store postgresql://me:***@127.0.0.1:1/results" in message
    assert "s3cret" not in message and "\n" not in message


def test_a_user_granted_reads_and_inserts_writes_to_an_existing_store(pg_url, postgres_server):
    open_store(pg_url).record(row(), CURVE)
    database = pg_url.split("/")[3].split("?")[0]
    postgres_server.sql("DROP ROLE IF EXISTS writer")
    postgres_server.sql("CREATE ROLE writer LOGIN")
    postgres_server.sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC", database)
    postgres_server.sql("GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO writer", database)
    postgres_server.sql("GRANT UPDATE, DELETE ON claims TO writer", database)
    writer = postgres_server.url(database, user="writer")
    check_store(writer)
    store = open_store(writer)  # no DDL for a store that is up to date
    assert store.claim("new", "w1", "writer", 60) == ("claimed", None)
    store.record(row("w1", config_hash="new"), CURVE)
    assert len(load(pg_url)) == 2
    postgres_server.sql("REVOKE DELETE ON claims FROM writer", database)
    with pytest.raises(StoreError, match=r"this user may not write it \(DELETE on claims\)"):
        check_store(writer)


def test_a_user_who_may_not_write_is_refused_by_the_check(pg_url, postgres_server):
    open_store(pg_url).record(row(), CURVE)
    postgres_server.sql("DROP ROLE IF EXISTS reader")
    postgres_server.sql("CREATE ROLE reader LOGIN")
    database = pg_url.split("/")[3].split("?")[0]
    postgres_server.sql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader", database)
    reader = postgres_server.url(database, user="reader")
    assert len(load(reader)) == 1  # reading is allowed
    with pytest.raises(StoreError, match="this user may not write it"):
        check_store(reader)


def test_an_older_store_gains_the_new_columns_on_the_first_write_only(pg_url):
    import psycopg

    open_store(pg_url).record(row("old"), CURVE)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE runs DROP COLUMN perplexity")
        conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    df = load(pg_url)  # read-only: nothing added, the column reads back empty
    assert df.loc[0, "perplexity"] is None
    with psycopg.connect(pg_url) as conn:
        assert "perplexity" not in {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name='runs'")}
    open_store(pg_url).record(row("new", config_hash="def", perplexity=1.5), CURVE)
    df = load(pg_url).set_index("run_id")
    assert df.loc["new", "perplexity"] == 1.5 and pd.isna(df.loc["old", "perplexity"])
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] != "1"


def test_a_field_declared_after_the_store_opened_gets_its_column_when_a_run_brings_it(pg_url):
    """A store object remembers the columns it made, so a run's record asks the server for the
    table's columns only when the run brings a field declared since (a plug-in's)."""
    from harness import fields

    store = open_store(pg_url)
    store.record(row("before"), CURVE)
    fields.declare(name="test_late_field", type="real")
    try:
        store.record(row("after", config_hash="late", test_late_field=1.5), CURVE)
        assert load(pg_url).set_index("run_id").loc["after", "test_late_field"] == 1.5
    finally:
        fields.remove("test_late_field")


def test_a_newer_schema_is_refused(pg_url):
    import psycopg

    open_store(pg_url).record(row(), CURVE)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="schema version 99, newer than"):
        load(pg_url)


def _writer(url: str, worker: int, n: int, barrier, out: str) -> None:
    store = open_store(url)
    barrier.wait()
    for i in range(n):
        store.record(row(f"w{worker}-{i}", config_hash=f"h{worker}-{i}"), CURVE)
        status, _ = store.claim("shared", f"w{worker}-{i}", f"worker {worker}", lease_s=600)
        if status == "claimed":
            with open(f"{out}/claimed-{worker}-{i}", "w"):
                pass
    barrier.wait()  # every worker alive until all have tried: a live holder is never taken over


def test_concurrent_writers_in_several_processes_store_every_run_once(pg_url, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_writer, args=(pg_url, w, 10, barrier, str(tmp_path))) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    df = load(pg_url)
    assert len(df) == 40 and df["run_id"].is_unique and len(load_curves(pg_url)) == 40
    claimed = list(tmp_path.glob("claimed-*"))
    assert len(claimed) == 1  # the shared configuration: one claim, its holder alive and leased


def _killed_mid_record(url: str, marker: str) -> None:
    import harness.results.backends.postgres as pg

    store = open_store(url)
    assert store.claim("victim", "dying", "killed writer", lease_s=3600)[0] == "claimed"
    real_pack = pg.pack

    def stall(array):
        with open(marker, "w"):
            pass
        time.sleep(600)  # the run's row is inserted, its transaction open: killed here
        return real_pack(array)

    pg.pack = stall
    store.record(row("dying", config_hash="victim"), CURVE, {"test": {"labels": np.zeros(3)}})


def test_a_writer_killed_mid_record_leaves_nothing_and_its_claim_is_taken_over(pg_url, tmp_path):
    marker = tmp_path / "inside-the-transaction"
    proc = multiprocessing.get_context("spawn").Process(target=_killed_mid_record, args=(pg_url, str(marker)))
    proc.start()
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and proc.is_alive():
        time.sleep(0.05)
    assert marker.exists(), "the writer never reached its transaction"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    store = open_store(pg_url)
    assert load(pg_url).empty and load_curves(pg_url).empty  # rolled back by the server
    holder = store.claims().iloc[0]
    assert holder["run_id"] == "dying" and holder["expires_at"] > time.time()  # lease still running
    # Its owner process is gone (same host): the next run takes the configuration over at once.
    assert store.claim("victim", "next", "next runner", lease_s=600) == ("claimed", None)
    store.record(row("next", config_hash="victim"), CURVE)
    assert load(pg_url)["run_id"].tolist() == ["next"] and store.claims().empty


def test_a_claim_from_another_host_holds_until_its_lease_ends(pg_url):
    import psycopg

    store = open_store(pg_url)
    assert store.claim("cfg", "a", "host a", lease_s=600)[0] == "claimed"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE claims SET host='node-17', pid=1")
    status, holder = store.claim("cfg", "b", "host b", lease_s=600)
    assert status == "busy" and holder["host"] == "node-17"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE claims SET expires_at=%s", (time.time() - 1,))
    assert store.claim("cfg", "b", "host b", lease_s=600) == ("claimed", None)
    assert store.renew("cfg", "b", 600) and not store.renew("cfg", "a", 600)
    store.record(row("b", config_hash="cfg"), CURVE)
    assert store.claim("cfg", "c", "host c", lease_s=600) == ("finished", None)


def test_the_results_cli_reads_a_postgres_store(pg_url, tmp_path, capsys):
    open_store(pg_url).record(row(), CURVE)
    assert results_cli(["list", "--store", pg_url]) == 0
    assert "lora" in capsys.readouterr().out
    out = tmp_path / "runs.csv"
    assert results_cli(["export", "--store", pg_url, "--out", str(out)]) == 0 and out.exists()


def test_copy_moves_runs_between_sqlite_and_postgres_without_duplicates(pg_url, tmp_path, capsys):
    laptop = tmp_path / "laptop.sqlite"
    preds = {"test": {"labels": np.array([1, 0]), "predictions": np.array([1, 1])},
             "validation": {"labels": np.array([0])}}
    local = open_store(laptop)
    local.record(row("a", perplexity=1.25, n_test=2, git_dirty=False), CURVE, preds)
    local.record(row("b", config_hash="other", status="failed", accuracy=None, error="boom"), [])
    assert results_cli(["copy", str(laptop), pg_url]) == 0
    assert "copied 2 run(s)" in capsys.readouterr().out
    assert results_cli(["copy", str(laptop), pg_url]) == 0  # again: nothing twice
    assert "copied 0 run(s)" in capsys.readouterr().out and len(load(pg_url)) == 2
    shared = load(pg_url, decode=False).set_index("run_id")
    assert shared.loc["a", "perplexity"] == 1.25 and int(shared.loc["a", "n_test"]) == 2
    assert shared.loc["b", "error"] == "boom" and pd.isna(shared.loc["b", "accuracy"])
    kept = open_store(pg_url, create=False)
    assert kept.predictions(["a"])["a"]["predictions"].tolist() == [1, 1]
    assert kept.predictions(["a"], split="validation")["a"]["labels"].tolist() == [0]
    assert len(load_curves(pg_url)) == 1
    back = tmp_path / "back.sqlite"  # and back again, finished runs only
    assert results_cli(["copy", pg_url, str(back), "--status", "finished"]) == 0
    theirs, ours = load(back, decode=False), load(laptop, decode=False)
    assert theirs["run_id"].tolist() == ["a"]
    same = [c for c in ours.columns if not (pd.isna(ours.loc[0, c]) and pd.isna(theirs.loc[0, c]))]
    assert {c: theirs.loc[0, c] for c in same} == {c: ours.loc[0, c] for c in same}


def test_a_run_records_into_postgres_and_no_row_keeps_the_password(pg_url, run_tiny):
    url = pg_url.replace("harness@", "harness:topsecret@")  # trust auth: the password is unused
    done = run_tiny(f"store.url='{url}'", "method=lora")
    assert done["status"] == "finished", done.get("error")
    stored = load(pg_url, decode=False)
    assert stored["run_id"].tolist() == [done["run_id"]]
    assert "topsecret" not in stored.loc[0, "config_json"] and "harness:***@" in stored.loc[0, "config_json"]
