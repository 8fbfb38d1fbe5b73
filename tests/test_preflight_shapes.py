"""peft's rules on the sizes of the layers a tuner adapts, and on EVA's and CorDA's settings, are
checked before anything trains (harness/models/shapes.py, PeftMethodConfig in
harness/methods/peft_tuner.py): the layer sizes preflight reads from a model's config are the real
model's, each bad value is refused in one line with exit code 2, and each rule is peft's own (the
same value fails, or is changed, when peft builds the tiny model; a value preflight accepts builds).
"""
from __future__ import annotations

import dataclasses
import typing
import warnings
from pathlib import Path

import pytest
import torch

from harness.models import shapes
from harness.errors import ConfigError
from harness.methods.peft_tuner import PeftMethodConfig
from harness.models.load import load_model
from harness.models.sources import resolve_source
from harness.job.validation import validate
from tests.conftest import compose_config
from tests.method_helpers import base_model, build_config, build_from, start
from tests.test_bad_input import run_harness

BASE = ["task=synthetic", "trainer=smoke", "report.enabled=false"]


@pytest.fixture(scope="module", autouse=True)
def _libraries_imported():
    """What the entry point imports before it refuses anything, imported once for every fork."""
    import harness.__main__  # noqa: F401
    from harness.job.plugins import load_plugins

    load_plugins()


# --- the layer sizes, from the config alone ------------------------------------------------------

@pytest.mark.parametrize("model", ["tiny_bert", "tiny_llama", "minilm"])
def test_the_sizes_read_from_the_config_are_the_built_models(model):
    cfg = validate(compose_config([f"model={model}", *BASE]))
    torch.manual_seed(0)
    built = load_model(cfg.model, cfg.quant, 2, torch.device("cpu")).model
    linear = {n: (m.in_features, m.out_features) for n, m in built.named_modules()
              if isinstance(m, torch.nn.Linear) and n.split(".")[-1] not in cfg.model.head_modules}
    config = dict(cfg.model.tiny) if cfg.model.tiny else shapes.model_config(cfg.model.source)
    assert shapes.linear_layers(config) == linear  # every Linear of the body, by name
    targets = cfg.model.target_modules
    expected = {t: {s for n, s in linear.items() if n.split(".")[-1] == t} for t in targets}
    assert shapes.target_shapes(cfg.model, targets) == expected
    assert all(expected.values())


def test_a_gguf_models_sizes_are_those_transformers_reads_from_it():
    from transformers import AutoConfig

    cfg = validate(compose_config(["model=smollm2", *BASE]))
    path = Path(resolve_source(cfg.model.source))
    theirs = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name).to_dict()
    assert shapes.linear_layers(theirs) == shapes.linear_layers(shapes.model_config(cfg.model.source))
    assert shapes.target_shapes(cfg.model, ["k_proj", "down_proj"]) == {"k_proj": {(576, 192)},
                                                                     "down_proj": {(1536, 576)}}


# Hub models' configs (their config.json), as the local hub cache would hold them.
HUB = {"meta-llama/Llama-3.2-1B-Instruct": dict(model_type="llama", hidden_size=2048, intermediate_size=8192,
                                                num_hidden_layers=16, num_attention_heads=32,
                                                num_key_value_heads=8, head_dim=64),
       "Qwen/Qwen2.5-0.5B-Instruct": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864,
                                          num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2),
       "google/gemma-2-2b-it": dict(model_type="gemma2", hidden_size=2304, intermediate_size=9216,
                                    num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                                    head_dim=256),
       "mistralai/Mistral-7B-Instruct-v0.3": dict(model_type="mistral", hidden_size=4096, intermediate_size=14336,
                                                  num_hidden_layers=32, num_attention_heads=32,
                                                  num_key_value_heads=8, head_dim=None)}
RULED = ["boft", "c3a", "fourierft", "gralora", "miss", "oft", "psoft", "road", "shira", "vblora", "waveft"]
TOO_SMALL_ON_TINY_LLAMA = ["c3a", "road", "shira", "vblora", "waveft"]  # its 64x32 k/v projections


