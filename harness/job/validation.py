"""The one validation step: a composed config becomes checked objects, or one line of error.

The schemas (:mod:`harness.config`) check types and ranges and import no plug-in. Here, once the
plug-ins are loaded, names are checked against their registries and each method's declared
support (4-bit base, task types) is checked against the run.
"""
from __future__ import annotations

from typing import Iterable

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from harness import config
from harness.config import QuantNeed, RunConfig, check
from harness.errors import ConfigError
from harness.job.plugins import load_plugins


def register_schemas(plugins: Iterable[str] = ()) -> None:
    """Load the plug-ins and put every group's schema into Hydra's config store."""
    load_plugins(plugins)
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for group, node in (("method", config.MethodConfig), ("model", config.ModelConfig),
                        ("task", config.TaskConfig), ("quant", config.QuantConfig),
                        ("trainer", config.TrainerConfig), ("tracker", config.TrackerConfig),
                        ("report", config.ReportConfig), ("protocol", config.ProtocolConfig)):
        cs.store(group=group, name=f"{group}_schema", node=node)
    for name, node in config.METHOD_SCHEMAS.items():
        cs.store(group="method", name=f"{name}_schema", node=node)
    for loader, node in config.TASK_SCHEMAS.items():
        cs.store(group="task", name=f"{loader}_schema", node=node)


def check_run(run: RunConfig) -> RunConfig:
    """Names against the registries, and the method's declared support against the run."""
    from harness.methods import METHODS, builder_name
    from harness.tasks import TASK_LOADERS
    from harness.tasks.types import TASK_TYPES
    from harness.tracking import TRACKERS

    method = run.method
    METHODS.check(builder_name(method), key="method.builder" if method.builder else "method.name")
    spec = METHODS.get(builder_name(method))
    subtasks = getattr(run.task, "subtasks", {})
    for task in [run.task, *subtasks.values()]:
        TASK_LOADERS.check(task.loader, key="task.loader")
        TASK_TYPES.check(task.task_type, key="task.task_type")
        check(task.messages_column is None or TASK_TYPES.get(task.task_type).completes_conversations,
              f"task.messages_column trains on each conversation's last assistant turn: set "
              f"task.task_type=generation, got {task.task_type}")
    for name, task in subtasks.items():  # one classification head over the sub-tasks' labels
        check(not TASK_TYPES.get(task.task_type).causal_lm,
              f"task.subtasks.{name}: a multi-task run trains one classification head over its sub-tasks' "
              f"labels; task.task_type={task.task_type} is a prompt task, which it cannot hold")
    TRACKERS.check(run.tracker.name, key="tracker")

    four_bit = run.quant.load_in_4bit
    check(not (method.quant == QuantNeed.required and not four_bit),
          f"method={method.name} needs a 4-bit base: use quant=nf4 or quant=fp4 "
          f"(got quant={run.quant.name})")
    check(not (four_bit and (method.quant == QuantNeed.forbidden or not spec.four_bit)),
          f"method={method.name} cannot train a 4-bit base: use quant=none (got quant={run.quant.name})")
    kind = run.task.task_type
    check(spec.task_types is None or kind in spec.task_types,
          f"method={method.name} does not support task type {kind} (task={run.task.name}); "
          f"supported: {', '.join(spec.task_types or ())}")
    check_language_model(run, spec)
    why = getattr(method, "unshardable", None)
    check(run.trainer.strategy.value != "fsdp" or why is None,
          f"method={method.name} cannot train with trainer.strategy=fsdp: {why}; use trainer.strategy=ddp")
    every = run.fsdp_every_process_loads
    check(run.trainer.fsdp_load.value != "first" or every is None,
          f"trainer.fsdp_load=first cannot be used here: {every}; allowed: auto, every")
    if hasattr(method, "check_run"):  # a method schema's checks that need the rest of the run
        method.check_run(run)
    return run


