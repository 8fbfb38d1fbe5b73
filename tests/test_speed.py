"""What makes the default run fast, checked as mechanisms: length-grouped batches, evaluation in
length order with predictions in example order, bf16 autocast recorded and in the run's identity,
peft's DoRA cache while evaluating, peak memory per phase, workers forked from a fork server."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from harness.results.identity import config_hash
from harness.results import load
from harness.training.loop import evaluate, loader

from conftest import tiny_config

FAST = ["trainer.max_steps=2", "trainer.epochs=1", "trainer.latency_batches=1"]


class _Tok:
    pad_token_id, padding_side, model_input_names = 0, "right", ["input_ids", "attention_mask"]


def _examples(n: int = 200, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 60, (n,), generator=g).tolist()
    return [{"input_ids": list(range(1, k + 1)), "attention_mask": [1] * k, "labels": i % 2}
            for i, k in enumerate(lengths)]


def _collate(batch: list[dict]) -> dict:
    width = max(len(e["input_ids"]) for e in batch)
    pad = lambda seq: seq + [0] * (width - len(seq))  # noqa: E731
    return {"input_ids": torch.tensor([pad(e["input_ids"]) for e in batch]),
            "attention_mask": torch.tensor([pad(e["attention_mask"]) for e in batch]),
            "labels": torch.tensor([e["labels"] for e in batch])}


def _pad_waste(batches) -> float:
    real = padded = 0
    for b in batches:
        real += int(b["attention_mask"].sum())
        padded += b["attention_mask"].numel()
    return 1 - real / padded


def test_length_grouped_batches_hold_every_example_once_with_far_less_padding():
    examples = _examples()
    grouped = loader(examples, _Tok(), 16, True, seed=0, collate=_collate, group_by_length=True)
    plain = loader(examples, _Tok(), 16, True, seed=0, collate=_collate, group_by_length=False)
    lengths = sorted(int(b["attention_mask"][j].sum()) for b in grouped for j in range(len(b["labels"])))
    assert lengths == sorted(len(e["input_ids"]) for e in examples)  # each example once
    assert _pad_waste(grouped) < 0.5 * _pad_waste(plain)

    def shapes(seed: int) -> list[list]:  # two epochs of a fresh loader
        batches = loader(examples, _Tok(), 16, True, seed=seed, collate=_collate, group_by_length=True)
        return [[b["attention_mask"].shape for b in batches] for _ in range(2)]

    assert shapes(0) == shapes(0)  # the seed decides the order
    assert shapes(0)[0] != shapes(0)[1] and shapes(0) != shapes(1)  # a new order every epoch


class _LengthModel(torch.nn.Module):
    """Predicts class 1 for odd lengths: any reordering of examples shows in its predictions."""

    def forward(self, input_ids, attention_mask, **_):
        n = attention_mask.sum(1)
        logits = torch.stack([(n % 2 == 0).float(), (n % 2 == 1).float()], dim=1)
        return type("Out", (), {"logits": logits})()


def test_evaluation_in_length_order_returns_predictions_in_example_order():
    examples = _examples(101)
    sorted_batches = loader(examples, _Tok(), 8, False, 0, _collate, group_by_length=True)
    assert sorted_batches.sampler != list(range(101))  # really reordered
    kept_sorted, kept_plain = {}, {}
    a = evaluate(_LengthModel(), sorted_batches, torch.device("cpu"), 2, False, keep=kept_sorted)
    b = evaluate(_LengthModel(), loader(examples, _Tok(), 8, False, 0, _collate), torch.device("cpu"),
                 2, False, keep=kept_plain)
    assert kept_sorted["predictions"] == kept_plain["predictions"] == [len(e["input_ids"]) % 2 for e in examples]
    assert kept_sorted["labels"] == [e["labels"] for e in examples]
    assert a["accuracy"] == b["accuracy"]


def test_the_precision_is_recorded_and_auto_resolves_into_the_hash(run_tiny, store_path, monkeypatch):
    bf16 = run_tiny("method=lora", *FAST, "trainer.autocast=bf16")
    fp32 = run_tiny("method=lora", *FAST, "trainer.autocast=off")
    assert (bf16["precision"], fp32["precision"]) == ("bf16_autocast", "fp32")
    assert load(store_path, decode=False).set_index("run_id").loc[bf16["run_id"], "precision"] == "bf16_autocast"
    from omegaconf import OmegaConf

    from harness import device
    from harness.results import fingerprint

    container = OmegaConf.to_container(tiny_config(store_path, "trainer.autocast=auto", "trainer.device=cpu"),
                                       resolve=True)
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)
    with_bf16 = config_hash(container)
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: False)
    assert config_hash(container) != with_bf16  # the same setting, another precision: another run
    assert fingerprint.run_identity(container)["autocast"] == "off"


def test_dora_evaluates_with_peft_weight_norm_cache_and_the_same_outputs():
    from peft.tuners.lora import dora

    from harness.run.pipeline import build_method, method_context
    from harness.models.load import load_model
    from harness.tasks.types import SingleLabel
    from harness.job.validation import validate

    cfg = validate(tiny_config(Path("unused.sqlite"), "method=dora"))
    device = torch.device("cpu")
    model = load_model(cfg.model, cfg.quant, 2, device).model
    adapted = build_method(cfg, model, method_context(cfg, SingleLabel(), device))
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.add_(0.05 * torch.randn_like(p))  # a trained-looking adapter: B is no longer zero
    vocab = adapted.model.get_input_embeddings().num_embeddings
    batch = {"input_ids": torch.randint(1, vocab, (4, 12)), "attention_mask": torch.ones(4, 12, dtype=torch.long)}
    adapted.model.eval()
    with torch.no_grad():
        plain = adapted.model(**batch).logits
        with adapted.inference():
            assert dora.ENABLE_DORA_CACHING is True
            cached = adapted.model(**batch).logits
            again = adapted.model(**batch).logits
    assert dora.ENABLE_DORA_CACHING is False
    layer = next(m for m in adapted.model.modules() if hasattr(m, "lora_magnitude_vector"))
    assert layer.lora_magnitude_vector["default"]._cache_store  # peft filled its cache
    torch.testing.assert_close(cached, plain)
    torch.testing.assert_close(again, plain)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-RSS reset")
def test_each_phase_has_its_own_peak():
    from harness.training.memory import PeakMemory

    memory = PeakMemory(torch.device("cpu"), isolated=False).start()
    with memory.phase("train"):
        small = torch.ones(2**20)  # 4 MiB
    with memory.phase("eval"):
        big = torch.ones(100 * 2**20)  # 400 MiB, touched
        del big
    out = memory.stop()
    del small
    assert out["peak_memory_eval_bytes"] - out["peak_memory_train_bytes"] > 300 * 2**20
    assert out["peak_memory_bytes"] >= out["peak_memory_eval_bytes"]


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-RSS reset")
def test_the_kernels_mark_counts_a_peak_between_phases_and_nothing_polls():
    from harness.training.memory import PeakMemory

    memory = PeakMemory(torch.device("cpu"), isolated=False).start()
    assert memory._thread is None  # no sampler thread competing with the training loop
    with memory.phase("train"):
        pass
    big = torch.ones(100 * 2**20)  # 400 MiB, touched, outside every phase
    del big
    with memory.phase("eval"):
        pass
    out = memory.stop()
    assert out["peak_memory_bytes"] - max(out["peak_memory_train_bytes"], out["peak_memory_eval_bytes"]) > 300 * 2**20


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-RSS reset")
def test_a_phase_kept_apart_has_its_peak_but_not_the_runs():
    from harness.training.memory import PeakMemory

    memory = PeakMemory(torch.device("cpu"), isolated=True).start()
    with memory.phase("setup"):
        pass
    with memory.phase("count", in_run=False):  # the FLOP count's step
        big = torch.ones(100 * 2**20)  # 400 MiB, touched
        assert memory.peak_so_far() < memory.baseline_rss + 300 * 2**20
        del big
    with memory.phase("train"):
        small = torch.ones(2**20)
    out, apart = memory.stop(), memory.apart()
    del small
    assert apart["count"] - out["peak_memory_train_bytes"] > 300 * 2**20
    assert out["peak_memory_bytes"] < apart["count"] - 300 * 2**20  # the run's peak: without it
    # the same block in a phase of the run counts
    memory = PeakMemory(torch.device("cpu"), isolated=True).start()
    with memory.phase("count"):
        big = torch.ones(100 * 2**20)
        del big
    assert memory.stop()["peak_memory_bytes"] - memory.baseline_rss > 300 * 2**20
    with pytest.raises(ValueError, match="'count' was measured in the run's peak before"):
        with memory.phase("count", in_run=False):
            pass


def test_an_isolated_run_is_forked_from_the_fork_server_and_records_its_own_phases(run_tiny):
    from harness.job.isolation import forkserver_available

    if not forkserver_available():
        pytest.skip("no fork on this platform")
    row = run_tiny("method=lora", *FAST, "trainer.isolate=true")
    assert row["status"] == "finished"
    pid = int((Path(row["run_dir"]) / "worker.pid").read_text())
    assert pid != os.getpid()
    from test_integrity import _alive

    assert not _alive(pid)  # the worker ended with its run
    assert row["peak_memory_train_bytes"] > 0 and row["peak_memory_eval_bytes"] > 0
    assert row["peak_memory_bytes"] >= max(row["peak_memory_train_bytes"], row["peak_memory_eval_bytes"])


def test_a_cuda_run_gets_a_fresh_interpreter_not_a_fork(tmp_path):
    """CUDA cannot be used in a process forked after the driver was initialised: no fork for it."""
    import json
    import subprocess

    from harness.job.isolation import _Forked, _start

    job, out = tmp_path / "job.json", tmp_path / "result.json"
    job.write_text(json.dumps({"config": {}, "row": {}}))
    proc = _start(None, job, out, "cuda")
    assert isinstance(proc, subprocess.Popen) and not isinstance(proc, _Forked)
    assert proc.wait(timeout=120) == 1
    assert json.loads(out.read_text())["error"]  # the worker ran, and refused the empty job
