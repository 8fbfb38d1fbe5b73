"""Every option of every config group composes and validates; bad values fail with one line."""
from __future__ import annotations

import re

import pytest
from hydra.errors import ConfigCompositionException as HydraCompositionError

from harness.config import ConfigError
from harness.paths import conf_dir
from tests.conftest import compose_config, validate

GROUPS = ["method", "model", "task", "quant", "trainer"]
def options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_validates(group, option):
    overrides = [f"{group}={option}"]
    if group == "quant" and option != "none":
        overrides.append("method=lora")
    text = (conf_dir() / group / f"{option}.yaml").read_text()
    if group == "task" and re.search(r"^task_type: (generation|choice)$", text, re.M):
        overrides.append("model=tiny_llama")  # prompt tasks need a causal LM
    if group == "method" and re.search(r"^(task_types: \[generation|builder: zero_shot$)", text, re.M):
        overrides += ["model=tiny_llama", "task=rotten_tomatoes_prompt"]  # methods for prompt tasks only
    cfg = validate(compose_config(overrides))
    assert group == "trainer" or getattr(cfg, group).name == option


def test_qlora_selects_a_4bit_nf4_base_with_double_quantization():
    cfg = validate(compose_config(["method=qlora"]))
    assert cfg.quant.load_in_4bit and cfg.quant.quant_type.value == "nf4" and cfg.quant.double_quant


def test_sweep_can_cross_methods_and_quantization():
    cfg = validate(compose_config(["method=qlora", "quant=fp4"]))
    assert cfg.method.name == "qlora" and cfg.quant.quant_type.value == "fp4"


@pytest.mark.parametrize("overrides,needle", [
    (["method.r=0"], "method.r must be a positive integer"),
    (["method.r=-4"], "method.r must be a positive integer"),
    (["method=full", "quant=nf4"], "cannot train a 4-bit base"),
    (["method=qlora", "quant=none"], "needs a 4-bit base"),
    (["method.builder=lorra"], "unknown method.builder 'lorra'"),
    (["trainer.epochs=0"], "trainer.epochs must be a positive integer"),
])
def test_bad_values_fail_at_validation_with_one_line(overrides, needle):
    with pytest.raises(ConfigError) as info:
        validate(compose_config(overrides))
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_unknown_method_suggests_the_closest_name():
    with pytest.raises(ConfigError, match="Did you mean 'lora'"):
        validate(compose_config(["method.builder=lorra"]))


@pytest.mark.parametrize("overrides,needle", [
    (["method.rank=8"], "rank"),
    (["trainer.epochs=two"], "epochs"),
    (["quant.quant_type=int3"], "nf4"),
    (["method=lorra"], "lorra"),
])
def test_misspelt_keys_and_bad_types_fail_at_composition(overrides, needle):
    with pytest.raises(HydraCompositionError) as info:
        compose_config(overrides)
    assert needle in str(info.value) + str(info.value.__cause__)
