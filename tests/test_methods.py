"""Each method trains a few steps on the tiny model and its mechanism is visible."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from harness.methods import METHODS, MethodSpec, builder_name
from harness.paths import conf_dir
from harness.results import check_row, load
from harness.tasks.types import TASK_TYPES
from harness.train import training_loss
from tests.method_helpers import (base_model, build, build_config, method_context,
                                  task_type_examples, train_steps)

CORE = ["full", "lora", "dora", "qlora", "qdora"]


@pytest.mark.parametrize("method", CORE)
def test_each_method_trains_and_records_a_valid_row(run_tiny, store_path, method):
    row = run_tiny(f"method={method}")
    assert row["status"] == "finished", row.get("error")
    stored = load(store_path, decode=False)
    assert len(stored) == 1
    check_row({k: (None if v != v else v) for k, v in stored.iloc[0].to_dict().items()
               if k in row} | {})
    assert stored.iloc[0]["method"] == method
    assert 0 <= stored.iloc[0]["accuracy"] <= 1
    assert stored.iloc[0]["trainable_params"] > 0


def test_lora_trains_only_adapters_and_head(store_path):
    adapted = build(store_path, "method=lora")
    names = [n for n, p in adapted.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or "classifier" in n for n in names)
    assert any("lora_A" in n for n in names) and any("lora_B" in n for n in names)


def test_dora_has_trainable_magnitude_vectors_that_change(store_path):
    adapted = build(store_path, "method=dora")
    mags = {n: p for n, p in adapted.model.named_parameters() if "lora_magnitude_vector" in n}
    assert mags and all(p.requires_grad for p in mags.values())
    before = {n: p.detach().clone() for n, p in mags.items()}
    opt = adapted.make_optimizer()
    batch = {"input_ids": torch.randint(5, 40, (4, 12)), "attention_mask": torch.ones(4, 12, dtype=torch.long),
             "labels": torch.tensor([0, 1, 0, 1])}
    adapted.model.train()
    training_loss(adapted, adapted.ctx.task_type, batch).backward()
    opt.step()
    assert any(not torch.equal(before[n], p) for n, p in mags.items())


@pytest.mark.parametrize("quantized,plain", [("qlora", "lora"), ("qdora", "dora")])
def test_4bit_methods_keep_a_4bit_base_and_train_as_many_parameters(store_path, quantized, plain):
    import bitsandbytes as bnb

    q, p = build(store_path, f"method={quantized}"), build(store_path, f"method={plain}")
    bases = [m.base_layer for m in q.model.modules() if hasattr(m, "base_layer")]
    assert bases and all(isinstance(b, bnb.nn.Linear4bit) for b in bases)
    assert all(b.weight.quant_state.quant_type == "nf4" for b in bases)
    assert all(b.weight.dtype == torch.uint8 for b in bases)
    assert q.count_parameters()[0] == p.count_parameters()[0]
    assert q.count_parameters()[1] == p.count_parameters()[1]


def test_full_fine_tuning_trains_every_parameter(store_path):
    adapted = build(store_path, "method=full")
    trainable, total = adapted.count_parameters()
    assert trainable == total == sum(p.numel() for p in adapted.model.parameters())


def test_same_seed_gives_identical_metrics(run_tiny):
    a, b = run_tiny("method=lora", "seed=3"), run_tiny("method=lora", "seed=3", "force=true")
    keys = ["accuracy", "f1_macro", "f1_micro", "eval_loss", "trainable_params"]
    assert [a[k] for k in keys] == [b[k] for k in keys]
    assert a["config_hash"] == b["config_hash"]


def test_recorded_config_is_the_resolved_config(run_tiny):
    row = run_tiny("method=dora", "method.r=4")
    cfg = json.loads(row["config_json"])
    assert cfg["method"]["r"] == 4 and cfg["method"]["use_dora"] is True
    assert cfg["task"]["split_seed"] == cfg["seed"]


@pytest.mark.parametrize("method", ["qlora", "qdora"])
def test_4bit_training_goes_on_after_a_validation_pass(run_tiny, method):
    # bitsandbytes repacks 4-bit CPU weights for inference in eval mode; epoch 2 must still train.
    row = run_tiny(f"method={method}", "trainer.epochs=2", "trainer.max_steps=null")
    assert row["status"] == "finished", row.get("error")
    assert json.loads(row["details_json"])["steps"] == 16


@pytest.mark.parametrize("variant,builder", [("dora", "lora"), ("qlora", "lora"), ("qdora", "lora")])
def test_config_only_variants_are_built_by_lora(store_path, variant, builder):
    cfg = build_config(store_path, f"method={variant}")
    assert cfg.method.name == variant and builder_name(cfg.method) == builder
    assert variant not in METHODS  # no code of their own


# What each method's code declares it can train (harness.methods.register_method).
FOUR_BIT = {"full": False, "delta_lora": False, "dylora": False, "lora_drop": False,
            "hyperlora": False, "lora": True, "lorafa": True, "loraplus": True, "adalora": True,
            "vera": True, "double_lora": True}


def test_every_method_declares_its_4bit_support_and_task_types():
    assert set(FOUR_BIT) <= set(METHODS.names())
    for name, four_bit in FOUR_BIT.items():
        spec = METHODS.get(name)
        assert isinstance(spec, MethodSpec) and spec.four_bit is four_bit, name
        assert METHODS.info(name) == {"four_bit": four_bit, "task_types": spec.task_types}
        assert spec.task_types is None or set(spec.task_types) <= set(TASK_TYPES.names()), name


def test_every_method_config_names_a_registered_builder(store_path):
    names = sorted(p.stem for p in (conf_dir() / "method").glob("*.yaml"))
    assert {"lora", "dora", "qlora", "qdora", "loraplus", "vera"} <= set(names)
    for name in names:
        cfg = build_config(store_path, f"method={name}")
        assert cfg.method.name == name and builder_name(cfg.method) in METHODS, name


@pytest.mark.parametrize("kind_name", ["multi_label", "multiple_choice"])
@pytest.mark.parametrize("method", sorted(FOUR_BIT))
def test_every_method_trains_on_each_task_type_it_declares(store_path, method, kind_name):
    """The runner's order: build, before_training (LoRA-drop's probe), then steps with the task
    type's loss; the trainable weights move and the loss stays finite."""
    spec = METHODS.get(method)
    if not spec.supports_task_type(kind_name):
        pytest.skip(f"{method} does not declare {kind_name}")
    cfg = build_config(store_path, f"method={method}")
    kind = TASK_TYPES.get(kind_name)()
    ctx = dataclasses.replace(method_context(cfg), task_type=kind)
    model = base_model(cfg, kind.head_size(3), kind.problem_type)
    adapted = spec.build(model, cfg.method, ctx)
    batches = DataLoader(task_type_examples(kind_name), batch_size=4, collate_fn=default_collate)
    before = {n: p.detach().clone() for n, p in adapted.model.named_parameters() if p.requires_grad}
    losses = []
    train_steps(adapted, 3, batches=batches,
                on_step=lambda step: losses.append(float(training_loss(adapted, kind, next(iter(batches))))))
    assert all(torch.isfinite(torch.tensor(losses)))
    after = dict(adapted.model.named_parameters())
    assert any(not torch.equal(v, after[n]) for n, v in before.items() if n in after)
