"""Data-parallel runs (harness.run.parallel): a run on 2 CPU processes (torchrun, accelerate, gloo)
trains the same steps on the same global batches as a run on one, so its losses match; it records
its world size and each process's peak memory; a process that fails fails the run in one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.results import load, load_curves
from tests.conftest import TINY

# No dropout anywhere: a process draws its own dropout masks, so only then are the two runs'
# numbers the same computation (up to the order of floating-point sums).
SAME = [*TINY, "trainer.isolate=true", "trainer.epochs=2", "trainer.max_steps=12", "method.dropout=0",
        "+model.tiny.hidden_dropout_prob=0", "+model.tiny.attention_probs_dropout_prob=0",
        "report.enabled=false"]


ROOT = Path(__file__).resolve().parents[1]


def harness(args: list[str], cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """One run on 1 process, on 2 with DDP, on 2 with FSDP (the first process reads the weights,
    and tests the whole model, the defaults) and on 2 with FSDP where every process loads the
    weights and tests its shards, dropout off. The last is the same configuration as the third
    (who reads the weights and where the model is tested do not change what trains), so it goes
    into a store of its own and its row is added to the others."""
    folder = tmp_path_factory.mktemp("parallel")
    url = str(folder / "r.db")
    for args, store in ((["trainer.processes=1,2"], url), (["trainer.processes=2", "trainer.strategy=fsdp"], url),
                        (["trainer.processes=2", "trainer.strategy=fsdp", "trainer.fsdp_load=every",
                          "trainer.fsdp_test=sharded"],
                         str(folder / "every.db"))):
        done = harness(["-m", *SAME, *args, f"store.url={store}"], folder)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = pd.concat([load(url), load(str(folder / "every.db"))], ignore_index=True)
    details = [json.loads(d) for d in runs["details_json"]]
    runs["strategy"] = [d.get("parallel_strategy", "none") + ("_every" if d.get("fsdp_load") == "every" else "")
                        for d in details]
    assert sorted(runs["strategy"]) == ["ddp", "fsdp", "fsdp_every", "none"] and set(runs["status"]) == {"finished"}
    return url, runs.set_index("strategy")


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "fsdp_every"])
def test_two_processes_match_one_with_the_same_global_batch(three_runs, strategy):
    url, runs = three_runs
    one, two = runs.loc["none"], runs.loc[strategy]
    assert one["world_size"] == 1 and two["world_size"] == 2
    # The same optimizer steps over the same examples and tokens: batches are split, not added.
    for key in ("optimizer_steps", "train_examples_seen", "train_tokens"):
        assert one[key] == two[key], key
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-4)
    curves = pd.concat([load_curves(url), load_curves(str(Path(url).with_name("every.db")))])
    by_run = {w: curves[curves["run_id"] == r["run_id"]].set_index(["epoch", "split", "metric"])["value"]
              for w, r in ((1, one), (2, two))}
    train_loss = by_run[1].xs(("train", "loss"), level=("split", "metric"))
    assert len(train_loss) == 2  # both epochs
    for key in [("train", "loss"), ("validation", "eval_loss")]:
        a = by_run[1].xs(key, level=("split", "metric"))
        b = by_run[2].xs(key, level=("split", "metric"))
        assert b.to_numpy() == pytest.approx(a.to_numpy(), rel=1e-4), key
    details = json.loads(two["details_json"])
    peaks = details["peak_memory_per_rank_bytes"]
    assert details["world_size"] == 2 and len(peaks) == 2 and min(peaks) > 100 * 2**20
    assert two["peak_memory_bytes"] >= max(peaks)
    assert "peak_memory_per_rank_bytes" not in json.loads(one["details_json"])


def test_fsdp_keeps_half_of_every_tensor_on_each_of_two_processes(three_runs):
    """FSDP's mechanism through the run itself: after sharding, each process holds its shards
    of the model's parameters (dim-0 chunks), together every parameter once; DDP holds all."""
    _, runs = three_runs
    fsdp, ddp = (json.loads(runs.loc[k, "details_json"]) for k in ("fsdp", "ddp"))
    held, total = fsdp["parameters_per_rank"], int(runs.loc["fsdp", "total_params"])
    assert len(held) == 2 and sum(held) == total
    assert max(held) - min(held) <= 0.02 * total  # halves, up to tensors of an odd first dimension
    assert "parameters_per_rank" not in ddp and ddp["parallel_strategy"] == "ddp"


def test_fsdp_reads_the_weights_on_the_first_process_only_unless_told_otherwise(three_runs):
    """trainer.fsdp_load through the run: by default the second process builds its model on the
    meta device and never reads the weights (it receives its shards; its losses still match, see
    above); with fsdp_load=every both read them. Both hold the same shards after sharding."""
    _, runs = three_runs
    first, every = (json.loads(runs.loc[k, "details_json"]) for k in ("fsdp", "fsdp_every"))
    assert first["fsdp_load"] == "first" and first["weights_read_per_rank"] == [1, 0]
    assert every["fsdp_load"] == "every" and every["weights_read_per_rank"] == [1, 1]
    assert first["parameters_per_rank"] == every["parameters_per_rank"]
    # ... and the memory of their shards only (a shard that were a view of the whole tensor it
    # was cut from would keep all of it alive); fp32: 4 bytes a parameter, padding aside
    whole = 4 * int(runs.loc["fsdp", "total_params"])
    for held in (first["parameter_storage_bytes_per_rank"], every["parameter_storage_bytes_per_rank"]):
        assert len(held) == 2 and all(0.45 * whole < b < 0.55 * whole for b in held), (held, whole)


