"""One run, read top to bottom: setup, fit, test, measure, and the fields that record it.

:func:`execute` runs the steps in order; each step is a function with a typed result, so what a
run computed can be followed from the config to the row the store keeps. Nothing here touches the
store: :mod:`harness.job.runner` records what :func:`execute` returns.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
import torch

from harness.config import RunConfig
from harness.device import pick_device, wants_bf16
from harness.methods import METHODS, Adapted, MethodContext, TrainingStart, builder_name
from harness.models.load import LoadedModel, load_model
from harness.paths import cache_dir
from harness.run import model_change
from harness.run.fsdp import loading as fsdp_loading
from harness.run.inference import inference_costs
from harness.run.parallel import Parallel, in_group, rank, use_threads
from harness.run.row import MEASUREMENTS, record_fields
from harness.run.steps import SPLITS, RunResult, Setup, Tested
from harness.tasks import load_task
from harness.tasks.check import already_noted
from harness.tasks.encoding import cut_line, cut_summary, encode_cached, encode_split
from harness.tasks.multitask import per_task_splits, task_names
from harness.tasks.types import TaskType, task_truncation
from harness.training import clock, flops
from harness.training.energy import EnergyMeter
from harness.training.loop import NonFiniteLossError, TrainResult, evaluate, loader, total_steps, train
from harness.training.memory import PeakMemory

# Re-exported for plug-ins and tests that build a run step by step.
__all__ = ["SPLITS", "MEASUREMENTS", "RunResult", "Setup", "Tested", "execute", "fit", "setup", "test"]


def seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def method_context(cfg: RunConfig, kind: TaskType, device: torch.device) -> MethodContext:
    """What a method may know of its run besides its own config."""
    return MethodContext(
        target_modules=list(cfg.method.target_modules or cfg.model.target_modules),
        # A prompt task trains no new head: the language model's own output layer scores answers.
        head_modules=[] if kind.causal_lm else list(cfg.model.head_modules), four_bit=bool(cfg.quant.load_in_4bit),
        task_type=kind, task_names=task_names(cfg.task), device=device, seed=int(cfg.seed),
        gradient_checkpointing=cfg.trainer.gradient_checkpointing,
        max_grad_norm=cfg.trainer.max_grad_norm, optimizer=cfg.trainer.optimizer.value,
        norm_modules=list(cfg.model.norm_modules))


def build_method(cfg: RunConfig, model: torch.nn.Module, ctx: MethodContext) -> Adapted:
    """The run's method on ``model``, through the method registry."""
    return METHODS.get(builder_name(cfg.method)).build(model, cfg.method, ctx)


def build(cfg: RunConfig, kind: TaskType, num_labels: int, device: torch.device,
          empty: bool = False) -> tuple[LoadedModel, Adapted]:
    """The run's model, and its method on it, from the run's seed; ``empty``: on the meta device,
    its weights not read (:mod:`harness.run.fsdp`)."""
    seed_everything(cfg.seed)
    loaded = load_model(cfg.model, cfg.quant, kind.head_size(num_labels), device,
                        problem_type=kind.problem_type, causal_lm=kind.causal_lm, empty=empty)
    if cfg.trainer.gradient_checkpointing:  # recompute activations in the backward pass
        loaded.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        loaded.model.config.use_cache = False
    seed_everything(cfg.seed)  # adapters start from the seed whatever the loader consumed
    return loaded, build_method(cfg, loaded.model, method_context(cfg, kind, device))


