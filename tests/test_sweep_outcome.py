"""A sweep's outcome comes from the store; each job returns its validation metric to Hydra."""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra.experimental.callback import Callback

from harness import __main__ as cli
from harness.results import load, load_curves
from harness.sweep.summary import sweep_outcome
from tests.conftest import TINY

FAST = ["trainer.max_steps=2", "trainer.epochs=1", "trainer.latency_batches=1", "trainer.isolate=false"]
RETURNS_FILE = "HARNESS_TEST_RETURNS"


class KeepReturns(Callback):
    """Keeps what each job returned (as a sweeper that optimizes an objective sees it) in the
    file named by $HARNESS_TEST_RETURNS (Hydra imports this module apart from pytest's copy)."""

    def on_job_end(self, config, job_return, **kwargs) -> None:
        with open(os.environ[RETURNS_FILE], "a") as fh:
            fh.write(json.dumps([int(config.seed), job_return.return_value]) + "\n")


def returns() -> list[tuple[int, float]]:
    path = Path(os.environ[RETURNS_FILE])
    out = [tuple(json.loads(line)) for line in path.read_text().splitlines()] if path.exists() else []
    path.unlink(missing_ok=True)
    return out


def rows(*specs) -> pd.DataFrame:
    return pd.DataFrame([{"config_hash": h, "status": s, "created_at": t, "error": e,
                          "method": "lora"} for h, s, t, e in specs])


def test_this_commands_rows_decide_then_earlier_finished_ones_then_missing():
    since = "2026-01-02T00:00:00+00:00"
    df = rows(("a", "finished", "2026-01-01T00:00:00+00:00", None),  # done before: skipped now
              ("b", "finished", "2026-01-01T00:00:00+00:00", None),  # done before, then ...
              ("b", "failed", "2026-01-02T00:00:05+00:00", "boom"),  # ... re-run (force) and failed
              ("c", "failed", "2026-01-02T00:00:05+00:00", "first"),
              ("c", "finished", "2026-01-02T00:00:09+00:00", None))  # two attempts now, one finished
    out = sweep_outcome(df, ["a", "b", "c", "d"], since)
    assert sorted(out.finished["config_hash"]) == ["a", "c"] and out.earlier == 1
    failed = out.failed.set_index("config_hash")["error"].to_dict()
    assert failed == {"b": "boom", "d": "no run recorded"}


def test_each_job_returns_its_selected_validation_metric(tmp_path, monkeypatch, store_path):
    monkeypatch.setenv(RETURNS_FILE, str(tmp_path / "returns.jsonl"))
    argv = ["-m", *TINY, *FAST, f"store.url={store_path}", "seed=0,1", "report.enabled=false",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            "+hydra.callbacks.keep._target_=tests.test_sweep_outcome.KeepReturns"]
    monkeypatch.setattr(sys, "argv", ["harness", *argv])
    cli.main()  # every run finishes: no SystemExit
    runs = load(store_path).set_index("seed")
    curves = load_curves(store_path)
    got = returns()
    assert len(got) == 2
    for seed, value in got:
        run = runs.loc[seed]
        assert run["select_metric"] == "accuracy" and value == pytest.approx(run["select_value"])
        val = curves[(curves["run_id"] == run["run_id"]) & (curves["split"] == "validation")
                     & (curves["metric"] == "accuracy")]
        assert value == pytest.approx(float(val["value"].iloc[-1]))  # select=final: last epoch

    cli.main()  # the same command again: both skipped, the stored values come back
    assert sorted(returns()) == sorted((s, pytest.approx(runs.loc[s]["select_value"])) for s in (0, 1))


def test_a_failed_job_returns_nan_and_the_command_exits_1(tmp_path, monkeypatch, store_path):
    import tests.failing_methods  # noqa: F401

    monkeypatch.setenv(RETURNS_FILE, str(tmp_path / "returns.jsonl"))
    argv = ["-m", *TINY, *FAST, f"store.url={store_path}", "method.builder=lora,raises_test",
            "report.enabled=false", f"hydra.sweep.dir={tmp_path / 'sweep'}",
            "+hydra.callbacks.keep._target_=tests.test_sweep_outcome.KeepReturns"]
    monkeypatch.setattr(sys, "argv", ["harness", *argv])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 1
    got = returns()
    assert sum(math.isnan(v) for _, v in got) == 1 and len(got) == 2


def test_hydras_optuna_sweeper_optimizes_the_returned_validation_metric(tmp_path, monkeypatch, store_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    argv = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.direction=maximize", "hydra.sweeper.n_trials=3",
            "hydra.sweeper.sampler.seed=1", "method.lr=tag(log,interval(1e-4,1e-1))", *TINY, *FAST,
            f"store.url={store_path}", "report.enabled=false", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    monkeypatch.setattr(sys, "argv", ["harness", *argv])
    cli.main()  # the preflight checks the fixed part; every trial finishes: no SystemExit
    runs = load(store_path)
    assert len(runs) == 3 and runs["lr"].nunique() == 3 and set(runs["status"]) == {"finished"}
    assert all(1e-4 <= lr <= 1e-1 for lr in runs["lr"])
    best = json.loads(json.dumps(
        __import__("yaml").safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())))
    assert best["best_value"] == pytest.approx(runs["select_value"].max())
