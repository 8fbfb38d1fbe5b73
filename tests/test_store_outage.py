"""A store that goes away mid-sweep: the real PostgreSQL server the suite starts, stopped while a
sweep of tiny runs (the real CLI, in a process of its own) trains and started again; an SQLite
store file deleted while its run trains. Nothing trained is lost or recorded twice, no claim is
left behind, and the command says what happened, in lines and not in tracebacks."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.results import load
from harness.results.__main__ import main as results_cli
from harness.results.retry import RETRY_ENV
from harness.results.store import open_store
from tests.conftest import TINY
from tests.pausing_methods import HOLD_ENV

ROOT = Path(__file__).resolve().parents[1]
FAST = ["trainer.max_steps=2", "trainer.epochs=1", "trainer.latency_batches=1", "report.enabled=false",
        "method.builder=held_test", "plugins=[tests.pausing_methods]"]
SEEDS = [0, 1, 2, 3]
OUTAGE_S = 6.0


def harness(tmp_path: Path, hold: int, *overrides: str, env: dict | None = None) -> subprocess.Popen:
    """``python -m harness`` in a process of its own, its n-th run held (tests/pausing_methods.py)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
           HOLD_ENV: f"{tmp_path}:{hold}", **(env or {})}
    log = (tmp_path / "log").open("w")
    return subprocess.Popen([sys.executable, "-m", "harness", *overrides, *TINY, *FAST], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until_held(tmp_path: Path, proc: subprocess.Popen) -> None:
    deadline = time.time() + 300
    while not (tmp_path / "held").exists():
        assert proc.poll() is None and time.time() < deadline, (tmp_path / "log").read_text()[-3000:]
        time.sleep(0.05)


def stop(server) -> None:
    server._run("pg_ctl", "-D", str(server.data), "-m", "fast", "-w", "stop")


def start(server) -> None:
    server._run("pg_ctl", "-D", str(server.data), "-w", "-t", "60", "-l", str(server.root / "server.log"),
                "-o", f"-k {server.root} -p {server.port} -c listen_addresses='' -c fsync=off", "start")


def check_every_configuration_once(url: str) -> None:
    runs = load(url, decode=False)
    assert sorted(runs["seed"]) == SEEDS and runs["config_hash"].is_unique and runs["run_id"].is_unique
    assert set(runs["status"]) == {"finished"}
    assert open_store(url, create=False).claims().empty


def test_a_sweep_waits_for_its_database_to_restart_and_loses_nothing(postgres_server, tmp_path):
    url = postgres_server.database()
    sweep = tmp_path / "sweep"
    began = time.time()
    proc = harness(tmp_path, 2, "-m", f"store.url='{url}'", f"seed={','.join(map(str, SEEDS))}",
                   f"hydra.sweep.dir={sweep}", env={RETRY_ENV: "60"})
    try:
        wait_until_held(tmp_path, proc)  # the second run trains; the first is recorded
        down = time.time()
        stop(postgres_server)
        (tmp_path / "go").touch()  # it finishes while the server is down
        time.sleep(OUTAGE_S)
        start(postgres_server)
        outage = time.time() - down
        code = proc.wait(timeout=300)
    finally:
        proc.kill()
        start_if_stopped(postgres_server)
    log = (tmp_path / "log").read_text()
    print(f"sweep {time.time() - began:.0f} s, server down {outage:.1f} s")
    assert code == 0, log[-3000:]
    check_every_configuration_once(url)
    assert "Traceback" not in log
    assert "[harness] the results store is unreachable" in log and "4 finished, 0 failed" in log
    assert "[harness] 1 run kept as unrecorded.json while the store was unreachable, recorded when it came back" in log
    assert "[harness] the results store was unreachable 1 time during this command" in log
    assert len(list(sweep.rglob("unrecorded.imported.json"))) == 1 and not list(sweep.rglob("unrecorded.json"))


def start_if_stopped(server) -> None:
    if not (server.data / "postmaster.pid").exists():
        start(server)


def test_a_store_down_past_the_patience_keeps_the_run_and_exits_1_not_2(postgres_server, tmp_path):
    url = postgres_server.database()
    sweep = tmp_path / "sweep"
    proc = harness(tmp_path, 4, "-m", f"store.url='{url}'", f"seed={','.join(map(str, SEEDS))}",
                   f"hydra.sweep.dir={sweep}", env={RETRY_ENV: "1"})
    try:
        wait_until_held(tmp_path, proc)  # the last run trains; three are recorded
        stop(postgres_server)
        (tmp_path / "go").touch()
        code = proc.wait(timeout=300)  # the sweep ends while the server is still down
    finally:
        proc.kill()
        start_if_stopped(postgres_server)
    log = (tmp_path / "log").read_text()
    assert code == 1, log[-3000:]
    assert "Traceback" not in log and not [x for x in log.splitlines() if x.startswith("error:")]
    (line,) = [x for x in log.splitlines() if x.startswith("[harness] 1 run kept in its folder")]
    assert line.startswith("[harness] 1 run kept in its folder as unrecorded.json: the store was unreachable; ")
    command = line.split("`")[1]  # as printed: the URL's '&' and '?' quoted for a shell
    assert command == shlex.join(["python", "-m", "harness.results", "import", str(sweep), "--store", url])
    assert "'" in command  # the test server's URL holds '?' and '&'; bash would run it in the background
    (kept,) = sweep.rglob("unrecorded.json")
    assert len(load(url, decode=False)) == 3 and len(open_store(url, create=False).claims()) == 1
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # the server is back
    pasted = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PATH": path, "PYTHONPATH": str(ROOT)})
    assert pasted.returncode == 0, pasted.stderr
    check_every_configuration_once(url)


def test_a_run_whose_sqlite_store_disappears_keeps_its_result_in_one_line(tmp_path):
    store = tmp_path / "store" / "results.sqlite"
    proc = harness(tmp_path, 1, f"store.url={store}", f"hydra.run.dir={tmp_path / 'run'}")
    try:
        wait_until_held(tmp_path, proc)
        for path in store.parent.iterdir():  # the file and its journal
            path.unlink()
        (tmp_path / "go").touch()
        code = proc.wait(timeout=300)
    finally:
        proc.kill()
    log = (tmp_path / "log").read_text()
    assert code == 1 and "Traceback" not in log, log[-3000:]
    (line,) = [x for x in log.splitlines() if "could not record run" in x]
    assert f"the results store {store} is gone" in line and "unrecorded.json" in line
    (kept,) = (tmp_path / "run").rglob("unrecorded.json")
    assert not store.exists()  # not made again, empty, behind the run's back
    assert results_cli(["import", str(tmp_path / "run"), "--store", str(store)]) == 0
    assert load(store, decode=False)["status"].tolist() == ["finished"]


@pytest.mark.parametrize("value", ["soon", "-1"])
def test_a_bad_retry_setting_is_bad_input(tmp_path, monkeypatch, capsys, value):
    from harness import __main__ as cli

    monkeypatch.setenv(RETRY_ENV, value)
    monkeypatch.setattr(sys, "argv", ["harness", *TINY, f"store.url={tmp_path / 's.sqlite'}"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == (f"error: {RETRY_ENV} must be a number of seconds "
                                               f"(0 or more), got {value!r}")


def test_only_an_outage_is_waited_for(postgres_server, monkeypatch):
    import psycopg

    from harness.results.retry import PatientStore
    from harness.results.store import StoreError, StoreUnreachable
    from tests.test_store import row

    from harness.results import retry

    monkeypatch.setattr(retry, "OUTAGE", retry.Outage())  # this process's outages: this test's only
    monkeypatch.setenv(RETRY_ENV, "60")
    database = postgres_server.database().split("/")[3].split("?")[0]
    began = time.time()
    with pytest.raises(StoreError) as refused:  # the server answers, and says no: at once
        PatientStore(postgres_server.url(database, user="nobody_here"))
    assert not isinstance(refused.value, StoreUnreachable) and 'role "nobody_here" does not exist' in str(refused.value)
    open_store(postgres_server.url(database)).record(row(), [])
    postgres_server.sql("DROP ROLE IF EXISTS looker")
    postgres_server.sql("CREATE ROLE looker LOGIN")
    postgres_server.sql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO looker", database)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # a missing right: at once
        PatientStore(postgres_server.url(database, user="looker")).claim("h", "r", "me", 60)
    assert time.time() - began < 20
    monkeypatch.setenv(RETRY_ENV, "1")
    nowhere = postgres_server.url(database).replace(f"port={postgres_server.port}", "port=1")
    began = time.time()
    store = PatientStore(nowhere)  # unreachable: waited for, then each operation tries once
    with pytest.raises(StoreUnreachable, match="unreachable for"):
        store.claim("h", "r", "me", 60)
    assert 1 <= time.time() - began < 10
