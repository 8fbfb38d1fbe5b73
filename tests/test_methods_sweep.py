"""The added methods run in one sweep and record the trainable counts their formulas give."""
from __future__ import annotations

import json

import pytest

from harness.config import ConfigError
from harness.results import load
from harness.job.runner import run_job
from harness.job.validation import validate
from tests.conftest import tiny_config
from tests.method_helpers import build_config, expected_trainable

ADDED = ["adalora", "vera", "loraplus", "lorafa", "delta_lora", "double_lora"]


def test_added_methods_finish_in_one_sweep_with_formula_parameter_counts(store_path):
    for method in ADDED:
        run_job(tiny_config(store_path, f"method={method}", "store.sweep=methods"))
    runs = load(store_path, decode=False).set_index("method")
    assert set(runs.index) == set(ADDED)
    failed = runs[runs["status"] != "finished"]
    assert failed.empty, failed["error"].to_dict()
    for method in ADDED:
        assert runs.loc[method, "trainable_params"] == expected_trainable(
            build_config(store_path, f"method={method}")), method
    adalora = json.loads(runs.loc["adalora", "details_json"])
    assert sum(adalora["adalora_final_ranks"].values()) == adalora["adalora_target_budget"]


@pytest.mark.parametrize("overrides,message", [
    (["method=adalora", "method.use_dora=true"], "method=adalora cannot use DoRA"),
    (["method=delta_lora", "quant=nf4"], "method=delta_lora cannot train a 4-bit base"),
    # 4-bit support is declared by the method's code (four_bit=False), not by method.quant
    (["method=delta_lora", "quant=nf4", "method.quant=any"], "method=delta_lora cannot train a 4-bit base"),
    (["method=dylora", "quant=nf4"], "method=dylora cannot train a 4-bit base"),
    (["method=lora_drop", "quant=nf4"], "method=lora_drop cannot train a 4-bit base"),
    (["method=hyperlora", "quant=nf4"], "method=hyperlora cannot train a 4-bit base"),
    (["method=full", "quant=nf4"], "method=full cannot train a 4-bit base"),
    (["method=qlora", "quant=none"], "method=qlora needs a 4-bit base"),
    (["method=adalora", "method.init_r=4"], "method.init_r must be > method.r"),
    (["method=adalora", "method.init_r=8"], "method.init_r must be > method.r"),  # peft's allocator crashes
    (["method=loraplus", "method.lr_ratio=0.5"], "method.lr_ratio"),
])
def test_impossible_combinations_fail_at_validation_with_one_line(store_path, overrides, message):
    with pytest.raises(ConfigError) as err:
        build_config(store_path, *overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


# Settings a method would silently ignore (while the stored config says otherwise) or crash on
# inside peft: refused by the method's schema, in one line naming the key and the allowed value.
@pytest.mark.parametrize("overrides,key,allowed", [
    (["method=lorafa", "method.use_dora=true"], "method.use_dora", "method.use_dora=false"),
    (["method=dylora", "method.use_dora=true"], "method.use_dora", "method.use_dora=false"),
    (["method=lora_drop", "method.use_dora=true"], "method.use_dora", "method.use_dora=false"),
    (["method=hyperlora", "method.use_dora=true"], "method.use_dora", "method.use_dora=false"),
    (["method=delta_lora", "method.dropout=0.1"], "method.dropout", "method.dropout=0"),
    # a start W would never reach (trainer=smoke: 6 steps)
    (["method=delta_lora", "method.start_steps=6"], "method.start_steps", "method.start_steps=null"),
    (["method=delta_lora", "method.start_ratio=1"], "method.start_ratio", "[0, 1)"),
])
def test_ignored_or_crashing_settings_are_refused_at_validation(store_path, overrides, key, allowed):
    cfg = tiny_config(store_path, *overrides)  # composes: the schema takes the value
    with pytest.raises(ConfigError) as err:  # the CLI's exit 2 (harness.__main__.BAD_INPUT)
        validate(cfg)
    message = str(err.value)
    assert key in message and allowed in message and "\n" not in message, message
