"""Rows that cannot lie: a folder per run, one claim per configuration, a store that reading never
changes and that adopts nothing foreign, results kept when the store fails, runs stopped when they
hang or their sweep dies, non-finite results failed. Each case is provoked, then the store checked."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tests.failing_methods  # noqa: F401  (registers the failing methods)
from harness.job import runner
from harness.results.identity import config_hash
from harness.results import StoreError, load, open_store
from harness.results.__main__ import main as results_cli
from harness.results.backends import sqlite as sqlite_backend
from harness.results.backends.sqlite import APPLICATION_ID, SQLiteStore
from harness.job.runner import run_job
from tests.conftest import TINY, tiny_config

ROOT = Path(__file__).resolve().parent.parent
FAST = ["trainer.max_steps=2", "trainer.epochs=1", "trainer.latency_batches=1"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}


# --- identity ----------------------------------------------------------------------------------

def test_runs_started_together_get_folders_of_their_own_and_train_their_own_config(store_path, tmp_path):
    shared = tmp_path / "same-second"  # what two runs started in one second used to share
    rows = [run_job(tiny_config(store_path, *FAST, "trainer.isolate=true", f"seed={seed}"), shared)
            for seed in (0, 1)]
    assert rows[0]["run_dir"] != rows[1]["run_dir"]
    for row in rows:
        folder = Path(row["run_dir"])
        assert folder.parent == shared and folder.name == row["run_id"]
        job = json.loads((folder / "job.json").read_text())
        assert job["row"]["run_id"] == row["run_id"] and config_hash(job["config"]) == row["config_hash"]
        assert job["config"]["seed"] == row["seed"]
    stored = load(store_path, decode=False).set_index("run_id")
    assert {r["run_id"]: r["seed"] for r in rows} == stored["seed"].to_dict()


def test_the_worker_refuses_a_job_file_written_for_another_run(store_path, tmp_path):
    row = run_job(tiny_config(store_path, *FAST, "trainer.isolate=true"), tmp_path)
    folder = Path(row["run_dir"])
    job = json.loads((folder / "job.json").read_text())
    job["config"]["seed"] = 7  # another run's config under this run's identity
    (folder / "job.json").write_text(json.dumps(job))
    out = folder / "again.json"
    proc = subprocess.run([sys.executable, "-m", "harness.job.worker", str(folder / "job.json"), str(out)],
                          env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "does not match the run it was written for" in json.loads(out.read_text())["error"]


def test_the_hash_follows_the_data_and_not_the_settings_that_change_no_number(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("text,label\na,0\nb,1\n")
    base = {"seed": 0, "task": {"loader": "csv", "data_path": str(data), "cache_tokens": True},
            "model": {"source": "x/y", "tiny": None}, "trainer": {"device": "auto", "isolate": True,
                                                                "num_threads": None}}
    h = config_hash(base)
    same = json.loads(json.dumps(base))
    same["task"]["cache_tokens"], same["trainer"]["isolate"], same["trainer"]["num_threads"] = False, False, 4
    assert config_hash(same) == h
    data.write_text("text,label\na,1\nb,0\n")  # same path, other content
    assert config_hash(base) != h
    cpu = json.loads(json.dumps(base))
    cpu["trainer"]["device"] = "cpu"
    gpu = json.loads(json.dumps(base))
    gpu["trainer"]["device"] = "cuda"
    assert config_hash(cpu) != config_hash(gpu)


# --- claims ------------------------------------------------------------------------------------

def test_a_configuration_is_claimed_once_and_a_dead_or_expired_claim_is_taken_over(store_path):
    store = SQLiteStore(store_path)
    assert store.claim("h", "run-a", "a", lease_s=60) == ("claimed", None)
    state, holder = store.claim("h", "run-b", "b", lease_s=60)
    assert state == "busy" and holder["owner"] == "a"
    # an expired lease is taken over
    assert store.claim("h2", "run-a", "a", lease_s=0.05)[0] == "claimed"
    time.sleep(0.1)
    assert store.claim("h2", "run-b", "b", lease_s=60)[0] == "claimed"
    # a live lease whose owner process on this host is gone is taken over at once
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with sqlite3.connect(store_path) as conn:
        conn.execute("INSERT INTO claims VALUES ('h3', 'run-x', 'x', ?, ?, 0, ?)",
                     (socket.gethostname(), dead.pid, time.time() + 600))
    assert store.claim("h3", "run-b", "b", lease_s=60)[0] == "claimed"
    assert store.renew("h3", "run-b", 60) and not store.renew("h3", "run-x", 60)


def test_a_configuration_held_by_another_run_is_skipped_not_trained_twice(store_path, tmp_path):
    cfg = tiny_config(store_path, *FAST)
    h = run_job(cfg, tmp_path) and None  # the first run records it
    rows = load(store_path, decode=False)
    assert len(rows) == 1
    # another sweep holds the same configuration (force: it would train again)
    forced = tiny_config(store_path, *FAST, "force=true")
    h = rows["config_hash"].iloc[0]
    SQLiteStore(store_path).claim(h, "someone-else", "other-sweep", lease_s=600, force=True)
    row = run_job(forced, tmp_path)
    assert row["status"] == "skipped" and "other-sweep" in row["skip_reason"]
    assert len(load(store_path, decode=False)) == 1


def test_two_identical_commands_at_once_record_one_run(tmp_path):
    store = tmp_path / "results.sqlite"
    cmd = [sys.executable, "-m", "harness", *TINY, *FAST, "trainer.isolate=true", f"store.url={store}"]
    procs = [subprocess.Popen([*cmd, f"hydra.run.dir={tmp_path / name}"], cwd=ROOT, env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name in ("a", "b")]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    runs = load(store, decode=False)
    assert len(runs) == 1 and runs["status"].iloc[0] == "finished", logs
    assert sum("[harness] skipped" in log for log in logs) == 1, logs
    assert SQLiteStore(store).claims().empty  # the claim went with the recorded run


# --- reading, foreign files, odd paths ----------------------------------------------------------

def test_reading_never_writes_and_an_old_store_is_migrated_only_by_a_write(store_path, tmp_path, capsys):
    with sqlite3.connect(store_path) as conn:  # a store from an older schema, one run in it
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT NOT NULL, method TEXT, "
                     "created_at TEXT)")
        conn.execute("INSERT INTO runs VALUES ('old', 'finished', 'lora', '2026-01-01')")
        conn.execute("CREATE TABLE curves (run_id TEXT, epoch INTEGER, variant TEXT, split TEXT, "
                     "metric TEXT, value REAL)")
    before = digest(store_path)
    assert list(load(store_path)["run_id"]) == ["old"]
    assert results_cli(["list", "--store", str(store_path)]) == 0
    assert results_cli(["export", "--store", str(store_path), "--out", str(tmp_path / "x.csv")]) == 0
    assert open_store(store_path, create=False).predictions() == {}
    assert digest(store_path) == before
    assert sorted(p.name for p in store_path.parent.iterdir() if p.name.startswith(store_path.name)) \
        == [store_path.name]  # no journal files were made either
    with pytest.raises(StoreError, match="opened for reading only"):
        open_store(store_path, create=False).record(_row("new"), [])
    open_store(store_path)  # a command that writes migrates it
    with sqlite3.connect(store_path) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("SELECT value FROM meta").fetchone()[0] != "1"


def test_a_store_on_read_only_media_is_read_as_immutable(store_path, monkeypatch):
    SQLiteStore(store_path).record(_row("r1"), [])
    real_connect = sqlite3.connect
    seen = []

    def connect(database, *args, **kwargs):  # what read-only media does to mode=ro on a WAL file
        seen.append(database)
        if "mode=ro" in str(database) and "immutable=1" not in str(database):
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(sqlite_backend.sqlite3, "connect", connect)
    monkeypatch.setattr(sqlite_backend.os, "access", lambda *a, **k: False)
    assert list(load(store_path)["run_id"]) == ["r1"]
    assert any("immutable=1" in str(u) for u in seen)


def test_a_path_with_hash_and_question_marks_opens_the_file_it_names(tmp_path):
    path = tmp_path / "odd#name?x=1.sqlite"
    open_store(path).record(_row("r1"), [])
    assert list(load(path)["run_id"]) == ["r1"]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))) \
        == ["odd#name?x=1.sqlite"]


def test_a_foreign_sqlite_file_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:  # someone else's database with a meta table
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    before = digest(path)
    for create in (True, False):
        with pytest.raises(StoreError, match="not a results store of this harness"):
            open_store(path, create=create)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA application_id = 12345")
    other = digest(path)
    with pytest.raises(StoreError, match="not a results store of this harness"):
        open_store(path)
    assert digest(path) == other != before


# --- a store that fails, runs that hang, sweeps that die ----------------------------------------

def test_a_failed_store_write_keeps_the_run_and_the_results_cli_imports_it(store_path, tmp_path, monkeypatch):
    def full(self, row, curves, predictions=None):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(SQLiteStore, "record", full)
    row = run_job(tiny_config(store_path, *FAST), tmp_path)
    assert row["status"] == "finished" and Path(row["unrecorded"]).is_file()
    monkeypatch.undo()
    assert load(store_path, decode=False).empty and SQLiteStore(store_path).claims().empty
    assert results_cli(["import", str(tmp_path), "--store", str(store_path)]) == 0
    runs = load(store_path, decode=False)
    assert list(runs["run_id"]) == [row["run_id"]] and runs["accuracy"].iloc[0] == row["accuracy"]
    kept = SQLiteStore(store_path).predictions()[row["run_id"]]
    assert len(kept["labels"]) == len(kept["predictions"]) == row["n_test"]
    assert results_cli(["import", str(tmp_path), "--store", str(store_path)]) == 0  # nothing twice
    assert len(load(store_path, decode=False)) == 1


def test_a_hung_worker_is_stopped_at_the_time_limit_and_recorded_as_failed(store_path, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "WORKER_COMMAND", [sys.executable, "-c", "import time; time.sleep(600)"])
    start = time.time()
    row = run_job(tiny_config(store_path, *FAST, "trainer.isolate=true", "trainer.timeout_s=2"), tmp_path)
    assert time.time() - start < 60
    assert row["status"] == "failed" and "trainer.timeout_s=2" in row["error"]
    assert load(store_path, decode=False)["status"].tolist() == ["failed"]


def test_non_finite_weights_after_the_last_step_fail_the_run(store_path, tmp_path):
    """Every training loss is finite; the evaluation of the poisoned weights is not."""
    row = run_job(tiny_config(store_path, *FAST, "method.name=nan_last_test", "method.builder=nan_last_test"),
                  tmp_path)
    assert row["status"] == "failed" and "validation loss became nan" in row["error"]
    assert load(store_path, decode=False)["status"].tolist() == ["failed"]


def _alive(pid: int) -> bool:
    try:
        return "\tZ" not in Path(f"/proc/{pid}/status").read_text().split("State:")[1][:4]
    except (OSError, IndexError):
        return False


def _workers_of(folder: Path) -> list[int]:
    """Live worker processes of the runs under ``folder``: forked ones (their worker.pid) and
    started ones (their command line)."""
    out = subprocess.run(["pgrep", "-f", f"harness.job.worker {folder}"], capture_output=True, text=True)
    forked = [int(f.read_text()) for f in folder.rglob("worker.pid") if f.read_text().strip()]
    return [p for p in [int(p) for p in out.stdout.split()] + forked if _alive(p)]


def test_a_killed_joblib_sweep_leaves_no_training_behind(tmp_path):
    store = tmp_path / "results.sqlite"
    cmd = [sys.executable, "-m", "harness", "-m", *TINY, "trainer.max_steps=40", "trainer.epochs=1",
           "trainer.isolate=true", f"store.url={store}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
           "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1,2,3,4,5"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not _workers_of(tmp_path / "sweep"):
        time.sleep(0.2)
    assert _workers_of(tmp_path / "sweep"), "no run started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(6)  # the launcher's processes notice within a second or two
    assert _workers_of(tmp_path / "sweep") == []
    rows = len(load(store, decode=False)) if store.exists() else 0
    time.sleep(5)
    assert (len(load(store, decode=False)) if store.exists() else 0) == rows  # nothing trains on


def _row(run_id: str, **extra) -> dict:
    from harness.results import SCHEMA_VERSION

    row = {"run_id": run_id, "created_at": "2026-01-01T00:00:00", "status": "finished", "method": "lora",
           "model": "m", "task": "t", "quant": "none", "seed": 0, "config_hash": run_id,
           "config_json": "{}", "schema_version": SCHEMA_VERSION}
    row.update(extra)
    return row
