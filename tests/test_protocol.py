"""protocol=tuned: a learning-rate search on validation, then final runs at the chosen rate."""
from __future__ import annotations

import sqlite3
import sys

import pytest

from harness import __main__ as cli
from harness.results import load
from tests.conftest import TINY, compose_config
from harness.job.validation import validate
from harness.config import ConfigError

FAST = ["trainer.max_steps=3", "trainer.epochs=1", "trainer.latency_batches=1", "trainer.isolate=false",
        "report.enabled=false"]


def run_main(argv, monkeypatch) -> int:
    monkeypatch.setattr(sys, "argv", ["harness", *argv])
    try:
        cli.main()
    except SystemExit as exc:
        return int(exc.code)
    return 0


def test_a_tuned_sweep_searches_chooses_on_validation_then_trains_its_final_seeds(tmp_path, monkeypatch, store_path):
    argv = ["-m", *TINY, *FAST, f"store.url={store_path}", "method=lora,full", "protocol=tuned",
            "protocol.lr_factors=[0.5,2.0]", "protocol.seeds=[0,1]", "protocol.search_seed=3",
            f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    assert run_main(argv, monkeypatch) == 0
    runs = load(store_path)
    assert len(runs) == 2 * (2 + 2) and set(runs["status"]) == {"finished"}
    for method, default in (("lora", 2e-3), ("full", 5e-5)):
        mine = runs[runs["method"] == method]
        search, final = mine[mine["stage"] == "search"], mine[mine["stage"] == "final"]
        # the grid is a log grid around the method's own default; the search runs on search_seed
        assert sorted(search["lr"]) == pytest.approx([default * 0.5, default * 2.0])
        assert set(search["seed"]) == {3} and sorted(final["seed"]) == [0, 1]
        # the chosen rate is the search trial with the best validation accuracy (ties: lower rate)
        best = search.sort_values(["select_value", "lr"], ascending=[False, True]).iloc[0]
        assert set(final["lr"]) == {best["lr"]}
        assert mine["search_id"].nunique() == 1 and mine["config_hash"].is_unique
        assert all(c["protocol"]["stage"] in ("search", "final") for c in mine["config"])

    # kill half-way, simulated: drop one search trial and one final run; the re-run does only those
    with sqlite3.connect(store_path) as conn:
        ids = [runs[(runs.method == "lora") & (runs.stage == s)]["run_id"].iloc[0] for s in ("search", "final")]
        conn.executemany("DELETE FROM curves WHERE run_id=?", [(i,) for i in ids])
        conn.executemany("DELETE FROM runs WHERE run_id=?", [(i,) for i in ids])
    assert run_main(argv, monkeypatch) == 0
    again = load(store_path)
    assert len(again) == 8 and again["config_hash"].is_unique
    assert set(again["config_hash"]) == set(runs["config_hash"])


def test_a_tuned_grid_point_whose_search_fails_exits_1(tmp_path, monkeypatch, store_path):
    import tests.failing_methods  # noqa: F401

    argv = [*TINY, *FAST, f"store.url={store_path}", "method.builder=raises_test", "protocol=tuned",
            "protocol.lr_factors=[1.0]", "protocol.seeds=[0]", f"hydra.run.dir={tmp_path / 'run'}"]
    assert run_main(argv, monkeypatch) == 1
    runs = load(store_path)
    assert list(runs["stage"]) == ["search"] and list(runs["status"]) == ["failed"]


@pytest.mark.parametrize("override,needle", [
    ("protocol.lr_factors=[0.5,-1]", "protocol.lr_factors and protocol.lr_grid must be finite and > 0"),
    ("protocol.seeds=[]", "protocol.seeds must be a non-empty list"),
    ("protocol.seeds=[0,0]", "must not repeat a seed"),
    ("protocol.name=grid", "protocol.name must be one of fixed, tuned"),
])
def test_bad_protocol_settings_are_refused_in_one_line(override, needle):
    with pytest.raises(ConfigError) as info:
        validate(compose_config([*TINY, "protocol=tuned", override]))
    assert needle in str(info.value) and "\n" not in str(info.value)
