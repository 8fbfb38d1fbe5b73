"""The memory planner (python -m harness.plan): its counts are the run's own, its 4-bit weights
are bitsandbytes' bytes, its activations are what autograd really saves, and its error against
the store and the published anchors is printed by one command."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch

from harness.plan import GIB, estimate, saved_for_backward
from harness.plan.__main__ import main as plan_cli
from harness.plan.compose import configs
from tests.conftest import TINY

LM = ["model=tiny_llama", "task=rotten_tomatoes_prompt", "trainer=smoke"]


@pytest.mark.parametrize("method", ["lora", "dora", "vera", "lorafa", "full", "hyperlora"])
def test_the_plan_counts_the_parameters_the_run_trains(run_tiny, method):
    row = run_tiny(f"method={method}")
    assert row["status"] == "finished", row.get("error")
    planned = estimate(configs([*TINY, f"method={method}"])[0])
    assert planned.trainable == row["trainable_params"]


def test_four_bit_weights_are_the_bytes_bitsandbytes_stores():
    from harness.models.load import load_model

    for double in (True, False):
        cfg = configs([*LM, "method=qlora", f"quant.double_quant={double}"])[0]
        loaded = load_model(cfg.model, cfg.quant, 0, torch.device("cpu"), causal_lm=True)
        stored = 0
        for p in loaded.model.parameters():
            stored += p.numel() * p.element_size()  # 4-bit weights: packed, two to a byte
            state = getattr(p, "quant_state", None)
            if state is not None:
                stored += state.absmax.numel() * state.absmax.element_size()
                if state.nested:
                    stored += state.state2.absmax.numel() * state.state2.absmax.element_size()
        planned = estimate(cfg).weights
        assert planned == pytest.approx(stored, rel=0.01), (double, planned, stored)
    full = estimate(configs([*LM, "method=lora"])[0]).weights
    assert planned < full  # and the unquantized base is larger


def test_activations_are_what_a_real_backward_pass_keeps():
    from harness.models.load import load_model
    from harness.run.pipeline import build_method, method_context
    from harness.plan import meta_model

    cfg = configs([*TINY, "method=lora", "trainer.autocast=off"])[0]
    config, kind, _, _, adapted = meta_model(cfg)
    planned, _, _ = saved_for_backward(adapted.model, 4, 16, causal_lm=False)
    loaded = load_model(cfg.model, cfg.quant, 2, torch.device("cpu"))
    model = build_method(cfg, loaded.model, method_context(cfg, kind, torch.device("cpu"))).model
    model.train()
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    seen: dict[int, int] = {}

    def keep(t):
        key = t.untyped_storage()._cdata
        if key not in params and t.is_floating_point():
            seen[key] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model(input_ids=torch.randint(5, config.vocab_size, (4, 16)))
    assert planned == sum(seen.values()) and planned > 0


def test_an_eight_bit_optimizer_and_gradient_checkpointing_cut_what_they_should():
    plain = estimate(configs([*LM, "method=full"])[0])
    eight = estimate(configs([*LM, "method=full", "trainer.optimizer=adamw_8bit"])[0])
    # bitsandbytes keeps tensors under 4,096 elements in 32-bit: states shrink, not to a quarter
    assert plain.optimizer / 4 < eight.optimizer < plain.optimizer
    ckpt = estimate(configs([*LM, "method=lora", "trainer.gradient_checkpointing=true",
                             "trainer.batch_size=16", "task.max_length=64"])[0])
    full_act = estimate(configs([*LM, "method=lora", "trainer.batch_size=16", "task.max_length=64"])[0])
    assert ckpt.activations < full_act.activations


def test_a_chunked_loss_holds_one_chunks_logits():
    shape = [*LM, "method=lora", "trainer.batch_size=4", "task.max_length=64"]  # 256 positions
    whole = estimate(configs(shape)[0]).activations
    saved = {c: whole - estimate(configs([*shape, f"trainer.loss_chunk_tokens={c}"])[0]).activations
             for c in (32, 64, 256, 1000)}
    assert saved[32] > saved[64] > 0 and saved[256] == saved[1000] == 0  # a chunk of all: nothing saved
    # the logits of the positions outside one chunk: (256 - c) x (vocabulary x bytes per logit)
    assert math.isclose(saved[32] / (256 - 32), saved[64] / (256 - 64))


def test_the_cli_tells_what_fits_and_refuses_a_bad_override_in_one_line(capsys):
    assert plan_cli([*LM, "method=lora,qlora", "--budget-gib", "100"]) == 0
    out = capsys.readouterr().out
    assert "lora" in out and "qlora" in out and "fits" in out and "total_GiB" in out
    assert plan_cli([*LM, "method=lorra"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown method 'lorra'" in err


def test_a_gpu_run_is_planned_on_a_machine_without_one(capsys):
    cfg = configs([*LM, "method=qlora", "trainer.device=cuda", "trainer.optimizer=paged_adamw_8bit"])[0]
    planned = estimate(cfg)
    assert planned.paged > 0 and planned.optimizer == 0  # unified memory, outside the allocator


def test_validate_compares_the_stores_runs_and_the_published_anchors(run_tiny, store_path):
    from harness.plan.check import ANCHORS, validate_against_anchors, validate_against_store

    assert run_tiny("method=lora")["status"] == "finished"
    table = validate_against_store(str(store_path))
    row = table.set_index("method").loc["lora"]
    assert row["runs"] == 1 and row["memory"] == "cpu_rss" and math.isfinite(row["measured_GiB"])
    litgpt = [a for a in ANCHORS if a.name.startswith("litgpt Llama-2-7B LoRA")]
    ANCHORS[:] , kept = litgpt, list(ANCHORS)
    try:
        anchors = validate_against_anchors()
    finally:
        ANCHORS[:] = kept
    predicted = anchors.loc[0, "predicted_GiB"]
    assert abs(predicted / (19.77e9 / GIB) - 1) < 0.10  # within 10% of litgpt's measured peak


def test_planning_for_a_gpu_leaves_this_machines_device_alone():
    from harness.device import PLAN_DEVICE_ENV, device_kind

    here = device_kind("auto")
    configs([*LM, "method=lora", "trainer.device=cuda"])
    assert device_kind("auto") == here and PLAN_DEVICE_ENV not in __import__("os").environ


def test_the_report_adds_what_fits_the_budget_for_its_methods(run_tiny, store_path, tmp_path):
    from harness.config import ReportConfig
    from harness.report.build import build_report

    for method in ("lora", "dora"):
        assert run_tiny(f"method={method}")["status"] == "finished"
    options = ReportConfig(pdf=False, formats=["md"], plan="model=tiny_bert task=synthetic", budget_gib=64)
    build_report(store_path, tmp_path / "report", options=options)
    text = (tmp_path / "report" / "report.md").read_text()
    section = text[text.index("What fits 64 GiB: model=tiny_bert task=synthetic"):]
    assert "| dora |" in section and "| lora |" in section and "| yes |" in section


# --- what the planner refuses: one line on stderr, exit 2, within seconds ---------------------

LLAMA = json.loads((Path(__file__).resolve().parents[1] / "harness/plan/anchors/llama-2-7b/config.json").read_text())
REFUSE_WITHIN_S = 5  # the refusal itself; the imports are made once, before (warm_planner)


def _folder(tmp_path, content) -> str:
    """A model folder whose config.json holds ``content`` (text as is, else as JSON); None: no
    config.json at all."""
    folder = tmp_path / "model"
    folder.mkdir()
    if content is not None:
        (folder / "config.json").write_text(content if isinstance(content, str) else json.dumps(content))
    return str(folder)


@pytest.fixture(scope="module")
def warm_planner():
    """Hydra, the schemas and transformers' model types imported once, so that each refusal is
    timed alone."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES  # noqa: F401

    configs([*TINY, "method=lora"])