def setup(cfg: RunConfig, device: torch.device, parallel: Parallel | None = None,
          apart: Callable[[], ContextManager] = contextlib.nullcontext) -> Setup:
    """Data, model and method (where ``parallel`` builds them, if given); then the method's one
    "before training" hook. ``apart``: what a FLOPs budget's counted step runs in (the run's
    memory phase kept out of its peak, as the FLOP count's)."""
    data = load_task(cfg.task)
    kind = data.type
    loaded, adapted, where = (parallel.build(build, cfg, kind, data.num_labels) if parallel is not None
                              else (*build(cfg, kind, data.num_labels, device), device))
    tok, collate = loaded.tokenizer, kind.collator(loaded.tokenizer)
    folder = cache_dir() / "tokens" if cfg.task.cache_tokens else None
    strategy = task_truncation(cfg.task)
    encoded = {name: encode_cached(getattr(data, name), tok, cfg.task.max_length,
                                   strategy, folder, kind) for name in SPLITS}
    line = cut_line(cut_summary(encoded, cfg.task.max_length, strategy, getattr(kind, "conversation", False)))
    if line and rank() == 0 and not already_noted(cfg.task.name, cfg.model.name, line):  # said once per command
        print(f"[harness] note: task {cfg.task.name}: {line}", flush=True)
    kind.prepare(tok, encoded["train"].examples)
    if cfg.trainer.loss_chunk_tokens is not None:  # a causal-LM task (harness.job.validation)
        kind.loss_chunk = cfg.trainer.loss_chunk_tokens
    packed = kind.collator(tok, packed=True) if cfg.trainer.packing else collate
    batches = {name: loader(enc.examples, tok, cfg.trainer.batch_size if name == "train"
                            else cfg.trainer.eval_batch_size, name == "train", cfg.seed,
                            packed if name == "train" else collate, cfg.trainer.group_by_length)
               for name, enc in encoded.items()}
    s = Setup(device, wants_bf16(cfg, device), data, kind, loaded, adapted, encoded, batches)
    plan_budget(s, cfg, apart)
    adapted.before_training(TrainingStart(total_steps(len(batches["train"]), cfg.trainer), batches["train"], where))
    s.trainable, s.total = adapted.count_parameters()
    return s


def fit(s: Setup, cfg: RunConfig, tracker, memory: PeakMemory | None = None, parallel=None) -> TrainResult:
    return train(s.adapted, s.batches["train"], s.batches["validation"], cfg, s.device,
                 s.data.num_labels, s.use_bf16, tracker, task_type=s.kind, memory=memory,
                 parallel=parallel)


def count_flops(s: Setup, cfg: RunConfig, parallel=None) -> tuple[int, int] | None:
    """The FLOPs and tokens of one training step, counted before training on the first training
    examples with every random-number generator put back (:mod:`harness.training.flops`); None
    for a run FSDP shards (its model is not whole on any process) and for one that trains nothing
    (a zero-shot baseline takes no training step)."""
    if (parallel is not None and parallel.fsdp) or s.trainable == 0:
        return None
    return flops.count_training_step(s.adapted, s.kind, s.encoded["train"].examples,
                                     s.batches["train"].collate_fn, cfg.trainer.batch_size,
                                     s.device, s.use_bf16)


