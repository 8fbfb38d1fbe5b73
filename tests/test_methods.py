"""Each method trains a few steps on the tiny model and its mechanism is visible."""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from peft.optimizers import lorafa as peft_lorafa
from torch.overrides import TorchFunctionMode
from torch.utils.data import DataLoader, default_collate

from harness.config import ConfigError
from harness.methods import METHODS, MethodSpec, builder_name
from harness.paths import conf_dir
from harness.results import check_row, load
from harness.tasks.types import TASK_TYPES
from harness.training.loop import total_steps, training_loss
from tests.conftest import compose_config
from tests.method_helpers import (CPU, base_model, batch, build, build_config, build_from, method_context, start,
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


def test_full_fine_tuning_saves_tied_embeddings_once(store_path, tmp_path):
    """A model whose output layer shares the input embeddings (tiny Llama, as SmolLM2) saves and
    loads back: the shared tensor once, the file the size of the parameters."""
    from safetensors.torch import load_file, load_model

    from harness.models.load import load_model as load_base

    cfg = build_config(store_path, "method=full", "model=tiny_llama")
    model = load_base(cfg.model, cfg.quant, 0, CPU, causal_lm=True).model
    assert model.lm_head.weight is model.get_input_embeddings().weight
    adapted = build_from(cfg, model)
    size = adapted.save(tmp_path / "full")
    saved = load_file(tmp_path / "full" / "model.safetensors")
    assert sum(v.numel() for v in saved.values()) == adapted.count_parameters()[1]
    assert 4 * adapted.count_parameters()[1] <= size < 4 * adapted.count_parameters()[1] + 2**16
    again = load_base(cfg.model, cfg.quant, 0, CPU, causal_lm=True).model
    load_model(again, tmp_path / "full" / "model.safetensors")
    assert torch.equal(again.lm_head.weight, model.lm_head.weight)


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
        info = METHODS.info(name)  # (a method declared from its source also names its module)
        assert {k: info[k] for k in ("four_bit", "task_types")} == {"four_bit": four_bit,
                                                                     "task_types": spec.task_types}
        assert spec.task_types is None or set(spec.task_types) <= set(TASK_TYPES.names()), name


def test_every_method_config_names_a_registered_builder(store_path):
    names = sorted(p.stem for p in (conf_dir() / "method").glob("*.yaml"))
    assert {"lora", "dora", "qlora", "qdora", "loraplus", "vera"} <= set(names)
    prompt_only = {"zero_shot", "prompt_tuning", "prefix_tuning", "p_tuning"}  # causal-LM prompt tasks
    for name in names:
        where = ["model=tiny_llama", "task=rotten_tomatoes_prompt"] if name in prompt_only else []
        cfg = build_config(store_path, f"method={name}", *where)
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


# --- LoRA-FA: the precision of peft's gradient projection is recorded ----------------------------
class _Matmuls(TorchFunctionMode):
    """The dtype of every matrix product computed inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: list[torch.dtype] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "__name__", "") in ("matmul", "__matmul__"):
            self.dtypes.append(out.dtype)
        return out


@pytest.mark.parametrize("bf16_available", [True, False])
def test_lorafa_records_the_precision_of_peft_s_projection(store_path, monkeypatch, bf16_available):
    monkeypatch.setattr(peft_lorafa, "is_bf16_available", lambda: bf16_available)
    adapted = build(store_path, "method=lorafa")
    recorded = adapted.details()["lorafa_projection_dtype"]
    # peft's rule (LoraFAOptimizer.step): autocast to bfloat16 on infer_device() when
    # is_bf16_available(); a product of tensors on that device type is then computed in bfloat16.
    b = next(p for n, p in adapted.model.named_parameters() if "lora_B" in n)
    on_autocast_device = peft_lorafa.infer_device() == b.device.type
    assert recorded == ("bfloat16" if bf16_available and on_autocast_device else "float32")
    # ... and what peft's step really computes: per adapted layer A·Aᵀ, then the projection.
    optimizer = adapted.make_optimizer()
    adapted.model.train()
    training_loss(adapted, adapted.ctx.task_type, batch(1)).backward()
    with _Matmuls() as seen:
        optimizer.step()
    projections = seen.dtypes[1::2]
    assert projections and {str(d).removeprefix("torch.") for d in projections} == {recorded}
    assert json.loads(json.dumps(adapted.details())) == adapted.details()  # stored as details_json


# --- Delta-LoRA: W moves in a run of the default length -------------------------------------------
def default_run_steps() -> int:
    """The optimizer steps of ``python -m harness`` with its defaults (no data loaded: the task's
    train_size over the trainer's batch size, per epoch)."""
    cfg = compose_config([])
    per_epoch = math.ceil(cfg.task.train_size / cfg.trainer.batch_size)
    return total_steps(per_epoch, cfg.trainer)


def test_delta_lora_moves_the_base_weights_in_a_default_length_run(store_path):
    total = default_run_steps()
    assert total == 64  # the budget the defaults give today; K = 500 steps was never reached
    adapted = build(store_path, "method=delta_lora")  # the default method config, tiny model
    initial = {n: l.get_base_layer().weight.detach().clone() for n, l in adapted.layers.items()}
    train_steps(adapted, total)  # the trainer's order: before_training, steps, after each step
    details = adapted.details()
    k = math.floor(adapted.method.start_ratio * total)
    assert details["delta_lora_start_step"] == k and details["delta_lora_start_from"] == "start_ratio"
    assert details["delta_lora_moved_steps"] == total - k > 0
    for name, layer in adapted.layers.items():
        assert not torch.equal(layer.get_base_layer().weight, initial[name]), name


@pytest.mark.parametrize("overrides,total,k", [
    ([], 1000, 20),  # floor(0.02 x steps)
    ([], 6, 0),  # a short run: W moves from the first step
    (["method.start_ratio=0.5"], 64, 32),
    (["method.start_steps=3"], 1000, 3),  # an explicit K in steps overrides the ratio
])
def test_delta_lora_start_is_set_from_the_run_length(store_path, overrides, total, k):
    adapted = build(store_path, "method=delta_lora", *overrides)
    start(adapted, total)
    assert adapted.details()["delta_lora_start_step"] == k


def test_delta_lora_refuses_a_start_the_run_never_reaches(store_path):
    # trainer=smoke caps at 6 steps, so start_steps=5 passes validation; a 5-step run cannot pass it.
    adapted = build(store_path, "method=delta_lora", "method.start_steps=5")
    with pytest.raises(ConfigError) as err:
        start(adapted, 5)
    assert "method.start_steps=5" in str(err.value) and "\n" not in str(err.value)


# --- The defaults the docs state are the configs' ------------------------------------------------
DOCS = Path(__file__).resolve().parents[1] / "docs"


def stated(text: str):
    """A value as the docs write it: true/false/null, an integer, a number, else the text."""
    text = text.strip()
    if text.lower() in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[text.lower()]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def matches(value, actual) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return not isinstance(actual, bool) and math.isclose(value, actual, rel_tol=1e-9)
    return value == actual and type(value) is type(actual)


def composed_method(name: str) -> dict:
    return OmegaConf.to_container(compose_config([f"method={name}"]).method, resolve=True,
                                  enum_to_str=True)


def table_rows(text: str, header: str) -> list[list[str]]:
    """The body rows (cells stripped) of every markdown table whose header row is ``header``."""
    rows, inside = [], False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and "|".join(cells) == header:
            inside = True
        elif inside and line.startswith("|"):
            if not set(line) <= set("|- "):
                rows.append(cells)
        else:
            inside = False
    return rows


def test_the_methods_docs_table_states_every_methods_composed_defaults():
    rows = table_rows((DOCS / "methods.md").read_text(), "method|lr|other defaults")
    catalogue = (DOCS / "catalogue.md").read_text()
    tuners = table_rows(catalogue, "method|peft type|what trains|4-bit base|merges|defaults|reference")
    baselines = table_rows(catalogue, "baseline|what it is|task types")
    yamls = sorted(p.stem for p in (conf_dir() / "method").glob("*.yaml"))
    documented = ([row[0] for row in rows] + [row[0] for row in tuners]
                  + [re.match(r"`(\w+)`", row[0]).group(1) for row in baselines if row[0].startswith("`")])
    assert sorted(documented) == yamls  # every method, once, in one of the two tables
    for name, _, _, _, _, defaults, _ in tuners:  # a tuner's keywords: its own or in options
        method = composed_method(name)
        for key, value in re.findall(r"`(\w+)=([^`]+)`", defaults):
            options = method.get("options") or {}
            assert matches(stated(value), options[key] if key in options else method[key]), (name, key)
    for name, lr, others in rows:
        method = composed_method(name)
        assert math.isclose(float(lr), method["lr"], rel_tol=1e-9), (name, lr, method["lr"])
        pairs = re.findall(r"`(\w+)=([^`]+)`", others)
        assert pairs, name
        for key, value in pairs:
            assert matches(stated(value), method[key]), (name, key, value, method[key])


def test_the_lora_family_shares_one_learning_rate_no_method_restates():
    lora = composed_method("lora")["lr"]
    # Their papers (or, for AdaLoRA, the default budget) need other rates; the reason and the
    # measurement are in their YAML files and docs/methods.md.
    own = {"vera", "full", "loraplus", "adalora", "prompt_tuning"}
    for path in (conf_dir() / "method").glob("*.yaml"):
        if path.stem in own:
            assert composed_method(path.stem)["lr"] != lora, path.stem
            continue
        assert composed_method(path.stem)["lr"] == lora, path.stem
        assert not re.search(r"^\s*lr\s*:", path.read_text(), flags=re.M) or path.stem == "lora", path


def test_the_custom_methods_docs_tables_state_the_composed_defaults():
    text = (DOCS / "methods_custom.md").read_text()
    sections = re.split(r"^## ", text, flags=re.M)
    checked = set()
    for section in sections:
        name = re.search(r"`method=(\w+)`", section.splitlines()[0] if section else "")
        if not name:
            continue
        method = composed_method(name.group(1))
        for keys, values, _ in table_rows(section, "key|default|meaning"):
            keys = re.findall(r"`(\w+)`", keys)
            values = [v.strip() for v in values.split(",")]
            assert len(keys) == len(values), (keys, values)
            for key, value in zip(keys, values):
                assert matches(stated(value), method[key]), (name.group(1), key, value, method[key])
                checked.add((name.group(1), key))
    assert {("dylora", "frozen"), ("dylora", "lr"), ("lora_drop", "lr"), ("hyperlora", "lr")} <= checked