SOURCE_CASES = {  # config.json content -> what the one line must name
    "empty": ("", ["is empty", "JSON object"]),
    "a list": ([LLAMA], ["JSON list", "JSON object"]),
    "not JSON": ('{"model_type": "llama", ', ["not valid JSON"]),
    "no model_type": ({k: v for k, v in LLAMA.items() if k != "model_type"}, ["model_type must be one of", "got none"]),
    "unknown model_type": ({**LLAMA, "model_type": "foobar"}, ["model_type must be one of", "llama", "'foobar'"]),
    "negative size": ({**LLAMA, "hidden_size": -4096}, ["hidden_size must be a whole number from 1 to", "-4096"]),
    "zero layers": ({**LLAMA, "num_hidden_layers": 0}, ["num_hidden_layers must be a whole number from 1 to"]),
    "fractional size": ({**LLAMA, "intermediate_size": 11008.5}, ["intermediate_size", "11008.5"]),
    "size as text": ({**LLAMA, "num_attention_heads": "32"}, ["num_attention_heads", "'32'"]),
    "negative vocabulary": ({**LLAMA, "vocab_size": -1}, ["vocab_size must be a whole number"]),
    "huge sizes": ({**LLAMA, "hidden_size": 10**9, "num_hidden_layers": 10**6}, ["hidden_size", "1000000000"]),
    "a million layers": ({**LLAMA, "num_hidden_layers": 10**6}, ["num_hidden_layers must be a whole number from 1 to 512"]),
    "heads that do not group": ({**LLAMA, "num_key_value_heads": 5}, ["num_key_value_heads must divide"]),
    "a folder without config.json": (None, ["folder without config.json"]),
}