def test_a_hub_model_is_checked_from_the_hub_cache_only(monkeypatch, tmp_path):
    import huggingface_hub

    cache = {}
    for repo, config in HUB.items():
        (tmp_path / repo).mkdir(parents=True)
        (tmp_path / repo / "config.json").write_text(__import__("json").dumps(config))
        cache[repo] = str(tmp_path / repo / "config.json")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name, revision=None: cache.get(repo))
    for model in ("llama", "qwen", "gemma", "mistral"):
        for method in RULED:  # every ruled tuner's defaults fit these models' layers
            validate(compose_config([f"model={model}", f"method={method}", *BASE]))
    assert shapes.target_shapes(validate(compose_config(["model=gemma", *BASE])).model, ["o_proj"]) == {
        "o_proj": {(2048, 2304)}}
    cache.clear()  # not in the cache: nothing to check, peft checks when it builds
    assert shapes.target_shapes(validate(compose_config(["model=gemma", *BASE])).model, ["o_proj"]) is None
    assert shapes.linear_layers({"model_type": "gpt2", "hidden_size": 8}) is None


@pytest.mark.parametrize("model", ["tiny_bert", "minilm", "smollm2", "tiny_llama"])
def test_every_ruled_tuners_defaults_pass_where_peft_builds_them(model):
    for method in RULED:
        overrides = [f"model={model}", f"method={method}", *BASE]
        if model == "tiny_llama" and method in TOO_SMALL_ON_TINY_LLAMA:
            with pytest.raises(ConfigError, match=f"^method={method}: .* k_proj of model=tiny_llama has 64 in, 32 out"):
                validate(compose_config(overrides))
        else:
            validate(compose_config(overrides))


# --- each rule: refused in one line, and peft's own -----------------------------------------------

# method, model, the bad setting, what the line says, peft's error at build, a setting that fits
RULES = {
    "c3a": ("tiny_bert", "method.options.block_size=48", "method.options.block_size=48 must divide every adapted "
            "layer's in and out features, and query of model=tiny_bert has 64 in, 64 out features; allowed: "
            "1, 2, 4, 8, 16, 32, 64", "block size should be a factor", "method.options.block_size=32"),
    "c3a default": ("tiny_llama", "method.options.block_size=64", "allowed: 1, 2, 4, 8, 16, 32",
                    "block size should be a factor of the output size", "method.options.block_size=32"),
    "road": ("tiny_bert", "method.options.group_size=48", "method.options.group_size=48 must be even and divide "
             "every adapted layer's out features", "must be divisible by group_size (48)",
             "method.options.group_size=32"),
    "vblora": ("tiny_bert", "method.options.vector_length=48", "method.options.vector_length=48 must divide",
               "must be divisible by `vector_length` 48", "method.options.vector_length=16"),
    "shira": ("tiny_llama", "method.r=22", "method.r=22 must keep r*(in+out) <= in*out on every adapted layer, and "
              "k_proj of model=tiny_llama has 64 in, 32 out features; allowed: 1 to 21",
              "more shira params than the total number", "method.r=21"),
    "waveft": ("tiny_bert", "method.options.n_frequency=4097", "method.options.n_frequency=4097 must be at most "
               "in*out of every adapted layer, and query of model=tiny_bert has 64 in, 64 out features; allowed: "
               "1 to 4096", "`n_frequency` should be less than or equal", "method.options.n_frequency=4096"),
    "fourierft": ("tiny_llama", "method.options.n_frequency=2049", "allowed: 1 to 2048",
                  "`n_frequency` should be less than or equal", "method.options.n_frequency=2048"),
    "gralora": ("tiny_bert", "method.r=48 method.options.gralora_k=3", "method.options.gralora_k=3 must divide "
                "every adapted layer's in and out features, and query of model=tiny_bert has 64 in, 64 out "
                "features; allowed: 1, 2, 4, 8, 16", "in_features should be divisible by gralora_k",
                "method.r=48 method.options.gralora_k=4"),
    "gralora r": ("tiny_bert", "method.options.gralora_k=3", "method.options.gralora_k=3 must divide method.r=32 "
                  "(peft's GraloraConfig); divisors of r: 1, 2, 4, 8, 16, 32", "r should be divisible by gralora_k",
                  "method.options.gralora_k=4"),
    "boft": ("tiny_bert", "method.options.boft_block_size=48", "method.options.boft_block_size=48 must divide "
             "every adapted layer's in features", "must be divisible by boft_block_size (48)",
             "method.options.boft_block_size=16"),
    "boft butterfly": ("tiny_bert", "method.options.boft_block_size=32 method.options.boft_n_butterfly_factor=3",
                       "boft_block_size=32 times 2^2 (boft_n_butterfly_factor=3) must divide every adapted layer's "
                       "in features, and it must be even", "Invalid combination of in_features (64)",
                       "method.options.boft_block_size=16 method.options.boft_n_butterfly_factor=3"),
    "miss": ("tiny_llama", "method.r=65", "method.r=65 must be at most every adapted layer's in features",
             "must be less than or equal to in_features (64)", "method.r=64"),
    "miss bat": ("tiny_bert", "method.r=48 +method.options.init_weights=bat", "method.r=48 must divide every "
                 "adapted layer's in and out features", "fully divisible into [r, r] blocks",
                 "method.r=32 +method.options.init_weights=bat"),
    "miss mini": ("tiny_bert", "method.r=8 +method.options.init_weights=mini +method.options.mini_r=3",
                  "method.options.mini_r=3 must divide every adapted layer's out features",
                  "mini_r is divided along the out_features",
                  "method.r=8 +method.options.init_weights=mini +method.options.mini_r=4"),
    "psoft": ("tiny_llama", "method.r=33", "method.r=33 must be at most every adapted layer's smaller size",
              "must be less than or equal to min(in_features, out_features)", "method.r=32"),
}


