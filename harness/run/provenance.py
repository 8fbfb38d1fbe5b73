"""What made a result: code version, package versions, hardware."""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess

import torch

from harness.device import cpu_model
from harness.paths import PACKAGE_DIR

PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "datasets", "evaluate",
            "hydra-core", "omegaconf", "accelerate", "numpy", "pandas", "peft-harness")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PACKAGE_DIR), *args], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> dict:
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(status)}


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_info(device: torch.device) -> dict:
    info = {
        "device": str(device),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_bytes=int(props.total_memory),
                    cuda=torch.version.cuda)
    return info


# What a cluster scheduler tells its job about itself (SLURM's sbatch environment).
SLURM_ENV = {"job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID", "array_task_id": "SLURM_ARRAY_TASK_ID",
             "partition": "SLURM_JOB_PARTITION", "nodelist": "SLURM_JOB_NODELIST", "cpus_on_node": "SLURM_CPUS_ON_NODE"}


def placement() -> dict:
    """Where the run ran: the host, and the SLURM job that ran it (when one did), to find its log
    and its accounting record on the cluster."""
    slurm = {k: os.environ[v] for k, v in SLURM_ENV.items() if v in os.environ}
    return {"host": platform.node(), **({"slurm": slurm} if slurm else {})}


def collect(device: torch.device) -> dict:
    return {**git_state(), "versions": versions(), "hardware": device_info(device), **placement()}


def run_provenance(trainer_device: str) -> dict:
    """A run's provenance fields, collected in the process that trained it (whose torch is already
    imported: the command's own process imports torch only for a run whose worker failed)."""
    from harness.device import pick_device

    try:
        device = pick_device(trainer_device)
    except RuntimeError:
        device = torch.device("cpu")
    prov = collect(device)
    return {"git_commit": prov["git_commit"], "git_dirty": prov["git_dirty"],
            "device": str(device), "provenance_json": json.dumps(prov, sort_keys=True)}
