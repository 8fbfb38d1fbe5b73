"""Every column of the runs table, declared once: its type, unit, direction and where it is shown.

The store's columns, the report's ``METRICS``, ``harness.tasks.scoring.metrics.HIGHER_IS_BETTER``, the terminal
comparison table, ``python -m harness.results list``, ``trainer.select_metric`` and the training
loop's "is this epoch better" all read :data:`FIELDS`.

Adding a recorded metric is one :func:`declare` call here plus the code that measures it (the run
returns it among its fields). A store created before gains the new column on its next write and
older runs read back empty there, so an added nullable column needs no new schema version.

Standard library only: config validation and preflight import this module.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping, Sequence

from harness.errors import UnknownNameError

TYPES: dict[str, tuple[type, ...]] = {"text": (str,), "integer": (int,), "real": (float,), "bool": (bool, int)}
MIB = 2**20


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # "text" | "integer" | "real" | "bool": see TYPES (None is allowed unless required)
    unit: str = ""  # "bytes", "s", "ms", "samples/s", "%", "" ...
    higher_is_better: bool | None = None  # None: not a metric (identity, provenance, counts)
    aggregate: str | None = None  # how runs of one configuration combine in reports: "mean" | None
    required: bool = False  # a row without it is refused
    key: bool = False  # the row's unique identity (run_id)
    choices: tuple[str, ...] = ()  # the only values allowed, if any (status)
    terminal: str | None = None  # header in the terminal comparison table (None: not shown)
    report: str | None = None  # label in report tables/plots (None: not shown)
    report_scale: float = 1.0  # divides the stored value where it is shown (bytes -> MiB)
    report_name: str | None = None  # column name after scaling, e.g. "peak_memory_mib"
    digits: int = 4  # significant digits when printed in reports
    quality: bool = False  # a task-quality metric (reference findings, default claims)
    selectable: bool = False  # may be trainer.select_metric (validation metrics)
    listed: bool = False  # shown by `python -m harness.results list`
    doc: str = ""

    def __post_init__(self) -> None:
        if self.report is not None and self.aggregate is None:
            object.__setattr__(self, "aggregate", "mean")  # a report metric is aggregated over seeds
        metric_only = [k for k in ("aggregate", "report", "quality", "selectable") if getattr(self, k)]
        problems = [
            (not self.name.isidentifier(), "its name must be an identifier"),
            (self.type not in TYPES, f"type must be one of {', '.join(TYPES)}, got {self.type!r}"),
            (self.aggregate not in (None, "mean"), "aggregate must be 'mean' or None"),
            (bool(metric_only) and self.higher_is_better is None,
             f"{', '.join(metric_only)} need(s) higher_is_better (True or False)"),
            ((self.aggregate or self.selectable) and self.type not in ("integer", "real"),
             "a metric must be integer or real"),
            (self.report_scale <= 0, "report_scale must be positive"),
            (self.report_scale != 1.0 and not self.report_name,
             "a scaled field needs report_name (the column name after scaling)"),
        ]
        if any(bad for bad, _ in problems):
            raise ValueError(f"field {self.name!r}: {'; '.join(m for bad, m in problems if bad)}")

    @property
    def display_name(self) -> str:
        """The column holding the value as shown (scaled by ``report_scale``)."""
        return self.report_name or self.name


_FIELDS: dict[str, Field] = {}
FIELDS: Mapping[str, Field] = MappingProxyType(_FIELDS)  # read-only view; table order
_version = 0  # bumped on every change, so that derived views know to rebuild


def declare(field: Field | None = None, /, **spec: Any) -> Field:
    """Add a column to the runs table: ``declare(Field(...))`` or ``declare(name=..., ...)``;
    ValueError if a column of that name (or shown name) is already declared."""
    global _version
    field = field if field is not None else Field(**spec)
    if field.name in _FIELDS:
        raise ValueError(f"result field {field.name!r} is declared twice")
    shown = {f.display_name for f in _FIELDS.values()} | set(_FIELDS)
    if field.report_name and field.report_name in shown:
        raise ValueError(f"result field {field.name!r}: report_name {field.report_name!r} is taken")
    _FIELDS[field.name] = field
    _version += 1
    return field


def remove(name: str) -> Field:
    """Take a declared column out again (tests that declare their own); returns it."""
    global _version
    field = get(name)
    del _FIELDS[name]
    _version += 1
    return field


def get(name: str) -> Field:
    """The declaration of ``name``; UnknownNameError (a KeyError) naming a close match if none."""
    if name not in _FIELDS:
        close = difflib.get_close_matches(str(name), list(_FIELDS), n=1, cutoff=0.6)
        raise UnknownNameError(f"unknown result field '{name}'"
                               + (f"; did you mean '{close[0]}'?" if close else ""))
    return _FIELDS[name]


def higher_is_better(name: str) -> bool:
    """Whether a larger value of metric ``name`` is better; ValueError if it is not a metric."""
    field = get(name)
    if field.higher_is_better is None:
        raise ValueError(f"result field '{name}' is not a metric (it has no direction)")
    return field.higher_is_better


def better(name: str, new: float, old: float | None) -> bool:
    """Whether ``new`` beats ``old`` on metric ``name`` (anything beats ``old=None``)."""
    if old is None:
        return True
    return new > old if higher_is_better(name) else new < old


def metric_directions() -> dict[str, bool]:
    """{metric: higher is better} for every declared metric, in table order."""
    return {f.name: f.higher_is_better for f in _FIELDS.values() if f.higher_is_better is not None}


def selectable_metrics() -> list[str]:
    """The values ``trainer.select_metric`` may take, in table order."""
    return [f.name for f in _FIELDS.values() if f.selectable]


def terminal_columns() -> list[tuple[str, str]]:
    """(shown name, header) of the terminal table: peak_memory_mib, see with_display_columns."""
    return [(f.display_name, f.terminal) for f in _FIELDS.values() if f.terminal]


def with_display_columns(frame):
    """Add each scaled field of DataFrame ``frame`` under its shown name (peak_memory_mib)."""
    for f in _FIELDS.values():
        if f.report_name and f.name in frame.columns:
            frame[f.report_name] = frame[f.name] / f.report_scale
    return frame


def report_metrics() -> list[Field]:
    """The metrics report tables and plots show, in table order."""
    return [f for f in _FIELDS.values() if f.report]


def aggregated_fields() -> list[Field]:
    """Every field reports aggregate over seeds: the report metrics, then the rest."""
    shown = report_metrics()
    return shown + [f for f in _FIELDS.values() if f.aggregate and f not in shown]


def listed_columns() -> list[str]:
    """Columns ``python -m harness.results list`` shows, in table order."""
    return [f.name for f in _FIELDS.values() if f.listed]


class _Live:
    """Rebuilt on a change of FIELDS: constants such as HIGHER_IS_BETTER see later declarations."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build, self._data, self._at = build, None, -1

    def _current(self):
        if self._at != _version:
            self._data, self._at = self._build(), _version
        return self._data

    def __getitem__(self, key):
        return self._current()[key]

    def __len__(self) -> int:
        return len(self._current())

    def __iter__(self) -> Iterator:
        return iter(self._current())


