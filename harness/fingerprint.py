"""What a run was computed from, beyond its config: the data's and the model's content, the
device kind it runs on and the harness's version (see docs/robustness.md, "Run identity").

The config hash (:func:`harness.identity.config_hash`) includes these, so a changed data file, a
re-downloaded model or a GPU run never reuses a result that was computed from something else.
Nothing here imports torch: preflight computes every job's hash before anything heavy loads.

Content digests are SHA-256 over the bytes (a folder: over its files' relative names and bytes),
cached on disk by (path, size, modification time), so a large file is read once.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from harness import __version__

# Bump the middle number when a change of the harness changes the numbers a run produces: the
# version is part of every run's identity (runs of another version are not reused, and the
# report warns when one comparison mixes versions).
HARNESS_VERSION = __version__

_memo: dict[tuple, str] = {}


def _cache_file() -> Path:
    root = os.environ.get("PEFT_HARNESS_CACHE") or Path.home() / ".cache" / "peft-harness"
    return Path(root) / "fingerprints.json"


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.absolute()), stat.st_size, stat.st_mtime_ns)
    if key in _memo:
        return _memo[key]
    cache_file = _cache_file()
    text_key = json.dumps(key)
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    digest = cache.get(text_key)
    if digest is None:
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        cache[text_key] = digest
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache))
            tmp.replace(cache_file)
        except OSError:
            pass  # a cache that cannot be written only costs time
    _memo[key] = digest
    return digest


def content_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (relative names and bytes), 16 hex."""
    path = Path(path)
    if path.is_file():
        return _file_digest(path)[:16]
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            h.update(str(f.relative_to(path)).encode() + b"\0" + _file_digest(f).encode())
        return h.hexdigest()[:16]
    return "missing"


def data_fingerprint(task: dict) -> str:
    """The content of the task's data: its ``data_path``, or the file its loader declares
    (``data_files=`` where it is registered); sub-tasks' fingerprints for a multi-task config;
    ``generated`` for data made from the config alone; ``hub:...`` where the data is fetched."""
    if task.get("subtasks"):
        parts = {name: data_fingerprint(sub) for name, sub in sorted(task["subtasks"].items())}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    if task.get("data_path"):
        return content_digest(task["data_path"])
    from harness.tasks.data import TASK_LOADERS

    loader = task.get("loader")
    if loader not in TASK_LOADERS:
        return "unknown"
    info = TASK_LOADERS.info(loader)
    files = info.get("data_files")
    if files is not None:
        try:
            return content_digest(files())
        except Exception:  # noqa: BLE001 - the loader's own error comes when the run loads it
            return "missing"
    return info.get("data_source", "generated")


def hub_revision(repo: str, revision: str | None) -> str:
    """The commit a hub model resolves to: ``revision`` if given, else the one the local hub
    cache's ``refs/main`` names, else ``unresolved`` (then the hub decides at load time)."""
    if revision:
        return revision
    root = Path(os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
                or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
    ref = root / f"models--{repo.replace('/', '--')}" / "refs" / "main"
    try:
        return ref.read_text().strip()
    except OSError:
        return "unresolved"


def model_fingerprint(model: dict) -> str:
    """The weights' content: ``tiny`` (built from the config), a local file's or folder's digest
    (``package:`` sources included), or ``hub:<id>@<commit>`` for a hub id."""
    if model.get("tiny"):
        return "tiny"
    source = str(model.get("source") or "")
    if source.startswith("package:"):
        from harness.sources import resolve_source

        try:
            return content_digest(resolve_source(source))
        except FileNotFoundError:
            return "missing"
    if Path(source).exists():
        return content_digest(source)
    return f"hub:{source}@{hub_revision(source, model.get('revision'))}"


def _nvidia_gpu_present() -> bool:
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


# Set by ``python -m harness.plan`` alone: the device its configs are planned for, in place of
# what this machine has (a GPU run is planned on a laptop).
PLAN_DEVICE_ENV = "PEFT_HARNESS_PLAN_DEVICE"


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


def autocast_kind(setting: str, device: str) -> str:
    """What ``trainer.autocast`` resolves to on ``device`` (a device kind): ``bf16`` or ``off``;
    ``auto`` on CUDA stays ``auto`` here (the GPU's support is read when the run starts, and the
    run records it in its ``precision`` field)."""
    if setting != "auto":
        return setting
    return ("bf16" if cpu_has_bf16() else "off") if device == "cpu" else "auto"


def run_identity(container: dict) -> dict:
    """What, besides its config, decides a run's numbers (part of its hash, and recorded)."""
    container = json.loads(json.dumps(container))  # enum members as their values, as a job file has them
    out = {"harness_version": HARNESS_VERSION}
    if isinstance(container.get("task"), dict):
        out["data_fingerprint"] = data_fingerprint(container["task"])
    if isinstance(container.get("model"), dict):
        out["model_fingerprint"] = model_fingerprint(container["model"])
    trainer = container.get("trainer")
    if isinstance(trainer, dict) and "device" in trainer:
        out["device_kind"] = device_kind(str(trainer["device"]))
        if "autocast" in trainer:
            out["autocast"] = autocast_kind(str(trainer["autocast"]), out["device_kind"])
    return out
