"""One run on several processes: data parallel through accelerate (``trainer.processes``).

With ``trainer.processes=N`` (N > 1) the run's worker process starts N processes with
``torch.distributed.run`` (torchrun, the launcher under ``accelerate launch``), each on one device
(a GPU each, or a share of the CPU). In each, accelerate's :class:`~accelerate.Accelerator` sets up
the process group (NCCL on GPUs, gloo on CPU), wraps the model in DistributedDataParallel, which
averages the gradients, and hands each process its share of every training batch
(``split_batches``: ``trainer.batch_size`` stays the global batch, so a run on N processes takes
the same optimizer steps on the same batches as a run on one).

With ``trainer.strategy=fsdp`` the model is not copied but sharded with PyTorch's FSDP2
(:mod:`harness.run.fsdp`, which also says which processes read the weights): every tensor (frozen
weights, trainable weights, their gradients and optimizer states) is split in N; a block's
weights are gathered for its forward and backward and freed after, and gradients are
reduce-scattered. The optimizer is made after sharding, so it holds 1/N of the states.

Every process evaluates the validation split after each epoch (the best/final choice is the same
in all); after training, the per-process peak memory is gathered and only the first process
(rank 0) tests, times, saves the adapter and reports the run. An FSDP run first gathers its full
trained state on the first process, which builds the model again as the run built it and loads
that state into it (the measurements then run on an ordinary, unsharded model); with
``trainer.fsdp_test=sharded`` every process tests the sharded model first, and the copy is built
in CPU memory only to save the adapter (:mod:`harness.run.fsdp`). The run records
``world_size``, the strategy and each rank's peak memory (``details_json``:
``parallel_strategy``, ``peak_memory_per_rank_bytes``).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

WORLD_ENV = "WORLD_SIZE"
PHASES = ("setup", "train", "eval")  # harness.training.memory.PeakMemory's phases until training ends


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def in_group() -> bool:
    """Whether this process is one of a data-parallel run's processes (started by torchrun)."""
    return int(os.environ.get(WORLD_ENV, "1")) > 1


def allotted_cpus() -> int:
    """The cores this job may use: SLURM's ``--cpus-per-task`` where SLURM started it (a node
    without CPU binding shows every core), else the cores this process may run on."""
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def use_threads(configured: int | None) -> None:
    """``trainer.num_threads`` where given; else, in a SLURM job with no ``OMP_NUM_THREADS``, the
    job's ``--cpus-per-task`` (torch would otherwise take the node's every core)."""
    if configured:
        torch.set_num_threads(configured)
    elif "OMP_NUM_THREADS" not in os.environ and "SLURM_CPUS_PER_TASK" in os.environ:
        torch.set_num_threads(allotted_cpus())