class LiveMapping(_Live, Mapping):
    """A read-only dict derived from the fields."""


class LiveList(_Live, Sequence):
    """A read-only list derived from the fields (a slice is a plain list)."""


# The runs table, in order. Identity first, then metrics, then data sizes and provenance.
for _f in [
    Field("run_id", "text", required=True, key=True, doc="unique id of the run (uuid4 hex)"),
    Field("sweep", "text", doc="store.sweep, or Hydra's sweep/run dir"),
    Field("created_at", "text", required=True, listed=True, doc="UTC ISO time the run started"),
    Field("status", "text", required=True, choices=("finished", "failed"), listed=True),
    Field("error", "text", listed=True, doc="first line of the error of a failed run"),
    Field("method", "text", required=True, terminal="method", listed=True),
    Field("model", "text", required=True, listed=True), Field("task", "text", required=True, listed=True),
    Field("quant", "text", required=True, terminal="quant", listed=True),
    Field("r", "integer", terminal="r", listed=True, doc="adapter rank (None for full fine-tuning)"),
    Field("seed", "integer", required=True, terminal="seed", listed=True),
    Field("lr", "real", terminal="lr", listed=True, doc="method.lr: the learning rate the run trained at"),
    Field("stage", "text", choices=("search", "final"), listed=True,
          doc="protocol=tuned: a search trial or a final run (empty under protocol=fixed)"),
    Field("search_id", "text", doc="protocol=tuned: the learning-rate search the run belongs to"),
    Field("config_hash", "text", required=True, doc="hash of the config parts that change results"),
    Field("config_json", "text", required=True, doc="the resolved config"),
    Field("harness_version", "text", doc="the harness version that computed the run (in its hash)"),
    Field("data_fingerprint", "text", doc="digest of the task's data (in the run's hash)"),
    Field("model_fingerprint", "text", doc="digest of the model's weights, or hub id@commit (in the hash)"),
    Field("device_kind", "text", doc="the device kind trainer.device resolved to (in the hash)"),
    Field("run_dir", "text", doc="the run's own folder (job file, adapter, kept result)"),
    Field("accuracy", "real", higher_is_better=True, report="Accuracy", quality=True,
          selectable=True, terminal="acc", listed=True, doc="test accuracy"),
    Field("f1_macro", "real", higher_is_better=True, report="Macro-F1", quality=True,
          selectable=True, terminal="f1_macro", listed=True, doc="test macro-F1"),
    Field("f1_micro", "real", higher_is_better=True, selectable=True, doc="test micro-F1"),
    Field("eval_loss", "real", higher_is_better=False, selectable=True,
          doc="test loss (prompt tasks: the answer tokens' mean loss)"),
    Field("exact_match", "real", higher_is_better=True, selectable=True,
          doc="generation: generated answers equal to the reference (= accuracy)"),
    Field("normalized_match", "real", higher_is_better=True, report="Normalized match",
          selectable=True,
          doc="generation: answers equal to the reference ignoring case, punctuation, whitespace"),
    Field("perplexity", "real", higher_is_better=False, report="Perplexity", selectable=True,
          doc="prompt tasks: exp of the answer tokens' mean test loss"),
    Field("best_epoch", "integer", doc="epoch whose weights were kept"),
    Field("select_metric", "text", doc="trainer.select_metric, the validation metric that chose them"),
    Field("select_value", "real", doc="its validation value for the kept weights"),
    Field("majority_accuracy", "real", higher_is_better=True, aggregate="mean", terminal="majority",
          doc="test accuracy of always predicting the most common training label"),
    Field("trainable_params", "integer", higher_is_better=False, report="Trainable params",
          digits=3, terminal="trainable"),
    Field("total_params", "integer", higher_is_better=False),
    Field("trainable_pct", "real", unit="%", higher_is_better=False, report="Trainable %", digits=3),
    Field("adapter_bytes", "integer", unit="bytes", higher_is_better=False, report="Adapter MiB",
          report_scale=MIB, report_name="adapter_mib", digits=3, doc="saved adapter size"),
    Field("peak_memory_bytes", "integer", unit="bytes", higher_is_better=False,
          report="Peak memory MiB", report_scale=MIB, report_name="peak_memory_mib",
          terminal="peak_MiB", listed=True,
          doc="peak CUDA allocated, or peak CPU RSS (memory_kind), of the run's setup, training and evaluation "
              "(the FLOP count's step is kept apart: details_json's peak_memory_apart_bytes)"),
    Field("memory_kind", "text", doc="what peak_memory_bytes measures: cuda_allocated | cpu_rss"),
    Field("peak_memory_train_bytes", "integer", unit="bytes", higher_is_better=False,
          doc="peak memory (memory_kind) while training steps ran"),
    Field("peak_memory_eval_bytes", "integer", unit="bytes", higher_is_better=False,
          doc="peak memory (memory_kind) while evaluating, testing and timing inference"),
    Field("precision", "text", listed=True,
          doc="what forward passes ran in: bf16_autocast | fp32 (trainer.autocast, resolved)"),
    Field("peak_cpu_rss_bytes", "integer", unit="bytes", higher_is_better=False),
    Field("baseline_cpu_rss_bytes", "integer", unit="bytes", doc="CPU RSS before the run"),
    Field("peak_cuda_allocated_bytes", "integer", unit="bytes", higher_is_better=False),
    Field("peak_cuda_reserved_bytes", "integer", unit="bytes", higher_is_better=False),
    Field("energy_j", "real", unit="J", higher_is_better=False, report="Energy J",
          doc="energy the device used during the run (harness.training.energy): RAPL package counters on "
              "CPU, NVML's counter on a GPU; the whole package or GPU, other processes included "
              "(energy_kind); empty where nothing can be measured, never an estimate"),
    Field("energy_kind", "text", doc="what energy_j measures: rapl_package | nvml_gpu (empty: none)"),
    Field("train_samples_per_s", "real", unit="samples/s", higher_is_better=True,
          report="Train samples/s", digits=3, terminal="samples/s", listed=True),
    Field("train_tokens_per_s", "real", unit="tokens/s", higher_is_better=True, report="Train tokens/s",
          digits=3, doc="non-padding tokens per second in the training loop"),
    Field("train_flops_per_token", "real", unit="FLOPs", higher_is_better=False,
          doc="model FLOPs of one training step per token, padding included: one forward and backward "
              "pass counted by torch's FLOP counter on the run's model and first training examples "
              "(harness.training.flops)"),
    Field("achieved_tflops", "real", unit="TFLOP/s", higher_is_better=True, report="TFLOP/s", digits=3,
          doc="train_flops_per_token x train_tokens_per_s (non-padding tokens: padding is waste)"),
    Field("mfu", "real", higher_is_better=True, report="MFU", digits=3,
          doc="model FLOPs utilisation: achieved_tflops over the peak peak_source names (times the "
              "processes of a data-parallel run)"),
    Field("train_flops", "real", unit="FLOPs", higher_is_better=False, report="Train FLOPs", digits=3,
          doc="budget: the training FLOPs the run spent, its counted step (harness.training.flops) times "
              "its optimizer steps"),
    Field("flops_budget", "real", unit="FLOPs", doc="trainer.flops_budget, when the run had one"),
    Field("time_budget_s", "real", unit="s", doc="trainer.time_budget_s, when the run had one (train_s: what it spent)"),
    Field("peak_tflops_measured", "real", unit="TFLOP/s",
          doc="the best rate of square matmuls in the run's precision on its device, measured once "
              "per device and cached"),
    Field("peak_tflops_datasheet", "real", unit="TFLOP/s",
          doc="the datasheet's dense bf16 peak of a known GPU under bf16 autocast (else empty)"),
    Field("peak_source", "text", choices=("datasheet", "measured"),
          doc="which peak mfu is over: the datasheet's where there is one, else the measured"),
    Field("infer_latency_ms", "real", unit="ms", higher_is_better=False,
          report="Latency unmerged ms", digits=3, terminal="latency_ms"),
    Field("infer_latency_merged_ms", "real", unit="ms", higher_is_better=False,
          report="Latency merged ms", digits=3, doc="None when the method cannot merge"),
    Field("gen_tokens_per_s", "real", unit="tokens/s", higher_is_better=True, report="Gen tokens/s",
          digits=3, doc="causal LMs: new tokens per second, greedy, trainer.generation_tokens per prompt"),
    Field("gen_ttft_ms", "real", unit="ms", higher_is_better=False, report="TTFT ms", digits=3,
          doc="causal LMs: median time to the first generated token (prefill) of a latency batch"),
    Field("forgetting", "real", unit="nats/token", higher_is_better=False, report="Forgetting", digits=3,
          doc="causal LMs: the mean token loss on general text (trainer.forgetting_probe) after training "
              "minus before, as peft's method comparison measures it (harness.run.model_change); "
              "negative: the model got better at the text; empty for a model without a language-model head"),
    Field("forgetting_loss_before", "real", unit="nats/token",
          doc="the probe's mean token loss of the model as built, before the first training step"),
    Field("forgetting_loss_after", "real", unit="nats/token",
          doc="the same after training, with the tested weights (adapters not merged)"),
    *(Field(f"update_{what}_{stat}", "real",
            doc=f"the {stat} over the adapted weight matrices of {text} of the update training made "
                "(harness.run.update_shape; per layer in the run folder's model_change.json); empty "
                "for a method whose update is not a weight matrix")
      for what, text in (("rel_norm", "||dW||_F / ||W||_F"), ("erank", "the effective rank (Roy & Vetterli 2007)"))
      for stat in ("mean", "max")),
    Field("train_s", "real", unit="s", higher_is_better=False, doc="time in the training loop"),
    Field("setup_s", "real", unit="s", higher_is_better=False,
          doc="loading the data and the model, tokenizing, building the method"),
    Field("eval_s", "real", unit="s", higher_is_better=False,
          doc="validation after each epoch, the test split, latency timing, saving the adapter"),
    Field("optimizer_steps", "integer", doc="budget: optimizer steps taken"),
    Field("baseline", "text", choices=("classical", "probe", "untrained"),
          doc="what kind of baseline the run is (tfidf: classical, head_only: probe, zero_shot: "
              "untrained); empty for a method"),
    Field("world_size", "integer", doc="processes the run trained in (trainer.processes; data parallel)"),
    Field("train_examples_seen", "integer", doc="budget: training examples seen (over all epochs)"),
    Field("train_tokens", "integer", doc="budget: non-padding training tokens seen"),
    Field("wall_s", "real", unit="s", higher_is_better=False, report="Wall time s", digits=3,
          terminal="wall_s", listed=True, doc="whole run, loading included"),
    *(Field(f"n_{split}", "integer") for split in ("train", "validation", "test")),
    *(Field(f"n_truncated_{split}", "integer", higher_is_better=False, doc="examples cut to task.max_length")
      for split in ("train", "validation", "test")),
    Field("dropped_rows", "integer", doc="rows of the task's data left out: a missing label or text, "
                                         "or longer than task.max_chars (hub data)"),
    Field("majority_f1_macro", "real", higher_is_better=True),
    Field("device", "text"), Field("git_commit", "text"), Field("git_dirty", "bool"),
    Field("provenance_json", "text"), Field("details_json", "text", doc="method and data details"),
    Field("schema_version", "integer", required=True),
]:
    declare(_f)
del _f
