"""Any of peft's tuners by its peft type: one builder for the catalogue (``builder: peft``).

A method config names the tuner (``peft_type``, a name of ``peft.PeftType``: IA3, LOHA, OFT...)
and its settings (``options``: keyword arguments of the tuner's config class, set in the
method's YAML from its paper and peft's defaults). The run decides the rest, as for every
method: the target modules (``targets``: the model's linear layers, its normalization layers, or
peft's own default for the model type), the new head trained in full, the seed of any random
projection (``seed_option``) and, where the tuner has them, rank, alpha and dropout from
``method.r``/``alpha``/``dropout`` (``rank_option`` etc. name the tuner's keyword). What a tuner
supports is declared in its YAML and checked before anything trains: a 4-bit base
(``quant: forbidden`` where peft's layers do not wrap bitsandbytes' Linear4bit), task types
(``task_types``) and model families (``families``, for tuners that take peft's per-model
defaults).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from harness.config import MethodConfig, check, register_method_schema
from harness.methods.spec import register_method

@dataclass
class PeftMethodConfig(MethodConfig):
    peft_type: str = "LORA"
    options: dict[str, Any] = field(default_factory=dict)
    rank_option: Optional[str] = "r"  # the tuner's keyword for method.r; null: it has no rank
    alpha_option: Optional[str] = None
    dropout_option: Optional[str] = None
    seed_option: Optional[str] = None  # the tuner's keyword for the seed of its random parts
    targets: str = "model"  # model | norms | peft | none (soft prompts: no layer is adapted)
    mergeable: bool = True  # peft can fold the trained tuner into the base weights
    merge_on_4bit: bool = True  # ... into a 4-bit base too (re-quantizing the sum)
    task_types: Optional[list[str]] = None  # null: every task type
    families: Optional[list[str]] = None  # model families it applies to; null: any
    reference: str = ""

    # peft's rules on the sizes of the layers a tuner adapts, which peft checks only when it builds
    # the model (peft/tuners/<name>/layer.py): (option, peft's default, harness.models.shapes.RULES kind,
    # the (option, value) it applies under, if any). Checked before training by check_layers.
    LAYER_RULES = {
        "C3A": [("block_size", 256, "in_out", None)],  # c3a/layer.py: update_layer
        "ROAD": [("group_size", 64, "out_even", None)],  # road/config.py __post_init__, road/layer.py
        "VBLORA": [("vector_length", 256, "in_out", None)],  # vblora/layer.py: update_layer
        "GRALORA": [("gralora_k", 2, "in_out", None)],  # gralora/layer.py: update_layer
        "SHIRA": [("r", 32, "shira", None)],  # shira/layer.py: update_layer
        "WAVEFT": [("n_frequency", 2592, "in_times_out", None)],  # waveft/layer.py
        "FOURIERFT": [("n_frequency", 1000, "in_times_out", None)],  # fourierft/layer.py
        "OFT": [("oft_block_size", 32, "in", None), ("r", 0, "in", None)],  # oft/layer.py (adjusted)
        "BOFT": [("boft_block_size", 4, "boft_size", None), ("boft_block_num", 0, "boft_num", None)],
        "MISS": [("r", 64, "at_most_in", None), ("r", 64, "in_out", ("init_weights", "bat")),
                 ("mini_r", 1, "out", ("init_weights", "mini"))],  # miss/layer.py: update_layer
        "PSOFT": [("r", 32, "at_most_min", None)],  # psoft/layer.py: update_layer
    }
    # the fields of peft's EvaConfig and CordaConfig (peft/tuners/lora/config.py)
    EVA_FIELDS = ("rho", "tau", "use_label_mask", "label_mask_value", "whiten", "adjust_scaling_factors")
    CORDA_FIELDS = ("cache_file", "covariance_file", "corda_method", "verbose", "use_float16_for_covariance",
                    "prune_temporary_fields")

    @property
    def ranked(self) -> bool:
        return self.rank_option is not None

    @property
    def reads_data_before_training(self) -> bool:
        return self.options.get("init_lora_weights") in ("eva", "corda")  # harness/methods/lora_inits.py

    @property
    def unshardable(self) -> Optional[str]:
        shared = ("VBLORA", "UNILORA", "TINYLORA", "LILY")  # literal: the schema is built from source
        if self.peft_type in shared:
            return "it trains tensors that several layers share, which FSDP cannot shard with one layer's block"
        if self.peft_type == "BOFT":
            return "peft's BOFT aborts (SIGABRT) under FSDP2 as of peft 0.21"
        if self.peft_type == "OSF":
            return ("its gradient hooks project against the frozen singular vectors, which FSDP splits "
                    "over the processes")
        return None

    def __post_init__(self) -> None:
        super().__post_init__()
        # (literal: the schema is built from this class's source); none: a soft prompt, no layer
        targets = ("model", "norms", "peft", "none")
        check(self.targets in targets,
              f"method.targets must be one of {', '.join(targets)}; got {self.targets!r}")
        check(not self.use_dora or self.peft_type == "LORA",
              f"method={self.name} has no DoRA variant: set method.use_dora=false")
        reserved = {"target_modules", "modules_to_save", "task_type"} & set(self.options)
        check(not reserved, f"method.options may not set {', '.join(sorted(reserved))}: the run "
                            "decides them (method.targets, the model's head, the task)")
        k = self.options.get("gralora_k", 2)  # gralora/config.py: __post_init__
        check(self.peft_type != "GRALORA" or not isinstance(k, int) or k <= 0 or self.r % k == 0,
              f"method={self.name}: method.options.gralora_k={k} must divide method.r={self.r} (peft's "
              f"GraloraConfig); divisors of r: {', '.join(str(d) for d in range(1, self.r + 1) if self.r % d == 0)}")
        self.check_init_options()

    def check_init_options(self) -> None:
        """What peft's EvaConfig and CordaConfig refuse when the run builds (unknown keys, rho < 1,
        tau outside [0, 1], a CorDA mode other than ipm/kpm), and the harness's own settings of
        those inits (harness/methods/lora_inits.py split_options): refused here in one line."""
        o, key = self.options, "method.options"
        for sub, fields in (("eva_config", self.EVA_FIELDS), ("corda_config", self.CORDA_FIELDS)):
            given = o.get(sub, {})
            check(isinstance(given, dict), f"{key}.{sub} must be a mapping of {', '.join(fields)}; got {given!r}")
            unknown = sorted(set(given) - set(fields))
            check(not unknown, f"{key}.{sub} has no setting {', '.join(unknown)} (peft's "
                               f"{sub.split('_')[0].capitalize()}Config); allowed: {', '.join(fields)}")
        eva, corda = o.get("eva_config", {}), o.get("corda_config", {})
        rho, tau = eva.get("rho", 2.0), eva.get("tau", 0.99)
        number = (int, float)
        check(isinstance(rho, number) and not isinstance(rho, bool) and rho >= 1.0,
              f"{key}.eva_config.rho must be a number >= 1.0 (peft's EvaConfig), got {rho!r}")
        check(isinstance(tau, number) and not isinstance(tau, bool) and 0.0 <= tau <= 1.0,
              f"{key}.eva_config.tau must be a number in [0.0, 1.0] (peft's EvaConfig), got {tau!r}")
        mode = corda.get("corda_method", "ipm")
        check(mode in ("ipm", "kpm"), f"{key}.corda_config.corda_method must be ipm or kpm, got {mode!r}")
        own = {"calibration": o.get("calibration", 256), "max_batches": o.get("max_batches", 100),
               "loftq_config.loftq_iter": (o.get("loftq_config") or {}).get("loftq_iter", 1)}
        for name, value in own.items():
            check(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                  f"{key}.{name} must be a positive integer, got {value!r}")

    def check_run(self, run) -> None:
        kind = run.task.task_type
        check(self.task_types is None or kind in self.task_types,
              f"method={self.name} does not support task type {kind} (task={run.task.name}); "
              f"supported: {', '.join(self.task_types or ())}")
        check(self.families is None or run.model.family in self.families,
              f"method={self.name} cannot be applied to model family {run.model.family} "
              f"(model={run.model.name}); supported: {', '.join(self.families or ())}")
        check(self.targets != "norms" or bool(run.model.norm_modules),
              f"method={self.name} trains normalization layers and model={run.model.name} names "
              "none: set model.norm_modules")
        self.check_layers(run)

    def check_layers(self, run) -> None:
        """LAYER_RULES against the sizes of the layers this run adapts, read from the model's config
        (harness/models/shapes.py; a model whose config is not on disk is left to peft, at build time)."""
        from harness.models import shapes

        if self.targets == "model" and self.peft_type in self.LAYER_RULES:
            shapes.check_rules(self, self.LAYER_RULES[self.peft_type], run.model,
                               self.target_modules or run.model.target_modules)


register_method_schema("peft", PeftMethodConfig)


def peft_config(m: PeftMethodConfig, ctx):
    """The tuner's peft config for this run."""
    from peft import PeftType
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    if m.peft_type not in PeftType.__members__:
        raise ValueError(f"method.peft_type={m.peft_type!r} is not a tuner of the installed peft; "
                         f"allowed: {', '.join(PeftType.__members__)}")
    from harness.methods.lora_inits import split_options

    kwargs = split_options(m.options)[1]  # EVA, CorDA, LoftQ: the init runs in build() below
    for option, value in ((m.rank_option, m.r), (m.alpha_option, m.alpha),
                          (m.dropout_option, m.dropout), (m.seed_option, int(ctx.seed))):
        if option:
            kwargs[option] = value
    if m.targets == "model":
        kwargs["target_modules"] = list(ctx.target_modules)
    elif m.targets == "norms":
        kwargs["target_modules"] = list(ctx.norm_modules)
    if ctx.head_modules and m.targets != "none":
        kwargs["modules_to_save"] = list(ctx.head_modules)
    if m.use_dora:
        kwargs["use_dora"] = True
    return PEFT_TYPE_TO_CONFIG_MAPPING[PeftType[m.peft_type]](task_type=ctx.task_type.peft_task_type, **kwargs)


