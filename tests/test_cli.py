"""The command line: bad input fails fast in one line; sweeps survive kills, failures and company."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import __main__ as cli
from harness.paths import conf_dir
from harness.results import load, load_curves
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
FAST = ["trainer.max_steps=2", "trainer.epochs=1", "trainer.latency_batches=1"]


def known(group: str) -> str:
    return ", ".join(sorted(p.stem for p in (conf_dir() / group).glob("*.yaml")))


def run_main(argv: list[str], monkeypatch) -> int:
    monkeypatch.setattr(sys, "argv", ["harness", *argv])
    with pytest.raises(SystemExit) as info:
        cli.main()
    return info.value.code


@pytest.mark.parametrize("overrides,needle", [
    (["method=lorra"], f"unknown method 'lorra'; known: {known('method')}. Did you mean 'lora'?"),
    (["model=tinybert"], f"unknown model 'tinybert'; known: {known('model')}. Did you mean 'tiny_bert'?"),
    (["task=synthetc"], f"unknown task 'synthetc'; known: {known('task')}. Did you mean 'synthetic'?"),
    (["quant=nf5"], f"unknown quant 'nf5'; known: {known('quant')}. Did you mean 'nf4'?"),
    (["method.r=0"], "method.r must be a positive integer, got 0"),
    (["method.r=-8"], "method.r must be a positive integer, got -8"),
    (["method.r=2.5"], "method.r=2.5: Value '2.5' of type 'float' could not be converted to Integer"),
    (["method.r=eight"], "could not be converted to Integer"),
    (["method=full", "quant=nf4"], "method=full cannot train a 4-bit base"),
    (["method.rank=8"], "Key 'rank' not in 'MethodConfig'"),
    (["task.data_path=/no/such/file.csv"], "task.data_path: no such file: /no/such/file.csv"),
    (["task=scotus_outcome"], "task scotus_outcome needs a data file: set task.data_path=path/to/scotus_justice.csv"),
    (["task=csv"], "task csv needs a data file: set task.data_path=path/to/data.csv"),
    (["-m", "method=lora,dora", "method.r=8,0"], "method.r must be a positive integer, got 0 (grid point: "),
])
def test_bad_input_fails_in_one_line_before_anything_runs(overrides, needle, monkeypatch, capsys, store_path):
    argv = [a for a in overrides if a == "-m"] + [*TINY, f"store.url={store_path}"] + [
        a for a in overrides if a != "-m"]
    assert run_main(argv, monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and err.startswith("error: ")
    assert not store_path.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_an_unreadable_data_file_fails_in_one_line(tmp_path, monkeypatch, capsys, store_path):
    data = tmp_path / "data.csv"
    data.write_text("text,label\na,0\n")
    data.chmod(0)
    assert run_main([*TINY, f"store.url={store_path}", f"task.data_path={data}"], monkeypatch) == 2
    assert "cannot read" in capsys.readouterr().err and not store_path.exists()


@pytest.mark.parametrize("content", [b"method,accuracy\nlora,0.9\n", b""])
def test_a_file_that_is_not_a_store_is_never_overwritten(tmp_path, monkeypatch, capsys, content):
    path = tmp_path / "results.sqlite"
    path.write_bytes(content or b"SQLite format 3\x00" + bytes(84))  # a broken SQLite header
    before = path.read_bytes()
    assert run_main([*TINY, f"store.url={path}"], monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a results store" in err and len(err.splitlines()) == 1
    assert path.read_bytes() == before


def test_an_sqlite_file_of_another_program_is_refused_and_kept(tmp_path, monkeypatch, capsys):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (x)")
    before = path.read_bytes()
    assert run_main([*TINY, f"store.url={path}"], monkeypatch) == 2
    assert "not a results store" in capsys.readouterr().err
    assert path.read_bytes() == before


# --- whole sweeps in real processes ------------------------------------------------------------

def harness_cmd(store: Path, sweep_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "harness", "-m", *TINY, *FAST, f"store.url={store}",
            f"hydra.sweep.dir={sweep_dir}", *overrides]


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def check_store_consistent(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    runs, curves = load(path, decode=False), load_curves(path)
    finished = runs[runs["status"] == "finished"]
    assert set(curves["run_id"]) == set(finished["run_id"])  # failed runs have no curves
    for run_id, epochs in curves[curves["split"] == "validation"].groupby("run_id")["epoch"]:
        assert sorted(set(epochs)) == [1]  # every run's curves complete (one epoch here)


def test_a_sweep_killed_half_way_is_completed_by_the_same_command(tmp_path):
    store = tmp_path / "results.sqlite"
    cmd = harness_cmd(store, tmp_path / "sweep", "seed=0,1,2")
    proc = start(cmd, tmp_path / "first.log")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if store.exists() and len(load(store, decode=False)) >= 1:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    check_store_consistent(store)
    before = load(store, decode=False)
    assert 1 <= len(before) < 3, (tmp_path / "first.log").read_text()[-2000:]

    again = start(cmd, tmp_path / "second.log")
    assert again.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-3000:]
    log = (tmp_path / "second.log").read_text()
    after = load(store, decode=False)
    check_store_consistent(store)
    assert len(after) == 3 and set(after["status"]) == {"finished"}
    assert sorted(after["seed"]) == [0, 1, 2] and after["config_hash"].is_unique
    assert set(before["run_id"]) <= set(after["run_id"])  # the runs done before were kept, not re-run
    assert log.count("[harness] skipped") == len(before)
    assert f"3 finished ({len(before)} of them before this command, skipped), 0 failed" in log


def test_parallel_workers_and_a_second_sweep_share_one_store(tmp_path):
    store = tmp_path / "results.sqlite"
    parallel = start(harness_cmd(store, tmp_path / "a", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                                 "method.target_modules=null,[no_such_layer]"),
                     tmp_path / "a.log")
    other = start(harness_cmd(store, tmp_path / "b", "seed=5"), tmp_path / "b.log")
    assert other.wait(timeout=600) == 0, (tmp_path / "b.log").read_text()[-3000:]
    assert parallel.wait(timeout=600) == 1  # one of its runs fails, so the command does
    log = (tmp_path / "a.log").read_text()
    assert "1 finished, 1 failed" in log and log.count("  FAILED lora") == 1
    runs = load(store, decode=False)
    check_store_consistent(store)
    assert len(runs) == 3 and runs["run_id"].is_unique
    assert sorted(runs.loc[runs["status"] == "finished", "seed"]) == [0, 5]
    failed = runs[runs["status"] == "failed"]
    assert len(failed) == 1 and "No modules were targeted" in failed["error"].iloc[0]
    assert '"target_modules": ["no_such_layer"]' in failed["config_json"].iloc[0]


def test_a_single_run_exits_1_when_it_fails_and_0_when_it_is_already_done(tmp_path, monkeypatch, store_path):
    import tests.failing_methods  # noqa: F401

    base = [*TINY, *FAST, f"store.url={store_path}", f"hydra.run.dir={tmp_path / 'run'}"]
    assert run_main([*base, "method.name=raises_test", "method.builder=raises_test"], monkeypatch) == 1
    monkeypatch.setattr(sys, "argv", ["harness", *base])
    cli.main()  # finishes: no SystemExit
    cli.main()  # already finished: skipped, no SystemExit
    assert list(load(store_path, decode=False)["status"]) == ["failed", "finished"]


def test_a_preset_that_declares_its_own_sweep_is_checked_point_by_point(store_path, tmp_path):
    import pandas as pd

    from harness.sweep.preflight import preflight

    data = tmp_path / "scotus.csv"  # the preflight loads and checks the preset's data file
    pd.DataFrame({"facts": [f"<p>case {i}</p>" for i in range(40)], "first_party": "A",
                  "second_party": "B", "first_party_winner": [bool(i % 3) for i in range(40)]}).to_csv(data)
    plan = preflight(["-m", "+experiment=legal_case", f"store.url={store_path}", f"task.data_path={data}"])
    assert len(plan.jobs) == 15 and plan.swept == {"method", "seed"}  # 3 methods, 2 baselines, 3 seeds
    assert len(set(plan.hashes)) == 15
    narrowed = preflight(["-m", "+experiment=legal_case", "seed=4", f"store.url={store_path}",
                          f"task.data_path={data}"])
    assert len(narrowed.jobs) == 5
