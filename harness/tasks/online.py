"""Whether a task that reads its data from the Hugging Face hub can: refused before anything trains
when the hub cannot be reached and no copy is cached, instead of failing in the run.

A task needs the network when its loader is registered with a ``data_source`` on the hub
(``hub:<id>``, or ``hub`` with the ids in ``task.hub_splits``) and no ``task.data_path`` names a
local copy, or ``datasets`` has a copy cached. Under ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``
nothing is probed: without a cached copy the task is refused. Standard library only.
"""
from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from harness.tasks.data import TASK_LOADERS

HUB_IDS = {"hub:lex_glue": "coastalcph/lex_glue"}
PROBE_TIMEOUT_S = 3.0


def hub_datasets(cfg) -> list[str]:
    """The hub ids a task reads over the network (none when it reads a local copy)."""
    info = TASK_LOADERS.info(cfg.loader) if cfg.loader in TASK_LOADERS else {}
    source = str(info.get("data_source") or "")
    if not source.startswith("hub") or cfg.data_path:
        return []
    if source == "hub":
        return [str((s or {}).get("dataset")) for s in (getattr(cfg, "hub_splits", None) or {}).values()
                if (s or {}).get("dataset")]
    return [HUB_IDS.get(source, source.partition(":")[2])]


def _cached(hub_id: str) -> bool:
    """Whether ``datasets`` has a copy of the dataset in its cache (it then loads it offline)."""
    root = Path(os.environ.get("HF_DATASETS_CACHE") or Path(os.environ.get("HF_HOME") or
                                                             Path.home() / ".cache" / "huggingface") / "datasets")
    return (root / hub_id.replace("/", "___")).is_dir()


@lru_cache(maxsize=1)
def hub_reachable() -> bool:
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=PROBE_TIMEOUT_S).close()
        return True
    except OSError:
        return False


def unreachable_data(cfg) -> str | None:
    """A one-line reason why this task cannot get its data, or None."""
    missing = [h for h in hub_datasets(cfg) if not _cached(h)]
    if not missing:
        return None
    offline = next((v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if os.environ.get(v)), None)
    if offline is None and hub_reachable():
        return None
    why = f"{offline} is set" if offline else "the hub cannot be reached from here"
    return (f"task {cfg.name} reads {missing[0]} from the Hugging Face hub, but {why} and no copy "
            f"is cached: download it where there is network and set task.data_path to the local "
            f"copy (docs/tasks.md)")