def _built(cfg) -> str | None:
    """Build ``cfg``'s tuner with peft on the tiny model: peft's error, or None."""
    from peft.tuners.boft import layer as boft_layer

    saved = boft_layer._FBD_CUDA
    boft_layer._FBD_CUDA = saved or object()  # BOFT's butterfly factor as on a GPU with its kernel
    try:
        build_from(cfg, base_model(cfg))
    except ValueError as exc:
        return str(exc)
    finally:
        boft_layer._FBD_CUDA = saved
    return None


def _unchecked(model: str, method: str, settings: str, valid: str = ""):
    """The run's config (with ``valid`` settings) and ``settings`` set after validation: what a run
    built without this check would hand peft."""
    cfg = validate(compose_config([f"model={model}", f"method={method}", *valid.split(), *BASE]))
    for setting in settings.split():
        key, value = setting.lstrip("+").removeprefix("method.").split("=")
        target, name = (cfg.method.options, key.removeprefix("options.")) if key.startswith("options.") \
            else (cfg.method.__dict__, key)
        target[name] = int(value) if value.isdigit() else value
    return cfg


@pytest.mark.parametrize("case", list(RULES))
def test_a_layer_size_rule_is_refused_in_one_line_and_is_peft_s(case, tmp_path):
    method = case.split()[0]
    model, bad, line, peft_error, good = RULES[case]
    store = tmp_path / "results.sqlite"
    ran = run_harness([f"model={model}", f"method={method}", *bad.split(), *BASE, f"store.url={store}"], tmp_path)
    assert ran.code == 2 and len(ran.err_lines) == 1, ran.err
    assert ran.err_lines[0].startswith(f"error: method={method}: ") and line in ran.err_lines[0], ran.err
    assert not store.exists() and not (tmp_path / "outputs").exists()
    # peft refuses the same value when it builds the model ...
    assert peft_error in (_built(_unchecked(model, method, bad, valid=good)) or "")
    # ... and builds a value preflight accepts
    assert _built(validate(compose_config([f"model={model}", f"method={method}", *good.split(), *BASE]))) is None


def test_an_oft_block_size_peft_would_change_is_refused(tmp_path):
    """OFT does not fail: peft trains another block size than the config records, with a warning."""
    store = tmp_path / "results.sqlite"
    ran = run_harness(["model=tiny_bert", "method=oft", "method.options.oft_block_size=48", *BASE,
                       f"store.url={store}"], tmp_path)
    assert ran.code == 2 and len(ran.err_lines) == 1 and not store.exists(), ran.err
    assert ("method=oft: method.options.oft_block_size=48 must divide every adapted layer's in features (peft "
            "would change it to a nearby divisor), and query of model=tiny_bert has 64 in, 64 out features; "
            "allowed: 1, 2, 4, 8, 16, 32, 64") in ran.err_lines[0]
    for size in (48, 32):  # 48: peft trains 32 instead (its nearest divisor), with a warning
        cfg = _unchecked("tiny_bert", "oft", f"options.oft_block_size={size}")
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            adapted = build_from(cfg, base_model(cfg))
        sizes = {m.oft_block_size["default"] for m in adapted.model.modules() if hasattr(m, "oft_block_size")}
        assert sizes == {32}
        assert any("Invalid `oft_block_size` (48)! Adjusted `oft_block_size` to (32)" in str(w.message)
                   for w in seen) == (size == 48)