def _refused(capsys, argv: list[str], *names: str) -> None:
    start = time.perf_counter()
    assert plan_cli(argv) == 2
    took = time.perf_counter() - start
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert all(n in err for n in names), err
    assert took < REFUSE_WITHIN_S, took


@pytest.mark.parametrize("case", list(SOURCE_CASES))
def test_a_model_config_no_model_can_be_built_from_is_refused_in_one_line(warm_planner, tmp_path, capsys, case):
    content, names = SOURCE_CASES[case]
    source = _folder(tmp_path, content)
    _refused(capsys, ["model=llama", f"model.source={source}", "model.name=x", *LM[1:], "method=lora"],
             f"model.source={source}", *names)


@pytest.mark.parametrize("overrides, names", [
    (["trainer.batch_size=1000000000000"], ["trainer.batch_size must be a whole number from 1 to 65,536"]),
    (["task.max_length=100000000000"], ["task.max_length must be a whole number from 1 to", "max_position_embeddings"]),
    (["trainer.batch_size=0"], ["trainer.batch_size"]),
    (["task.max_length=-5"], ["task.max_length"]),
    (["model.tiny.hidden_size=-8"], ["model.tiny", "hidden_size"]),
    (["model.source=/no/such/folder", "model.tiny=null"], ["no such folder or file"]),
    (["--budget-gib", "-5"], ["--budget-gib must be a positive number", "-5"]),
    (["--budget-gib", "nan"], ["--budget-gib", "nan"]),
    (["--budget-gib", "0"], ["--budget-gib"]),
    (["--no-such-option"], ["unrecognized arguments"]),
])
def test_absurd_settings_and_budgets_are_refused_in_one_line(warm_planner, capsys, overrides, names):
    _refused(capsys, [*TINY, "method=lora", *overrides], *names)


def test_a_batch_and_length_past_what_pytorch_can_index_are_refused(warm_planner, tmp_path, capsys):
    wide = {**LLAMA, "num_attention_heads": 4096, "num_key_value_heads": 4096, "max_position_embeddings": 2**27}
    source = _folder(tmp_path, wide)
    _refused(capsys, ["model=llama", f"model.source={source}", "model.name=x", *LM[1:], "method=lora",
                      "trainer.batch_size=65536", "task.max_length=1000000"], "more than 2**62 elements")


def test_a_config_json_file_and_a_plain_file_as_the_source(warm_planner, tmp_path, capsys):
    path = tmp_path / "llama.json"
    path.write_text(json.dumps({**LLAMA, "num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128,
                                "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 128}))
    assert plan_cli(["model=llama", f"model.source={path}", "model.name=x", *LM[1:], "method=lora"]) == 0
    capsys.readouterr()
    (tmp_path / "notes.txt").write_text("hello")
    _refused(capsys, ["model=llama", f"model.source={tmp_path / 'notes.txt'}", "model.name=x", *LM[1:],
                      "method=lora"], "is a file, not a model")
