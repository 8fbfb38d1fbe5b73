"""Run one grid point under its protocol: as configured (``fixed``), or search, choose, final.

``protocol=tuned`` (schema in :mod:`harness.config.protocol`): the grid point's runs are
ordinary runs of :func:`harness.job.runner.run_job` with ``method.lr``, ``seed`` and
``protocol.stage`` set, so each is a row of its own, resumes on its own (a finished run is
skipped), and is isolated like any other. The rate chosen is a function of the store's search
rows, so a re-run after a kill chooses the same rate and finishes only what is missing.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.results.identity import config_hash


def search_id(container: dict) -> str:
    """The identity of a grid point's search: its config without rate, seed and stage."""
    data = {**container, "method": {k: v for k, v in container["method"].items() if k != "lr"},
            "protocol": {}}
    data.pop("seed", None)
    return config_hash(data)


def rates(container: dict) -> list[float]:
    p, lr = container["protocol"], float(container["method"]["lr"])
    return [float(r) for r in p["lr_grid"]] if p.get("lr_grid") else [lr * f for f in p["lr_factors"]]


def variant(container: dict, lr: float, seed: int, stage: str) -> dict:
    """The config of one run of a tuned grid point."""
    out = copy.deepcopy(container)
    out["method"]["lr"] = float(lr)
    out["seed"] = int(seed)
    out["protocol"].update(stage=stage, search_id=search_id(container))
    return out


def search_configs(container: dict) -> list[dict]:
    return [variant(container, lr, container["protocol"]["search_seed"], "search")
            for lr in rates(container)]


def choose(container: dict, finished) -> float | None:
    """The searched rate with the best validation value (ties: the lower rate), from the store's
    finished rows (a DataFrame); None while no search trial has finished."""
    from harness.fields import better

    best, best_value = None, None
    by_hash = finished.drop_duplicates("config_hash").set_index("config_hash")
    for cfg in search_configs(container):
        h = config_hash(cfg)
        if h not in by_hash.index:
            continue
        value = by_hash.loc[h, "select_value"]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        metric = cfg["trainer"]["select_metric"]
        if better(metric, float(value), best_value) or (value == best_value and cfg["method"]["lr"] < best):
            best, best_value = cfg["method"]["lr"], float(value)
    return best


def final_configs(container: dict, lr: float) -> list[dict]:
    return [variant(container, lr, seed, "final") for seed in container["protocol"]["seeds"]]


def expected_hashes(container: dict, finished) -> list[str]:
    """Config hashes of every run this grid point launches, given the store's finished rows (the
    final runs are known once the search has a finished trial)."""
    if container.get("protocol", {}).get("name", "fixed") != "tuned":
        return [config_hash(container)]
    out = [config_hash(c) for c in search_configs(container)]
    lr = choose(container, finished)
    out += [config_hash(c) for c in final_configs(container, lr)] if lr is not None else \
        [f"{search_id(container)}:final-{s}" for s in container["protocol"]["seeds"]]
    return out


def run_grid_point(cfg: DictConfig, work_dir: Path | None = None) -> list[dict]:
    """The rows of one grid point: one run (fixed), or its search trials and final runs (tuned)."""
    from harness.results.retry import load_patiently as load  # waits out an outage of the store
    from harness.job.runner import run_job

    if cfg.protocol.name != "tuned":
        return [run_job(cfg, work_dir)]
    container = OmegaConf.to_container(cfg, resolve=True)
    base = Path(work_dir) if work_dir else None

    def run(sub: dict) -> dict:
        p = sub["protocol"]
        folder = base / f"{p['stage']}_lr{sub['method']['lr']:.3g}_s{sub['seed']}" if base else None
        return run_job(OmegaConf.create(sub), folder)

    rows = [run(c) for c in search_configs(container)]
    finished = load(cfg.store.url, status="finished", decode=False)
    lr = choose(container, finished)
    if lr is None:
        print(f"[harness] {cfg.method.name}: no search trial finished; no final runs")
        return rows
    print(f"[harness] {cfg.method.name}: chose lr {lr:.3g} on validation "
          f"{cfg.trainer.select_metric} from {len(rates(container))} rates")
    return rows + [run(c) for c in final_configs(container, lr)]