def test_the_rules_defaults_are_peft_s():
    from peft import PeftType
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    for peft_type, rules in PeftMethodConfig.LAYER_RULES.items():
        fields = {f.name: f.default for f in dataclasses.fields(PEFT_TYPE_TO_CONFIG_MAPPING[PeftType[peft_type]])}
        for option, default, kind, when in rules:
            assert fields[option] == default, (peft_type, option)
            assert kind in shapes.RULES and (when is None or when[0] in fields)


# --- EVA and CorDA --------------------------------------------------------------------------------

INIT_CASES = {  # method, bad setting, what the line says, peft's sub-config and its kwargs (None: harness-own)
    "eva rho": ("eva", "method.options.eva_config.rho=0.5", "method.options.eva_config.rho must be a number >= 1.0 "
                "(peft's EvaConfig), got 0.5", ("eva", {"rho": 0.5}, "`rho` must be >= 1.0")),
    "eva tau": ("eva", "method.options.eva_config.tau=1.5", "method.options.eva_config.tau must be a number in "
                "[0.0, 1.0] (peft's EvaConfig), got 1.5", ("eva", {"tau": 1.5}, "`tau` must be between")),
    "eva tau < 0": ("eva", "method.options.eva_config.tau=-0.1", "got -0.1",
                    ("eva", {"tau": -0.1}, "`tau` must be between")),
    "eva key": ("eva", "+method.options.eva_config.rhoo=2", "method.options.eva_config has no setting rhoo (peft's "
                "EvaConfig); allowed: rho, tau,", ("eva", {"rhoo": 2}, "unexpected keyword argument 'rhoo'")),
    "corda key": ("corda", "+method.options.corda_config.method=kpm", "method.options.corda_config has no setting "
                  "method (peft's CordaConfig)", ("corda", {"method": "kpm"}, "unexpected keyword argument 'method'")),
    "corda mode": ("corda", "method.options.corda_config.corda_method=xyz", "method.options.corda_config."
                   "corda_method must be ipm or kpm, got 'xyz'", None),
    "calibration": ("corda", "method.options.calibration=0", "method.options.calibration must be a positive "
                    "integer, got 0", None),
    "max_batches": ("eva", "method.options.max_batches=-1", "method.options.max_batches must be a positive "
                    "integer, got -1", None),
}


@pytest.mark.parametrize("case", list(INIT_CASES))
def test_a_bad_eva_or_corda_setting_is_refused_in_one_line_as_peft_refuses_it(case, tmp_path):
    from peft.tuners.lora.config import CordaConfig, EvaConfig

    method, bad, line, peft_side = INIT_CASES[case]
    store = tmp_path / "results.sqlite"
    ran = run_harness(["model=tiny_bert", f"method={method}", bad, *BASE, f"store.url={store}"], tmp_path)
    assert ran.code == 2 and len(ran.err_lines) == 1 and line in ran.err_lines[0], ran.err
    assert not store.exists() and not (tmp_path / "outputs").exists()
    if peft_side:
        which, kwargs, message = peft_side
        with pytest.raises((ValueError, TypeError), match=message.replace("[", r"\[")):
            (EvaConfig if which == "eva" else CordaConfig)(**kwargs)


def test_a_corda_mode_other_than_ipm_or_kpm_fails_in_peft_when_the_run_starts(store_path):
    from peft.tuners.lora.config import CordaConfig

    assert typing.get_args(typing.get_type_hints(CordaConfig)["corda_method"]) == ("ipm", "kpm")
    cfg = build_config(store_path, "method=corda", "method.options.calibration=2")
    cfg.method.options["corda_config"]["corda_method"] = "xyz"  # past the check: as a run would get it
    adapted = build_from(cfg, base_model(cfg))
    with pytest.raises(ValueError, match="Invalid corda_method found: xyz"):
        start(adapted, 1)


def test_the_eva_and_corda_settings_are_peft_s():
    from peft.tuners.lora.config import CordaConfig, EvaConfig

    assert PeftMethodConfig.EVA_FIELDS == tuple(f.name for f in dataclasses.fields(EvaConfig))
    assert PeftMethodConfig.CORDA_FIELDS == tuple(f.name for f in dataclasses.fields(CordaConfig))
    assert (EvaConfig().rho, EvaConfig().tau) == (2.0, 0.99)  # the defaults the check assumes
    for good in ({"rho": 1.0, "tau": 0.0}, {"rho": 3, "tau": 1.0}):
        EvaConfig(**good)
        PeftMethodConfig(name="eva", options={"init_lora_weights": "eva", "eva_config": good})
