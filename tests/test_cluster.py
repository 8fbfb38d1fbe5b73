"""Sweeps through Hydra's own cluster launchers into one PostgreSQL store: a real local Ray
cluster (``ray start``, 2 worker CPUs) and submitit's local executor, each with a point that
fails; the summary and the exit code come from the store; a killed driver's sweep is finished by
running the same command again, every configuration recorded once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.results import load
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
# Each run in a worker process of its own, as outside the tests (trainer=smoke trains in-process).
FAST = ["trainer.max_steps=2", "trainer.epochs=1", "trainer.latency_batches=1", "report.enabled=false",
        "trainer.isolate=true"]
# Six configurations; method.builder=raises_test (tests/failing_methods.py) fails on purpose.
PLUGIN = ["seed=0,1,2", "plugins=[tests.failing_methods]"]
GRID = ["method.builder=lora,raises_test", *PLUGIN]


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    return env


def harness(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """``python -m harness -m <tiny> *args`` in ``cwd``, its output in a log file of its own."""
    log = cwd / f"harness-{time.time_ns()}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "harness", "-m", *TINY, *FAST, *args], cwd=cwd,
                                env={**(env or os.environ), **_env()}, stdout=out, stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def finish(proc: subprocess.Popen, timeout: float = 400) -> tuple[int, str]:
    code = proc.wait(timeout)
    return code, proc.log.read_text()


def check_store(url: str, each: int = 3) -> None:
    """``each`` finished and ``each`` failed runs, every configuration once."""
    runs = load(url, decode=False)
    assert runs["config_hash"].is_unique and len(runs) == 2 * each, runs[["method", "seed", "status"]]
    by = runs.groupby("status")["seed"].count().to_dict()
    assert by == {"finished": each, "failed": each}
    assert set(runs.loc[runs["status"] == "failed", "error"].str.contains("always fails")) == {True}


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local Ray cluster of its own: a head node with 2 CPUs, stopped at the end."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install 'peft-harness[cluster]'")
    folder = tmp_path_factory.mktemp("ray")
    port = 20000 + os.getpid() % 20000
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    started = subprocess.run([*ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
                              "--include-dashboard=false", f"--temp-dir={folder}", "--disable-usage-stats"],
                             env=_env(), capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr[-2000:]
    yield f"127.0.0.1:{port}"
    subprocess.run([*ray, "stop", "--force"], env=_env(), capture_output=True, timeout=120)


def test_a_sweep_on_a_local_ray_cluster_records_every_run_once(ray_cluster, pg_url, tmp_path):
    launcher = ["hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={ray_cluster}"]
    code, out = finish(harness([*GRID, *launcher, f"store.url='{pg_url}'"], tmp_path))
    assert code == 1, out[-3000:]  # some runs failed: exit 1, from the store
    assert "3 finished, 3 failed" in out
    check_store(pg_url)
    code, out = finish(harness([*PLUGIN, "method.builder=lora", *launcher, f"store.url='{pg_url}'"], tmp_path))
    assert code == 0 and "3 finished (3 of them before this command, skipped), 0 failed" in out
    assert len(load(pg_url)) == 6  # nothing trained or recorded twice


@pytest.mark.slow  # submitit's launcher is run by default through SLURM below
def test_a_sweep_on_submitit_local_records_every_run_once(pg_url, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install 'peft-harness[cluster]'")
    code, out = finish(harness([*GRID, "hydra/launcher=submitit_local", f"store.url='{pg_url}'"], tmp_path))
    assert code == 1 and "3 finished, 3 failed" in out, out[-3000:]
    check_store(pg_url)


def test_a_sweep_on_a_slurm_cluster_records_every_run_once(slurm_cluster, pg_url, tmp_path):
    """The submitit_slurm launcher as on a real cluster: sbatch into a partition, each job in its
    own SLURM allocation (one core, 2 GB), the results in the shared store."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install 'peft-harness[cluster]'")
    from tests.slurm_cluster import PARTITION

    launcher = ["hydra/launcher=submitit_slurm", f"hydra.launcher.partition={PARTITION}",
                "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10"]
    # one job per core of the 2-core node: both at once
    grid = ["method.builder=lora,raises_test", "plugins=[tests.failing_methods]"]
    code, out = finish(harness([*grid, *launcher, f"store.url='{pg_url}'"], tmp_path, slurm_cluster.env))
    assert code == 1 and "1 finished, 1 failed" in out, out[-3000:]
    check_store(pg_url, each=1)
    # Each job ran inside a SLURM allocation of its own, in the partition asked for.
    slurm = [p.get("slurm", {}) for p in load(pg_url)["provenance"]]
    assert {s.get("partition") for s in slurm} == {PARTITION}, slurm
    assert len({(s["array_job_id"], s["array_task_id"]) for s in slurm}) == 2, slurm


@pytest.mark.slow  # resuming a killed sweep runs by default in test_cli.py (joblib, SQLite)
def test_killing_the_driver_and_running_again_finishes_the_rest(ray_cluster, pg_url, tmp_path):
    launcher = ["hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={ray_cluster}"]
    args = ["method=lora,dora", "seed=0,1,2", *launcher, f"store.url='{pg_url}'", "trainer.max_steps=40",
            "trainer.timeout_s=300"]
    driver = harness(args, tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline and driver.poll() is None:
        try:
            if len(load(pg_url)) >= 1:
                break
        except Exception:  # noqa: BLE001 - no store yet
            pass
        time.sleep(0.5)
    assert driver.poll() is None, finish(driver)[1][-3000:]
    os.kill(driver.pid, signal.SIGKILL)  # the driver only, as a killed terminal or node would
    finish(driver)
    before = len(load(pg_url))
    assert 1 <= before < 6, "the sweep finished before it could be interrupted"
    code, out = finish(harness(args, tmp_path))
    runs = load(pg_url, decode=False)
    assert code == 0, out[-3000:]
    assert len(runs) == 6 and runs["config_hash"].is_unique and set(runs["status"]) == {"finished"}


@pytest.mark.parametrize("args,needle", [
    (["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu"],
     "hydra/launcher=submitit_slurm: SLURM runs the jobs on the cluster's nodes, which cannot share the "
     "SQLite store"),
    (["hydra/launcher=ray_cluster", "hydra.launcher.ray.init.address=127.0.0.1:1"],
     "hydra.launcher.ray.init.address=127.0.0.1:1: no Ray cluster answers there"),
    (["store.url=postgresql://me@/results?host=/run/pg"],
     "cannot read store.url=postgresql://me@/results?host=/run/pg: Hydra takes a value holding '=', '?', "
     "'&', ';', spaces or non-ASCII letters only quoted: store.url='postgresql://me@/results?host=/run/pg'"),
])
def test_a_cluster_sweep_that_cannot_work_is_refused_in_one_line(args, needle, tmp_path):
    from tests.test_bad_input import run_harness

    ran = run_harness(["-m", *TINY, "method=lora,dora", f"store.url={tmp_path / 's.sqlite'}", *args], tmp_path)
    assert ran.code == 2 and len(ran.err_lines) == 1 and needle in ran.err, ran.err
    assert not (tmp_path / "s.sqlite").exists() and not (tmp_path / "outputs").exists()