def check_language_model(run: RunConfig, spec) -> None:
    """Prompt tasks need a causal LM; paged optimizers and float16 weights need CUDA; a method
    that brings its own optimizer takes no other."""
    from harness.device import device_kind
    from harness.tasks.types import TASK_TYPES

    model, trainer = run.model, run.trainer
    for task in [run.task, *getattr(run.task, "subtasks", {}).values()]:
        check(not TASK_TYPES.get(task.task_type).causal_lm or model.causal_lm,
              f"task.task_type={task.task_type} needs a causal language model (model.causal_lm=true, "
              f"e.g. model=smollm2, tiny_llama, llama, qwen, gemma, mistral); model={model.name} is not one")
    optimizer = trainer.optimizer.value
    cuda = device_kind(trainer.device) == "cuda"
    check(cuda or not optimizer.startswith("paged_"),
          f"trainer.optimizer={optimizer} pages optimizer state through CUDA unified memory and "
          f"needs a GPU; on CPU use adamw or adamw_8bit")
    check(cuda or model.dtype.value != "float16",
          "model.dtype=float16 needs a GPU; on CPU use float32 or bfloat16")
    check(optimizer == "adamw" or not spec.own_optimizer,
          f"method={run.method.name} brings its own optimizer; trainer.optimizer must be adamw "
          f"(got {optimizer})")
    check_packing(run)
    check(run.trainer.loss_chunk_tokens is None or TASK_TYPES.get(run.task.task_type).causal_lm,
          f"trainer.loss_chunk_tokens chunks a causal language model's loss over its vocabulary: it needs "
          f"a prompt task (task.task_type generation or choice); got task.task_type={run.task.task_type}")


# peft's prompt learning puts its virtual tokens (or keys and values) before each row: a packed
# row of several examples would have them once.
PROMPT_LEARNING = ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "MULTITASK_PROMPT_TUNING",
                   "ADAPTION_PROMPT", "CPT")


def check_packing(run: RunConfig) -> None:
    """``trainer.packing`` needs a causal-LM prompt task of one task, and a method that adds
    nothing before each row."""
    from harness.tasks.types import TASK_TYPES

    if not run.trainer.packing:
        return
    task = run.task
    check(TASK_TYPES.get(task.task_type).causal_lm and not getattr(task, "subtasks", None),
          f"trainer.packing=true packs the prompt rows of a causal language model: it needs a prompt "
          f"task (task.task_type generation or choice) of one task; got task.task_type={task.task_type}"
          + (" with subtasks" if getattr(task, "subtasks", None) else ""))
    check(str(getattr(run.method, "peft_type", "")).upper() not in PROMPT_LEARNING,
          f"trainer.packing=true cannot serve method={run.method.name}: its virtual tokens go before "
          f"each row, and a packed row holds several; use trainer.packing=false")


def validate(cfg: DictConfig) -> RunConfig:
    """Turn a composed config into checked objects; raises ConfigError with a one-line message."""
    load_plugins(cfg.get("plugins") or [])
    if OmegaConf.get_type(cfg) is not RunConfig:  # built from a plain dict (a protocol's run)
        return from_container(OmegaConf.to_container(cfg, resolve=True))
    refuse_unknown_keys(cfg)
    return check_run(OmegaConf.to_object(cfg))  # runs every schema's __post_init__ first


def refuse_unknown_keys(node: DictConfig, where: str = "") -> None:
    """A key added with ``+`` that no schema declares (``+task.foo=1``): OmegaConf keeps it, but no
    run would read it, and a worker rebuilding the config refuses it; so it is refused here, with
    the keys allowed and the closest. Free-form dict fields (``model.tiny``, ``task.label_words``)
    are not walked."""
    import dataclasses
    import difflib

    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        return
    allowed = {f.name for f in dataclasses.fields(schema)}
    for key in node.keys():
        name = f"{where}.{key}" if where else str(key)
        if key not in allowed and not str(key).startswith("_"):
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.5)
            raise ConfigError(f"unknown key {name!r}: {where or 'the config'} has no setting {key!r}; "
                              f"its settings: {', '.join(sorted(allowed))}."
                              + (f" Did you mean '{close[0]}'?" if close else ""))
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            refuse_unknown_keys(child, name)


def from_container(container: dict) -> RunConfig:
    """Rebuild checked objects from a resolved plain-dict config (as stored with each run)."""
    load_plugins(container.get("plugins") or [])
    method = container.get("method", {})
    schema = config.METHOD_SCHEMAS.get(method.get("name")) or config.METHOD_SCHEMAS.get(
        method.get("builder"), config.MethodConfig)
    task_schema = config.TASK_SCHEMAS.get(container.get("task", {}).get("loader"), config.TaskConfig)
    base = OmegaConf.structured(RunConfig)
    base.method = OmegaConf.structured(schema)
    base.task = OmegaConf.structured(task_schema)
    return check_run(OmegaConf.to_object(OmegaConf.merge(base, container)))
