"""Shared test helpers: compose the real configs, run tiny jobs in-process, offline."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
# Tiny models run fastest on one thread (and worker processes inherit it).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402

from harness.job.validation import register_schemas, validate  # noqa: E402
from harness.paths import conf_dir  # noqa: E402

register_schemas()

TINY = ["model=tiny_bert", "task=synthetic", "trainer=smoke"]


def compose_config(overrides: list[str] | None = None):
    """The composed (unvalidated) DictConfig for these command-line overrides."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides or []))


def tiny_config(store: Path, *overrides: str):
    return compose_config([*TINY, f"store.url={store}", *overrides])


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pyproject's addopts): a test process per core this run may use (its CPU
    affinity, not the host's count), up to 4; each runs torch on one thread (above)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(4, cores)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped where torch sees no CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    os.environ["PEFT_HARNESS_CACHE"] = str(tmp_path_factory.mktemp("harness-cache"))


@pytest.fixture
def store_path(tmp_path) -> Path:
    return tmp_path / "results.sqlite"


@pytest.fixture
def run_tiny(store_path):
    """run_tiny("method=dora", ...) -> the row recorded for one tiny in-process run."""
    from harness.job.runner import run_job

    def run(*overrides: str) -> dict:
        return run_job(tiny_config(store_path, *overrides))

    return run




@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session (tests/postgres_server.py); skips, with the
    reason in one line, where the server binaries or psycopg are not installed."""
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'peft-harness[postgres]'")
    from tests.postgres_server import Server

    try:
        server = Server()
    except (FileNotFoundError, PermissionError) as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres_server) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.database()


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real one-node SLURM cluster for the session (tests/slurm_cluster.py); skips, with the
    reason in one line, where the SLURM or MUNGE binaries are not installed."""
    from tests.slurm_cluster import Cluster

    try:
        cluster = Cluster()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    yield cluster
    cluster.stop()


__all__ = ["compose_config", "tiny_config", "validate", "TINY"]