@register_method("peft", four_bit=True)
def build(model, m: PeftMethodConfig, ctx):
    from peft import get_peft_model

    from harness.methods import lora_inits
    from harness.methods.lora import PeftAdapted, prepare_base

    init, _, own = lora_inits.split_options(m.options) if m.peft_type == "LORA" else (None, {}, {})

    class TunerAdapted(PeftAdapted):
        facts: dict = {}

        def before_training(self, start) -> None:
            # EVA and CorDA read training data (harness/methods/lora_inits.py)
            if init == "eva":
                self.facts = lora_inits.eva(self.model, ctx.task_type, start.train_batches,
                                            own["max_batches"], ctx.seed)
            elif init == "corda":
                self.facts = lora_inits.corda(self.model, ctx.task_type, start.train_batches,
                                              own["corda_config"], own["calibration"], ctx.seed,
                                              start.device)

        def details(self) -> dict:
            return {init: self.facts} if init else {}

        def merge(self) -> bool:
            if not m.mergeable or (ctx.four_bit and not m.merge_on_4bit):
                return False  # latency is then timed unmerged only
            return super().merge()

    adapted = TunerAdapted(get_peft_model(prepare_base(model, ctx), peft_config(m, ctx)), m, ctx)
    if init == "loftq" and ctx.four_bit:  # LoftQ reads the full-precision weights, not data: at build time
        adapted.facts = lora_inits.loftq(adapted.model, own["loftq_iter"])
    return adapted
