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

from harness.config import MethodConfig, _check, register_method_schema
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

    @property
    def ranked(self) -> bool:
        return self.rank_option is not None

    def __post_init__(self) -> None:
        super().__post_init__()
        # (literal: the schema is built from this class's source); none: a soft prompt, no layer
        targets = ("model", "norms", "peft", "none")
        _check(self.targets in targets,
               f"method.targets must be one of {', '.join(targets)}; got {self.targets!r}")
        _check(not self.use_dora or self.peft_type == "LORA",
               f"method={self.name} has no DoRA variant: set method.use_dora=false")
        reserved = {"target_modules", "modules_to_save", "task_type"} & set(self.options)
        _check(not reserved, f"method.options may not set {', '.join(sorted(reserved))}: the run "
                             "decides them (method.targets, the model's head, the task)")

    def check_run(self, run) -> None:
        kind = run.task.task_type
        _check(self.task_types is None or kind in self.task_types,
               f"method={self.name} does not support task type {kind} (task={run.task.name}); "
               f"supported: {', '.join(self.task_types or ())}")
        _check(self.families is None or run.model.family in self.families,
               f"method={self.name} cannot be applied to model family {run.model.family} "
               f"(model={run.model.name}); supported: {', '.join(self.families or ())}")
        _check(self.targets != "norms" or bool(run.model.norm_modules),
               f"method={self.name} trains normalization layers and model={run.model.name} names "
               "none: set model.norm_modules")


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
