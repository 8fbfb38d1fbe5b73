"""A run that fails is recorded with its error and the next run goes on; finished runs are skipped."""
from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import sys
import time

import pytest

import tests.failing_methods  # noqa: F401  (registers the failing methods)
from harness.job import runner
from harness.results import load, load_curves
from harness.results.store import open_store

pytestmark = pytest.mark.filterwarnings("ignore")
FAST = ["trainer.max_steps=2", "trainer.epochs=1", "trainer.latency_batches=1"]


def test_a_method_that_raises_is_recorded_and_the_next_run_goes_on(run_tiny, store_path):
    bad = run_tiny("method.name=raises_test", "method.builder=raises_test")
    good = run_tiny("method=lora", *FAST)
    assert bad["status"] == "failed" and bad["error"] == "Boom: this method always fails"
    assert good["status"] == "finished"
    runs = load(store_path, decode=False).set_index("run_id")
    assert runs.loc[bad["run_id"], "status"] == "failed"
    assert runs.loc[bad["run_id"], "error"] == bad["error"]
    assert runs.loc[good["run_id"], "status"] == "finished"
    curves = load_curves(store_path)
    assert bad["run_id"] not in set(curves["run_id"]) and good["run_id"] in set(curves["run_id"])


def test_nan_loss_stops_the_run_at_the_first_bad_step(run_tiny, store_path):
    row = run_tiny("method.name=nan_test", "method.builder=nan_test", "trainer.max_steps=6")
    assert row["status"] == "failed"
    assert row["error"].startswith("NonFiniteLossError: training loss became nan at step 2")
    assert load(store_path, decode=False).iloc[0]["status"] == "failed"


def test_out_of_memory_in_a_run_is_recorded(run_tiny, store_path):
    row = run_tiny("method.name=oom_test", "method.builder=oom_test")
    assert row["status"] == "failed" and row["error"].startswith("OutOfMemoryError: CUDA out of memory")


def test_a_bad_value_that_shows_only_at_run_time_fails_that_run_only(run_tiny, store_path):
    row = run_tiny("method=lora", "method.target_modules=[no_such_layer]")
    assert row["status"] == "failed" and "No modules were targeted" in row["error"]
    assert load(store_path, decode=False).iloc[0]["error"] == row["error"]


@pytest.mark.parametrize("crash,signal_no", [
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 9),  # what the OOM killer does
    ("import ctypes; ctypes.string_at(0)", 11),  # a segfault in native code
])
def test_a_hard_crash_of_the_worker_process_is_recorded(run_tiny, store_path, monkeypatch, crash, signal_no):
    monkeypatch.setattr(runner, "WORKER_COMMAND", [sys.executable, "-c", crash])
    row = run_tiny("method=lora", "trainer.isolate=true")
    assert row["status"] == "failed"
    assert row["error"].startswith(f"WorkerError: worker process killed by signal {signal_no}")
    assert ("out of memory?" in row["error"]) == (signal_no == 9)
    assert load(store_path, decode=False).iloc[0]["status"] == "failed"


def test_finished_configs_are_skipped_and_force_runs_them_again(run_tiny, store_path):
    first = run_tiny("method=lora", *FAST)
    again = run_tiny("method=lora", *FAST)
    assert again["status"] == "skipped" and again["config_hash"] == first["config_hash"]
    assert len(load(store_path, decode=False)) == 1
    forced = run_tiny("method=lora", *FAST, "force=true")
    assert forced["status"] == "finished" and forced["config_hash"] == first["config_hash"]
    assert len(load(store_path, decode=False)) == 2


def test_failed_configs_are_not_skipped(run_tiny, store_path):
    run_tiny("method.name=raises_test", "method.builder=raises_test")
    assert run_tiny("method.name=raises_test", "method.builder=raises_test")["status"] == "failed"
    assert list(load(store_path, decode=False)["status"]) == ["failed", "failed"]


def _row(i: int, writer: int) -> dict:
    return {"run_id": f"w{writer}-{i}", "status": "finished", "method": "lora", "model": "m",
            "task": "t", "quant": "none", "seed": i, "config_hash": f"{writer}-{i}",
            "config_json": "{}", "created_at": "2026-01-01T00:00:00", "schema_version": 1}


CURVES_PER_RUN = 50


def _write(path: str, writer: int, n: int) -> None:
    store = open_store(path)
    for i in range(n):
        curves = [{"epoch": e, "split": "validation", "metric": "accuracy", "value": 0.5}
                  for e in range(CURVES_PER_RUN)]
        store.record(_row(i, writer), curves)


def _check_consistent(path) -> tuple[int, int]:
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    runs, curves = load(path, decode=False), load_curves(path)
    per_run = curves.groupby("run_id").size()
    assert set(per_run.index) == set(runs["run_id"])  # no curves without their run, nor the reverse
    assert (per_run == CURVES_PER_RUN).all()  # each run's curves complete
    return len(runs), len(curves)


def test_concurrent_writers_lose_no_rows(tmp_path):
    path = str(tmp_path / "shared.sqlite")  # created by whichever writer comes first
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write, args=(path, w, 30)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert _check_consistent(path) == (120, 120 * CURVES_PER_RUN)


def test_a_writer_killed_mid_write_leaves_the_store_consistent(tmp_path):
    path = str(tmp_path / "killed.sqlite")
    open_store(path)
    proc = multiprocessing.get_context("fork").Process(target=_write, args=(path, 0, 100000))
    proc.start()
    deadline = time.time() + 60
    while time.time() < deadline and len(load(path, decode=False)) < 20:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    n_runs, _ = _check_consistent(path)
    assert 20 <= n_runs < 100000
    _write(path, 1, 3)  # and the store still takes new runs
    assert _check_consistent(path)[0] == n_runs + 3


def test_an_error_whose_message_starts_with_a_blank_line_is_recorded_by_its_text():
    """safetensors' refusal of shared tensors starts with a newline: the row keeps its first
    line of text, not an empty message."""
    from harness.run.tracked import one_line_error

    exc = RuntimeError("\n            Some tensors share memory: [{'lm_head.weight'}].\n  More text")
    assert one_line_error(exc) == "RuntimeError: Some tensors share memory: [{'lm_head.weight'}]."
    assert one_line_error(ValueError()) == "ValueError"