def plan_budget(s: Setup, cfg: RunConfig, apart: Callable[[], ContextManager] = contextlib.nullcontext) -> None:
    """``trainer.flops_budget`` or ``trainer.time_budget_s``: the run takes the optimizer steps
    that fit in it (as ``trainer.max_steps``, which a budget excludes), over as many epochs as they
    need, so every run of a table spends the same compute (or seconds) whatever its method does
    per step. Planned from one counted step (:mod:`harness.training.flops`) or a few timed ones
    (:mod:`harness.training.clock`) before the method's "before training" hook, so that a schedule
    over the run's steps (AdaLoRA's, Delta-LoRA's start) is over the steps it will take."""
    t = cfg.trainer
    if (t.flops_budget is None and t.time_budget_s is None) or not any(
            p.requires_grad for p in s.adapted.model.parameters()):
        return
    if t.flops_budget is not None:
        with apart():
            counted = flops.count_training_step(s.adapted, s.kind, s.encoded["train"].examples,
                                                s.batches["train"].collate_fn, t.batch_size, s.device, s.use_bf16)
        steps = flops.steps_in_budget(t.flops_budget, counted[0])
    else:
        steps = clock.plan_steps(s.adapted, s.kind, s.batches["train"], s.device, s.use_bf16,
                                 t.time_budget_s, t.packing)
    t.max_steps = steps
    t.epochs = -(-steps // max(len(s.batches["train"]), 1))


def test(s: Setup, cfg: RunConfig, trained: TrainResult) -> Tested:
    """The test split with the selected weights; per task (multi-task data) and per variant
    (a method's extra settings, e.g. DyLoRA's ranks) as curves rows."""
    model, kind = s.adapted.model, s.kind

    def score(batches, labels=None, keep=None, progress=None) -> dict:
        return evaluate(model, batches, s.device, s.data.num_labels, s.use_bf16, labels, kind, keep,
                        progress if cfg.trainer.progress and rank() == 0 else None)

    def rows(variant: str, scores: dict) -> list[dict]:
        return [{"epoch": trained.best_epoch, "variant": variant, "split": "test", "metric": k,
                 "value": v} for k, v in scores.items()]

    kept: dict = {}
    tested = Tested(score(s.batches["test"], keep=kept, progress="test"))
    if not math.isfinite(tested.metrics["eval_loss"]):
        raise NonFiniteLossError(f"test loss is {tested.metrics['eval_loss']}")
    guess = kind.majority_prediction(s.data.train.labels)
    texts = kind.texts_to_keep(kept)  # what a generation run wrote (harness.results.load_answers)
    kept = {k: kind.prediction_ids(v) for k, v in
            (("labels", kept["labels"]), ("predictions", kept["predictions"]),
             ("majority", [guess] * len(kept["labels"])))}
    arrays = {k: np.asarray(v) for k, v in kept.items()} if None not in kept.values() else {}
    if arrays or texts:  # open-ended generations have no per-example classes, only their texts
        tested.predictions["test"] = {**arrays, **texts}
    for task, split, labels in per_task_splits(s.data, s.data.test):  # multi-task data only
        enc = encode_split(split, s.loaded.tokenizer, cfg.task.max_length, task_truncation(cfg.task), kind)
        tested.curves += rows(f"task:{task}", score(loader(
            enc.examples, s.loaded.tokenizer, cfg.trainer.eval_batch_size, False, cfg.seed,
            kind.collator(s.loaded.tokenizer), cfg.trainer.group_by_length), labels))
    for variant, context in s.adapted.eval_variants():
        with context:
            tested.curves += rows(variant, score(s.batches["test"]))
    return tested


def execute(cfg: RunConfig, isolated: bool, work_dir: Path, tracker) -> RunResult | None:
    """setup -> fit -> test -> measure, with this run's peak memory and wall time. In a
    data-parallel run (:mod:`harness.run.parallel`) every process trains; only the first goes on to
    test and measure, and the others return None."""
    t0 = time.perf_counter()
    use_threads(cfg.trainer.num_threads)
    spec = METHODS.get(builder_name(cfg.method))
    if spec.standalone:  # a classical baseline runs itself (harness.methods.tfidf)
        return RunResult(*spec.build(cfg, isolated, work_dir, tracker))
    device = pick_device(cfg.trainer.device.value)
    parallel = (Parallel(device.type == "cpu", fsdp_loading(cfg), cfg.trainer.fsdp_test.value)
                if in_group() else None)
    device = parallel.device if parallel is not None else device
    memory = PeakMemory(device, isolated).start()
    (energy := EnergyMeter(device.type, device.index or 0)).start()

    def counting():  # the harness measuring, not the run training: kept out of the run's peak
        return memory.phase("count", in_run=False)

    with memory.phase("setup"):
        s = setup(cfg, device, parallel, counting)
    with counting():
        counted = count_flops(s, cfg, parallel)
    kept = model_change.before_training(s, cfg, work_dir, parallel)  # forgetting's "before", ΔW's start
    trained = fit(s, cfg, tracker, memory, parallel)
    sharded = parallel is not None and parallel.test_sharded
    if sharded:  # every process tests its shards together (harness.run.fsdp)
        with memory.phase("eval"), s.adapted.inference():
            tested = test(s, cfg, trained)
    if parallel is not None and not parallel.after_training(memory, s, cfg, build):
        return None
    if not sharded:
        with memory.phase("eval"), s.adapted.inference():
            tested = test(s, cfg, trained)
    changed = model_change.after_training(s, cfg, kept, work_dir)  # outside the phases, before merging
    with memory.phase("eval"):
        measured = inference_costs(s, cfg, work_dir, timed=not sharded)
    fields = record_fields(s, cfg, trained, tested, measured, memory.stop(), parallel, memory.apart())
    model_change.record(fields, changed)
    fields.update(energy.stop())
    fields.update(flops.mfu_fields(counted, fields["train_tokens_per_s"], s.device, s.use_bf16,
                                   parallel.accelerator.num_processes if parallel is not None else 1))
    fields.update(flops.budget_fields(counted, trained.steps, cfg.trainer.flops_budget),
                  time_budget_s=cfg.trainer.time_budget_s)
    for name in MEASUREMENTS:
        fields.update(MEASUREMENTS.get(name)(s, trained))
    fields["wall_s"] = time.perf_counter() - t0
    if parallel is not None:
        parallel.end()
    return RunResult(fields, list(trained.curves) + tested.curves, tested.predictions)
