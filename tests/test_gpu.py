"""The CUDA paths, through the trainer's own code: a 4-bit base that stays 4-bit on the GPU,
allocated and reserved peaks, bf16 autocast, bf16 base weights and bitsandbytes' paged
optimizers. Skipped without CUDA (``python -m pytest -m gpu`` on a GPU machine)."""
from __future__ import annotations

import pytest
import torch

from harness.run import pipeline
from harness.job.validation import validate
from tests.conftest import compose_config

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")
LM = ["model=tiny_llama", "task=synthetic", "task.task_type=generation", "trainer=smoke",
      "trainer.device=cuda"]


def _setup(store_path, *overrides):
    cfg = validate(compose_config([*LM, f"store.url={store_path}", *overrides]))
    return cfg, pipeline.setup(cfg, CUDA)


def test_qlora_keeps_its_base_in_4bit_on_the_gpu_while_adapters_train(store_path):
    import bitsandbytes as bnb

    cfg, s = _setup(store_path, "method=qlora")
    layers = [m for m in s.adapted.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.weight.device.type == "cuda" for m in layers)
    packed = {id(m): m.weight.detach().clone() for m in layers}
    assert all(w.dtype == torch.uint8 for w in packed.values())  # 4-bit pairs packed in bytes
    lora = {n: p.detach().clone() for n, p in s.adapted.model.named_parameters() if "lora_B" in n}
    pipeline.fit(s, cfg, None)
    assert all(torch.equal(m.weight, packed[id(m)]) for m in layers)  # the base never moved
    assert any(not torch.equal(p, lora[n]) for n, p in s.adapted.model.named_parameters() if n in lora)


def test_a_gpu_run_records_allocated_and_reserved_peaks_and_bf16(run_tiny):
    row = run_tiny("model=tiny_llama", "task.task_type=generation", "trainer.device=cuda",
                   "trainer.autocast=auto", "method=qlora")
    assert row["status"] == "finished", row.get("error")
    assert row["memory_kind"] == "cuda_allocated" and row["device_kind"] == "cuda"
    assert 0 < row["peak_cuda_allocated_bytes"] <= row["peak_cuda_reserved_bytes"]
    assert row["peak_memory_bytes"] == row["peak_cuda_allocated_bytes"]
    assert row["precision"] == ("bf16_autocast" if torch.cuda.is_bf16_supported(including_emulation=False)
                                else "fp32")
    assert row["gen_tokens_per_s"] > 0 and row["gen_ttft_ms"] > 0


@pytest.mark.parametrize("optimizer", ["paged_adamw_8bit", "paged_adamw_32bit", "adamw_8bit"])
def test_bitsandbytes_optimizers_train_through_the_run(store_path, optimizer):
    import bitsandbytes as bnb

    # r=2048: an adapter factor of 131,072 elements, above the sizes under which bitsandbytes keeps
    # state in 32 bits (4,096) and unpaged (100,000).
    cfg, s = _setup(store_path, "method=qlora", "method.r=2048", f"trainer.optimizer={optimizer}")
    opt = s.adapted.make_optimizer()
    assert isinstance(opt, {"paged_adamw_8bit": bnb.optim.PagedAdamW8bit,
                            "paged_adamw_32bit": bnb.optim.PagedAdamW32bit,
                            "adamw_8bit": bnb.optim.AdamW8bit}[optimizer])
    batch = next(iter(s.batches["train"]))
    from harness.device import to_device
    from harness.training.loop import training_loss

    training_loss(s.adapted, s.kind, to_device(batch, CUDA)).backward()
    opt.step()
    state = max(opt.state.values(), key=lambda st: st["state1"].numel())
    assert state["state1"].numel() >= 100_000
    assert bool(getattr(state["state1"], "is_paged", False)) == optimizer.startswith("paged")
    assert (state["state1"].dtype == torch.uint8) == optimizer.endswith("8bit")
    trained = pipeline.fit(s, cfg, None)
    assert trained.steps == cfg.trainer.max_steps


def test_bf16_base_weights_with_fp32_adapters(store_path):
    cfg, s = _setup(store_path, "method=lora", "model.dtype=bfloat16")
    base = [p for n, p in s.adapted.model.named_parameters() if "base_layer" in n]
    adapters = [p for n, p in s.adapted.model.named_parameters() if "lora_" in n]
    assert base and all(p.dtype == torch.bfloat16 for p in base)
    assert adapters and all(p.dtype == torch.float32 for p in adapters)
    pipeline.fit(s, cfg, None)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_fsdp_on_two_gpus_matches_one_gpu_and_keeps_the_model_sharded(tmp_path, method):
    """FSDP over NCCL on 2 GPUs, the model tested sharded (trainer.fsdp_test=sharded): the test
    loss is one GPU's, each GPU held its half of the parameters, and each process's peak is a
    CUDA peak (LoRA: the second process never read the weights; QLoRA: 4-bit, every process)."""
    import json

    from harness.results import load
    from tests.test_parallel import SAME, harness

    url = str(tmp_path / "r.db")
    for args in (["trainer.processes=1"], ["trainer.processes=2", "trainer.strategy=fsdp", "trainer.fsdp_test=sharded"]):
        done = harness([*SAME, "trainer.device=cuda", "trainer.autocast=off", f"method={method}",
                        f"store.url={url}", *args], tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    one, two = (r for _, r in load(url).sort_values("world_size").iterrows())
    details = json.loads(two["details_json"])
    assert details["parallel_strategy"] == "fsdp" and two["memory_kind"] == "cuda_allocated"
    assert details["weights_read_per_rank"] == ([1, 0] if method == "lora" else [1, 1])
    if method == "lora":  # (4-bit weights are held packed, two to a byte)
        assert sum(details["parameters_per_rank"]) == two["total_params"] == one["total_params"]
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-3)
    assert two["adapter_bytes"] == one["adapter_bytes"]
