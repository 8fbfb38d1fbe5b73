"""The model families: adapters on the right modules, heads trained, 4-bit bases that keep training."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from harness.job.validation import validate
from tests.method_helpers import build_from
from harness.models.load import load_model
from harness.paths import conf_dir
from tests.conftest import compose_config, tiny_config


def test_every_real_model_has_a_tiny_twin_of_its_family():
    cfgs = {p.stem: validate(compose_config([f"model={p.stem}"])).model
            for p in (conf_dir() / "model").glob("*.yaml")}
    assert {"minilm", "smollm2", "tiny_bert", "tiny_llama"} <= set(cfgs)
    for real, tiny in (("minilm", "tiny_bert"), ("smollm2", "tiny_llama")):
        assert cfgs[real].family == cfgs[tiny].family
        assert cfgs[real].target_modules == cfgs[tiny].target_modules
        assert cfgs[real].head_modules == cfgs[tiny].head_modules
    assert not any(c.trust_remote_code for c in cfgs.values())


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_decoder_trains_adapters_on_its_target_modules_and_its_score_head(store_path, method):
    cfg = validate(tiny_config(store_path, "model=tiny_llama", f"method={method}"))
    loaded = load_model(cfg.model, cfg.quant, 3, torch.device("cpu"), "single_label_classification")
    adapted = build_from(cfg, loaded.model)
    names = [n for n, p in adapted.model.named_parameters() if p.requires_grad]
    for module in cfg.model.target_modules:
        assert any(f"{module}.lora_A" in n for n in names), module
    assert any("score" in n for n in names)
    assert all("lora_" in n or "score" in n for n in names)
    if method == "qlora":
        import bitsandbytes as bnb

        assert isinstance(adapted.model.base_model.model.model.layers[0].self_attn.q_proj.base_layer,
                          bnb.nn.Linear4bit)


def test_4bit_base_keeps_training_after_a_validation_pass(run_tiny):
    # bitsandbytes repacks 4-bit weights for CPU inference on the first eval; training after it
    # must still work (several epochs with validation in between).
    row = run_tiny("method=qlora", "trainer.max_steps=null", "trainer.epochs=2", "task.train_size=16")
    assert row["status"] == "finished", row.get("error")
    assert row["best_epoch"] in (1, 2)


def test_legal_case_preset_runs_on_tiny_settings(tmp_path, store_path):
    from harness.job.runner import run_job

    pd.DataFrame({"facts": [f"<p>case {i} {'won' if i % 3 else 'lost'}</p>" for i in range(60)],
                  "first_party": "A", "second_party": "B",
                  "first_party_winner": [bool(i % 3) for i in range(60)]}).to_csv(tmp_path / "s.csv")
    cfg = compose_config(["+experiment=legal_case", "model=tiny_bert", "trainer=smoke",
                          f"task.data_path={tmp_path / 's.csv'}", "task.train_size=24",
                          "task.val_size=8", "task.test_size=8", f"store.url={store_path}"])
    assert cfg.trainer.epochs == 5 and cfg.task.name == "scotus_outcome"  # the preset's values
    row = run_job(cfg)
    assert row["status"] == "finished", row.get("error")
    assert row["task"] == "scotus_outcome" and row["majority_accuracy"] > 0
