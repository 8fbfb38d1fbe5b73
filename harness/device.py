"""Every device and precision decision in one place: which device a run uses, what
``trainer.device`` and ``trainer.autocast`` resolve to (without importing torch, for the command
and the planner), moving a batch there and running under bf16 autocast."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

# Set by ``python -m harness.plan`` alone: the device its configs are planned for, in place of
# what this machine has (a GPU run is planned on a laptop).
PLAN_DEVICE_ENV = "PEFT_HARNESS_PLAN_DEVICE"


def _nvidia_gpu_present() -> bool:
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def device_kind(setting) -> str:
    """The kind of device ``trainer.device`` resolves to here (``auto``: cuda where an NVIDIA GPU
    is present, else cpu), found without importing torch. ``setting``: text or the enum member."""
    setting = str(getattr(setting, "value", setting))
    if setting in ("cpu", "cuda"):
        return setting
    planned = os.environ.get(PLAN_DEVICE_ENV)  # the planner's process only: the device planned for
    if planned in ("cpu", "cuda"):
        return planned
    return "cuda" if _nvidia_gpu_present() else "cpu"


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 (AVX512-BF16 or AMX), read from /proc/cpuinfo: the
    instructions behind torch's ``_is_avx512_bf16_supported`` / ``_is_amx_tile_supported``."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_model() -> str | None:
    """The processor's name as /proc/cpuinfo gives it (Linux), e.g. "AMD EPYC 9R14"; None where
    it names none. Numbers on one CPU and another may differ (a 4-bit base's bf16 kernels), and a
    run's identity does not name the processor: its provenance and MFU peak cache do."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return None


def autocast_kind(setting: str, device: str) -> str:
    """What ``trainer.autocast`` resolves to on ``device`` (a device kind): ``bf16`` or ``off``;
    ``auto`` on CUDA stays ``auto`` here (the GPU's support is read when the run starts, and the
    run records it in its ``precision`` field)."""
    if setting != "auto":
        return setting
    return ("bf16" if cpu_has_bf16() else "off") if device == "cpu" else "auto"


def pick_device(kind: str):
    """The torch device ``trainer.device`` names (``auto``: the current CUDA device if any)."""
    import torch

    if kind == "cuda" or (kind == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("trainer.device=cuda but no CUDA device is available; use cpu or auto")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def wants_bf16(cfg, device) -> bool:
    """Whether a run (``cfg``: its RunConfig) computes under bf16 autocast on ``device``."""
    mode = cfg.trainer.autocast.value
    if mode == "auto":  # native bf16 only: emulated bf16 on an older GPU is slower than fp32
        if device.type == "cuda":
            import torch

            return torch.cuda.is_bf16_supported(including_emulation=False)
        return cpu_has_bf16()  # what the run's identity resolves auto to (autocast_kind)
    return mode == "bf16"


def sync(device) -> None:
    """Wait for the device's queued work (CUDA), so a wall-clock reading includes it."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def to_device(batch: dict, device) -> dict:
    """The batch's tensors on ``device``; plain values (a prompt task's answers) as they are."""
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


def autocast_context(device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
