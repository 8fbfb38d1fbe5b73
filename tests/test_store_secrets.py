"""A password in a PostgreSQL store URL reaches the server and nothing else: not a file the
harness writes (run folders, job files, Hydra's .hydra folders, the report, wandb's offline
files), not the store's rows, not a message, whatever characters it holds. Against the real
server the suite starts, with a role that logs in by password."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from harness.results import StoreError, load
from harness.results.secrets import connect_args, hide_passwords
from harness.results.store import StoreUnreachable, check_store, open_store, redact
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
ROLE = "secretive"
PASSWORD = "Zq9s3cr%t:@/?x"  # '%' that starts no escape, and libpq's own separators
MARK = b"Zq9s3cr"  # the start of the password, raw or percent-encoded


@pytest.fixture(scope="module")
def secret_url(postgres_server):
    """A URL with the password percent-encoded, for a database this role owns; the server asks
    this role (only) for its password."""
    hba = postgres_server.data / "pg_hba.conf"
    rule = f"local all {ROLE} scram-sha-256\n"
    if rule not in hba.read_text():
        hba.write_text(rule + hba.read_text())
        postgres_server._run("pg_ctl", "-D", str(postgres_server.data), "reload")
    postgres_server.sql(f"DROP ROLE IF EXISTS {ROLE}")
    postgres_server.sql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
    postgres_server.sql(f"CREATE DATABASE secrets OWNER {ROLE}")
    return (f"postgresql://{ROLE}:{quote(PASSWORD, safe='')}@/secrets"
            f"?host={postgres_server.root}&port={postgres_server.port}")


def files_holding(folder: Path, mark: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and mark in p.read_bytes()]


def test_the_password_reaches_the_server_and_nothing_else(secret_url, postgres_server, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "harness", "-m", *TINY, "trainer.max_steps=2", "trainer.epochs=1",
           "trainer.latency_batches=1", "trainer.isolate=true", "seed=0,1", f"store.url='{secret_url}'",
           "tracker=wandb", f"tracker.dir={tmp_path / 'wandb'}", "report.formats=[md,html]", "report.pdf=false",
           f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out.decode()[-3000:]
    assert MARK not in out
    runs = load(secret_url, decode=False)
    assert sorted(runs["seed"]) == [0, 1] and set(runs["status"]) == {"finished"}
    assert list((tmp_path / "wandb").rglob("run-*.wandb")), "wandb wrote nothing offline"
    assert list((tmp_path / "sweep").rglob("job.json")) and list((tmp_path / "sweep").rglob("overrides.yaml"))
    assert list((tmp_path / "sweep" / "report").rglob("*.html"))
    assert files_holding(tmp_path, MARK) == []
    assert f"{ROLE}:***@" in (next((tmp_path / "sweep").rglob("overrides.yaml"))).read_text()
    for table in ("runs", "curves", "claims", "predictions", "meta"):
        rows = postgres_server.sql(f"SELECT row_to_json(t)::text FROM {table} t", "secrets")
        assert not [r for r in rows if MARK.decode() in r[0]], table


@pytest.mark.parametrize("wrong", ["Zq9wr%ng", "Zq9wr%25ng%40", "Zq9p%zz:@x"])
def test_a_wrong_password_with_percent_is_one_line_without_it(secret_url, wrong):
    url = secret_url.replace(quote(PASSWORD, safe=""), wrong)
    for attempt in (lambda: open_store(url), lambda: check_store(url)):
        with pytest.raises(StoreError) as err:
            attempt()
        message = str(err.value)
        assert not isinstance(err.value, StoreUnreachable)  # a refusal, not an outage: never waited for
        assert "password authentication failed" in message and f"{ROLE}:***@" in message
        assert "Zq9" not in message and "\n" not in message


def test_a_wrong_password_on_the_command_line_is_bad_input_in_one_line(secret_url, tmp_path):
    url = secret_url.replace(quote(PASSWORD, safe=""), "Zq9wr%ng")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "harness", *TINY, f"store.url='{url}'"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Zq9wr" not in done.stdout + done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert "password authentication failed" in line and f"{ROLE}:***@" in line


def test_passwords_leave_the_command_line_and_reach_only_the_connection(monkeypatch):
    monkeypatch.delenv("PEFT_HARNESS_STORE_PASSWORDS", raising=False)
    argv = ["-m", "store.url='postgresql://u:p%40ss:w@db:5432/r?sslmode=require'",
            "store.url=postgresql://v@h/a?password=x%25y,postgresql://v@h/b?password=x%25y", "seed=0,1"]
    hidden = hide_passwords(argv)
    assert hidden == ["-m", "store.url='postgresql://u:***@db:5432/r?sslmode=require'",
                      "store.url=postgresql://v@h/a?password=***,postgresql://v@h/b?password=***", "seed=0,1"]
    assert connect_args("postgresql://u:***@db:5432/r?sslmode=require") == \
        ("postgresql://u:***@db:5432/r?sslmode=require", "p@ss:w")
    assert connect_args("postgresql://v@h/b?password=***")[1] == "x%y"
    # Where no password is known (another host), libpq's own (PGPASSWORD, ~/.pgpass) is used.
    assert connect_args("postgresql://w:***@elsewhere/r?password=***&a=1") == ("postgresql://w@elsewhere/r?a=1", None)


@pytest.mark.parametrize("text, shown", [
    ("postgresql://u:s3cr%25t%3A%40%2F%3Fx@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u:s3cr%t:@/?x@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u@h/db?sslmode=require&password=p%40ss&a=1", "postgresql://u@h/db?sslmode=require&password=***&a=1"),
    ("host=h password='a b\\' c' dbname=x", "host=h password=*** dbname=x"),
    ("postgresql://h:5432/db", "postgresql://h:5432/db"),
])
def test_redact_hides_every_form_of_a_password(text, shown):
    assert redact(text) == shown