def test_fsdp_tests_the_model_sharded_when_told(three_runs):
    """trainer.fsdp_test=sharded through the run: the processes test the sharded model together
    (its test loss is one process's, see above), the adapter saved from the model gathered in CPU
    memory is the one-process run's size, and latency is recorded as not measured; the default
    (gathered) tests and times the whole model on the first process."""
    _, runs = three_runs
    sharded, gathered, one = runs.loc["fsdp_every"], runs.loc["fsdp"], runs.loc["none"]
    assert json.loads(sharded["details_json"])["fsdp_test"] == "sharded"
    assert json.loads(gathered["details_json"])["fsdp_test"] == "gathered"
    assert sharded["adapter_bytes"] == gathered["adapter_bytes"] == one["adapter_bytes"] > 0
    assert pd.isna(sharded["infer_latency_ms"]) and pd.isna(sharded["infer_latency_merged_ms"])
    assert gathered["infer_latency_ms"] > 0 and gathered["infer_latency_merged_ms"] > 0


def test_fsdp_keeps_tied_embeddings_tied(tmp_path):
    """Full fine-tuning of a causal LM whose output layer is its input embeddings (tiny Llama, as
    SmolLM2), the second process receiving its shards from the first: the shared tensor stays
    one tensor (the processes hold every parameter once, and it trains as one), and the test
    loss is one process's, the model tested sharded (a causal LM's prompt task, which scores
    answer tokens) and saved from the state gathered in CPU memory."""
    url = str(tmp_path / "r.db")
    tied = ["model=tiny_llama", "task=rotten_tomatoes_prompt", "trainer=smoke", *SAME[len(TINY):],
            "method=full", f"store.url={url}"]
    for args in (["trainer.processes=1"], ["trainer.processes=2", "trainer.strategy=fsdp", "trainer.fsdp_test=sharded"]):
        done = harness([*tied, *args], tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    one, two = (r for _, r in load(url).sort_values("world_size").iterrows())
    details = json.loads(two["details_json"])
    assert details["fsdp_load"] == "first" and details["weights_read_per_rank"] == [1, 0]
    assert sum(details["parameters_per_rank"]) == two["total_params"] == one["total_params"]
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-4)
    assert details["fsdp_test"] == "sharded" and two["adapter_bytes"] == one["adapter_bytes"]


@pytest.mark.parametrize("builder,error", [
    # every process, before training (slow: the second case covers the first error's recording)
    pytest.param("raises_test", "Boom: this method always fails", marks=pytest.mark.slow),
    ("second_rank_fails_test", "Boom: the second process failed"),  # rank 1 alone, mid-training
])
def test_a_failing_process_fails_the_run_in_one_line(tmp_path, builder, error):
    url = str(tmp_path / "r.db")
    done = harness([*SAME, "trainer.processes=2", "plugins=[tests.failing_methods]",
                    f"method.builder={builder}", f"store.url={url}"], tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    run = load(url).iloc[0]
    assert run["status"] == "failed" and run["error"] == f"WorkerError: {error}"


@pytest.mark.parametrize("args,needle", [
    (["trainer.processes=3"], "trainer.batch_size (8) must be a multiple of trainer.processes (3)"),
    (["trainer.processes=2", "trainer.isolate=false"], "trainer.processes > 1 needs trainer.isolate=true"),
    (["trainer.processes=0"], "trainer.processes must be a positive integer, got 0"),
    (["trainer.strategy=fsdp"], "trainer.strategy=fsdp shards the model over the run's processes: it needs "
                                "trainer.processes > 1"),
    (["trainer.processes=2", "trainer.strategy=zero3"], "trainer.strategy"),
    (["trainer.processes=2", "trainer.strategy=fsdp", "method=vblora"],
     "method=vblora cannot train with trainer.strategy=fsdp: it trains tensors that several layers share"),
    (["trainer.processes=2", "trainer.strategy=fsdp", "method=adalora"],
     "method=adalora cannot train with trainer.strategy=fsdp: its rank allocator"),
    (["trainer.processes=2", "trainer.fsdp_test=sharded"],
     "trainer.fsdp_test=sharded says where an FSDP run is tested: it needs trainer.strategy=fsdp"),
    (["trainer.processes=2", "trainer.fsdp_load=first"],
     "trainer.fsdp_load=first says who reads an FSDP run's weights: it needs trainer.strategy=fsdp"),
    (["trainer.processes=2", "trainer.strategy=fsdp", "trainer.fsdp_load=first", "method=qlora"],
     "trainer.fsdp_load=first cannot be used here: bitsandbytes' 4-bit weights cannot be built without"),
    (["trainer.processes=2", "trainer.strategy=fsdp", "trainer.fsdp_load=first", "method=eva"],
     "trainer.fsdp_load=first cannot be used here: method=eva passes training data through"),
    (["trainer.processes=2", "trainer.strategy=fsdp", "trainer.fsdp_load=all"], "trainer.fsdp_load"),
])
def test_bad_process_counts_are_refused_before_training(tmp_path, args, needle):
    done = harness([*TINY, "trainer.isolate=true", *args, f"store.url={tmp_path / 'r.db'}"], tmp_path)
    assert done.returncode == 2 and needle in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.db").exists()
