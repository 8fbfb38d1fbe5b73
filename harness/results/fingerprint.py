"""What a run was computed from, beyond its config: the data's and the model's content, the
device kind it runs on and the harness's version (see docs/robustness.md, "Run identity").

The config hash (:func:`harness.results.identity.config_hash`) includes these, so a changed data file, a
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
from harness.device import autocast_kind, device_kind
from harness.digest import content_digest

# Bump the middle number when a change of the harness changes the numbers a run produces: the
# version is part of every run's identity (runs of another version are not reused, and the
# report warns when one comparison mixes versions).
HARNESS_VERSION = __version__

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
        from harness.models.sources import resolve_source

        try:
            return content_digest(resolve_source(source))
        except FileNotFoundError:
            return "missing"
    if Path(source).exists():
        return content_digest(source)
    return f"hub:{source}@{hub_revision(source, model.get('revision'))}"


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
