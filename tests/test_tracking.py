"""wandb mirrors the store: runs written offline are read back and compared with the stored rows."""
from __future__ import annotations

import json

import pytest

import tests.failing_methods  # noqa: F401  (registers the failing methods)
from harness.results import load, load_curves
from harness.sweep import summary
from harness.sweep.summary import SweepSummary
from harness.tracking import TRACKERS, Tracker
from harness.tracking import wandb_tracker
from tests.conftest import tiny_config
from tests.wandb_offline import offline_runs

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def wandb_root(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(wandb_tracker, "_said_offline", False)
    return tmp_path / "tracking"


def test_a_run_in_wandb_matches_the_store(run_tiny, store_path, wandb_root, capfd):
    row = run_tiny("method=lora", "tracker=wandb", f"tracker.dir={wandb_root}", "tracker.log_adapter=true",
                   "store.sweep=sweep-a", "task.train_size=24", "trainer.max_steps=null")
    assert row["status"] == "finished"
    err = capfd.readouterr().err
    assert "[harness] wandb: WANDB_MODE=offline; logging offline" in err and "wandb sync" in err
    (run,) = offline_runs(wandb_root)
    stored = load(store_path).iloc[0]
    curves = load_curves(store_path)

    assert run.run_id == stored["run_id"] and run.group == "sweep-a" and run.job_type == "train"
    assert run.name == "lora-synthetic-tiny_bert-none-r8-s0"
    assert {"method:lora", "task:synthetic", "model:tiny_bert", "quant:none", "r:8", "seed:0"} <= set(run.tags)
    assert run.config["method"] == stored["config"]["method"] and run.config["seed"] == 0

    steps = [h for h in run.history if "train/loss" in h]
    assert [h["train/step"] for h in steps] == list(range(1, 7))  # 24 examples / batch 8 x 2 epochs
    assert all(h["train/lr"] > 0 for h in steps[1:])
    train_loss = curves[(curves.split == "train") & (curves.metric == "loss")].set_index("epoch")["value"]
    for epoch, chunk in ((1, steps[:3]), (2, steps[3:])):  # equal batches: the epoch mean is the plain mean
        assert sum(h["train/loss"] for h in chunk) / 3 == pytest.approx(train_loss[epoch], rel=1e-6)

    epochs = {h["epoch"]: h for h in run.history if "validation/accuracy" in h}
    val = curves[curves.split == "validation"]
    assert sorted(epochs) == sorted(val["epoch"].unique()) == [1, 2]
    for _, c in val.iterrows():
        assert epochs[c["epoch"]][f"validation/{c['metric']}"] == pytest.approx(c["value"])

    for key in ("accuracy", "f1_macro", "eval_loss", "trainable_params", "peak_memory_bytes", "adapter_bytes"):
        assert run.summary[key] == pytest.approx(stored[key]), key
    assert run.summary["status"] == "finished" and run.summary["config_hash"] == stored["config_hash"]
    assert run.exit_code == 0
    assert run.artifacts == [f"adapter-{stored['run_id']}"]


def test_a_failed_run_is_marked_failed_in_wandb(run_tiny, store_path, wandb_root):
    row = run_tiny("method.name=raises_test", "method.builder=raises_test", "tracker=wandb", f"tracker.dir={wandb_root}")
    (run,) = offline_runs(wandb_root)
    stored = load(store_path).iloc[0]
    assert row["status"] == stored["status"] == run.summary["status"] == "failed"
    assert run.summary["error"] == stored["error"] == "Boom: this method always fails"
    assert run.exit_code == 1


def test_the_sweep_summary_run_holds_the_comparison_table_and_plots(run_tiny, store_path, wandb_root, tmp_path,
                                                                    monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = tmp_path / "plots"
    plots.mkdir()
    plt.plot([0, 1], [1, 0])
    plt.savefig(plots / "accuracy.png")
    for seed in (0, 1):
        run_tiny("method=lora", f"seed={seed}", "store.sweep=s1")
    run_tiny("method.name=raises_test", "method.builder=raises_test", "store.sweep=s1")
    cfg = tiny_config(store_path, "store.sweep=s1", "tracker=wandb", f"tracker.dir={wandb_root}",
                      f"tracker.plots_dir={plots}")
    monkeypatch.delenv(summary.LAUNCH_ENV, raising=False)  # no command line: the sweep label selects
    SweepSummary().on_multirun_end(cfg)

    (run,) = offline_runs(wandb_root)
    assert run.job_type == "sweep-summary" and run.group == "s1"
    assert run.summary["finished"] == 2 and run.summary["failed"] == 1
    table = json.loads((run.folder / "files" / run.summary["comparison/path"]).read_text())
    got = {r[table["columns"].index("run_id")]: r[table["columns"].index("accuracy")] for r in table["data"]}
    stored = load(store_path, status="finished").set_index("run_id")["accuracy"].to_dict()
    assert got == pytest.approx(stored)
    failed = json.loads((run.folder / "files" / run.summary["failed/path"]).read_text())
    assert failed["data"][0][failed["columns"].index("error")] == "Boom: this method always fails"
    assert run.summary["plots/accuracy/_type"] == "image-file"  # nested keys come back joined by "/"


class Broken(Tracker):
    def log_step(self, step, loss, lr):
        raise ConnectionError("wandb.ai unreachable\nsecond line")


if "broken_test" not in TRACKERS:
    TRACKERS.register("broken_test")(lambda cfg: Broken())


def test_a_tracker_that_breaks_never_fails_the_run(run_tiny, capfd):
    row = run_tiny("method=lora", "tracker.name=broken_test")
    assert row["status"] == "finished"
    lines = [ln for ln in capfd.readouterr().err.splitlines() if "tracker Broken failed" in ln]
    assert len(lines) == 1 and "(ConnectionError: wandb.ai unreachable); tracking is off" in lines[0]


def test_mode_is_offline_without_an_api_key(monkeypatch, tmp_path):
    cfg = tiny_config(tmp_path / "s.sqlite", "tracker=wandb").tracker
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_tracker.resolve_mode(cfg) == "offline"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert wandb_tracker.resolve_mode(cfg) == "online"
    (tmp_path / ".netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_tracker.resolve_mode(cfg) == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_tracker.resolve_mode(cfg) == "disabled"


def test_an_online_start_that_fails_falls_back_to_offline(monkeypatch, tmp_path, capfd):
    import wandb

    calls = []

    def fake_init(mode, **kwargs):
        calls.append(mode)
        if mode == "online":
            raise TimeoutError("could not reach api.wandb.ai")
        return "offline-run"

    monkeypatch.setattr(wandb, "init", fake_init)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(wandb_tracker, "_said_offline", False)
    cfg = tiny_config(tmp_path / "s.sqlite", "tracker=wandb", "tracker.mode=online",
                      f"tracker.dir={tmp_path}").tracker
    assert wandb_tracker.init_run(cfg, name="x") == "offline-run" and calls == ["online", "offline"]
    assert "online start failed (TimeoutError); logging offline" in capfd.readouterr().err


def test_the_summary_run_takes_the_reports_figures_by_default(store_path, tmp_path):
    figures = tmp_path / "report" / "figures"
    figures.mkdir(parents=True)
    (figures / "pareto_memory.png").write_bytes(b"\x89PNG")
    cfg = tiny_config(store_path, f"report.out_dir={tmp_path / 'report'}")
    assert summary.report_plots(cfg) == [figures / "pareto_memory.png"]
    off = tiny_config(store_path, f"report.out_dir={tmp_path / 'report'}", "report.enabled=false")
    assert summary.report_plots(off) == []


def test_a_language_model_run_shows_its_generation_metrics_in_wandb(run_tiny, store_path, wandb_root):
    row = run_tiny("model=tiny_llama", "task.task_type=generation", "tracker=wandb",
                   f"tracker.dir={wandb_root}")
    assert row["status"] == "finished", row.get("error")
    (run,) = offline_runs(wandb_root)
    stored = load(store_path).iloc[0]
    for key in ("accuracy", "normalized_match", "perplexity", "gen_tokens_per_s", "gen_ttft_ms",
                "majority_accuracy"):
        assert run.summary[key] == pytest.approx(stored[key]), key
    assert any("validation/normalized_match" in h and "validation/perplexity" in h for h in run.history)