def launch(job: str, result: str, processes: int) -> int:
    """Start ``processes`` workers on this job with torchrun (a rendezvous on a free local port,
    so that runs on one host do not collide); their exit code. Runs in the run's own process
    group: a stopped run stops them too. Each process gets an equal share of the CPU's threads
    (``OMP_NUM_THREADS``, unless set, of the cores the job may use; ``trainer.num_threads`` applies per process)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, allotted_cpus() // processes)))
    for r in range(processes):
        rank_error_file(result, r).unlink(missing_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={processes}", "-m", "harness.job.worker", job, result]
    return subprocess.call(command, env=env)


def rank_error_file(result: str, r: int) -> Path:
    """Where rank ``r`` of a data-parallel run leaves its error."""
    return Path(f"{result}.rank{r}")


def first_error(result: str, processes: int) -> str | None:
    """The error that came first among the run's processes: the cause (when one process fails,
    the others fail after it, as their collective operations lose a peer)."""
    import json

    errors = [json.loads(p.read_text()) for p in (rank_error_file(result, r) for r in range(processes))
              if p.is_file()]
    return min(errors, key=lambda e: e["time"])["error"] if errors else None


class Parallel:
    """This process's part of a data-parallel run (accelerate's Accelerator)."""

    def __init__(self, cpu: bool, loading: str | None = None, testing: str = "gathered") -> None:
        from accelerate import Accelerator, DataLoaderConfiguration

        self.accelerator = Accelerator(cpu=cpu, dataloader_config=DataLoaderConfiguration(split_batches=True))
        self.loading = loading  # FSDP: who reads the weights, first or every (harness.run.fsdp); None: DDP
        self.testing = testing  # FSDP: where the run is tested, gathered or sharded (harness.run.fsdp)
        self.peaks: list[int] = []
        self.phase_peaks: dict[str, list[int]] = {}  # each process's peak in setup, train, eval
        self.held: list[int] = []  # parameters each process holds (FSDP: its shards)
        self.held_bytes: list[int] = []  # FSDP: the bytes of the storages behind them
        self.read: list[int] = []  # FSDP: whether each process read the weights itself (1) or not (0)

    @property
    def fsdp(self) -> bool:
        return self.loading is not None

    @property
    def test_sharded(self) -> bool:
        """Whether every process tests its shards together (else the first tests the whole model)."""
        return self.fsdp and self.testing == "sharded"

    @property
    def strategy(self) -> str:
        return "fsdp" if self.fsdp else "ddp"

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def world_size(self) -> int:
        return self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def build(self, build_fn, cfg, kind, num_labels: int):
        """This process's model and method, built where :func:`harness.run.fsdp.build` says, the first
        process's first (what it downloads, converts or caches, the others then find); and the
        device its "before training" hook runs on."""
        from harness.run import fsdp

        with self.accelerator.main_process_first():
            loaded, adapted, where = fsdp.build(build_fn, cfg, kind, num_labels, self.device,
                                                self.loading == "first", self.is_main)
        self.read = self.gather_ints(int(where != fsdp.META)) if self.fsdp else []
        return loaded, adapted, where

    def gather_ints(self, value: int) -> list[int]:
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        return [int(v) for v in self.accelerator.gather(t).tolist()]

    def shard(self, model: torch.nn.Module) -> None:
        """With FSDP, shard ``model`` in place over the processes (before its optimizer is made,
        :func:`harness.run.fsdp.shard`); nothing with DDP."""
        if not self.fsdp:
            return
        from harness.run.fsdp import shard

        shard(model, self.device, self.world_size, self.loading == "first", self.is_main)
        local = [p.to_local() if hasattr(p, "to_local") else p for p in model.parameters()]
        self.held = self.gather_ints(sum(t.numel() for t in local))
        # the memory behind them: a shard that is a view of a whole tensor keeps all of it
        self.held_bytes = self.gather_ints(sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                                                for t in local}.values()))

    def prepare(self, model: torch.nn.Module, optimizer, batches):
        """The model wrapped for data parallelism (DDP; a sharded model as it is), the optimizer,
        and this process's share of the training batches. Every tensor the optimizer trains must
        be the model's: DDP and FSDP synchronize the gradients of the model's parameters only."""
        own = {id(p) for p in model.parameters()}
        outside = sum(1 for g in optimizer.param_groups for p in g["params"] if id(p) not in own)
        if outside:
            raise RuntimeError(f"the method trains {outside} tensor(s) outside the model; "
                               "data-parallel runs (trainer.processes > 1) need them in the model")
        if self.fsdp:
            return (model, *self.accelerator.prepare(optimizer, batches))
        return self.accelerator.prepare(model, optimizer, batches)

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def clip_grad_norm_(self, params, max_norm: float):
        return self.accelerator.clip_grad_norm_(params, max_norm)

    def sum(self, values: list[float]) -> list[float]:
        """``values`` summed over all processes (one all-reduce)."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        return self.accelerator.reduce(t, reduction="sum").tolist()

    def after_training(self, memory, s, cfg, build) -> bool:
        """Gather every process's peak memory until now (``memory``: a PeakMemory) and, with
        FSDP, the trained state into the model built again on the first process (``s``: the
        run's Setup, ``build``: how the run built its model, :func:`harness.run.pipeline.build`);
        whether this process goes on (the first one), else its part is over."""
        from harness.run import fsdp

        full = fsdp.gather_full(s.adapted.model, self.is_main) if self.fsdp else None
        self.peaks = self.gather_ints(memory.peak_so_far())
        self.phase_peaks = {name: self.gather_ints(memory.phase_peak(name)) for name in PHASES}
        if not self.is_main:
            memory.stop()
            self.end()
        elif full is not None:  # sharded testing: built again in CPU memory, not on the device
            fsdp.unshard(s, cfg, full, build, torch.device("cpu") if self.test_sharded else s.device)
        return self.is_main

    def end(self) -> None:
        self.accelerator.end_training()  # destroys the process group


def recorded(parallel: Parallel | None, memory: dict) -> tuple[dict, dict]:
    """A run's memory fields and its details on how it was spread: with several processes, the
    largest process's peak (what each device must hold) and each process's (rank order)."""
    if parallel is None:
        return memory, {"world_size": 1}
    return ({**memory, "peak_memory_bytes": max(memory["peak_memory_bytes"], *parallel.peaks)},
            {"world_size": parallel.world_size, "parallel_strategy": parallel.strategy,
             "peak_memory_per_rank_bytes": parallel.peaks,
             "peak_memory_per_rank_by_phase_bytes": parallel.phase_peaks,
             **({"parameters_per_rank": parallel.held, "fsdp_load": parallel.loading,
                 "fsdp_test": parallel.testing, "parameter_storage_bytes_per_rank": parallel.held_bytes,
                 "weights_read_per_rank": parallel.read} if parallel.fsdp else {})})
