"""A run in a process of its own: start it, stop it at its time limit, and never leave it behind.

:func:`run_worker` starts one run's worker in a new process group and waits for it: a process
forked from a fork server that imported torch, transformers, peft and the methods once
(:data:`PRELOAD`; Python's ``multiprocessing`` forkserver), or ``python -m harness.job.worker`` for
a CUDA run, where there is no fork, or when a command is given. Past ``trainer.timeout_s``, or if
the waiting process is interrupted, the group is killed. :func:`watch_sweep` ends a launcher's worker process (joblib, ...) and the run it trains
when the command's own process is gone: a SIGKILL of the command leaves no handler that could stop
the launcher's pool, and its queued jobs would otherwise go on training.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

# The command's process id and host, set for its runs: a launcher's worker process on the same
# host ends with it (see watch_sweep); on another host (SLURM exports the environment) the pid
# means nothing. Defined in harness.paths, which the tasks layer may import.
from harness.paths import SWEEP_HOST_ENV, SWEEP_PID_ENV  # noqa: E402,F401


class WorkerError(RuntimeError):
    pass


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


# Imported once by the fork server; each run's worker process is forked from it.
PRELOAD = ["harness.job.warm"]


def forkserver_available() -> bool:
    """Whether workers can be forked from a fork server here: the platform forks, and this process
    uses one of Python's own start methods (a joblib/loky worker process does not: a process
    forked from there could not rebuild loky's context, so it starts fresh workers instead)."""
    import multiprocessing

    return ("forkserver" in multiprocessing.get_all_start_methods()
            and multiprocessing.get_start_method(allow_none=True) in (None, "fork", "spawn", "forkserver"))


def _forkserver():
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def warm_up() -> None:
    """Start the fork server now, so that it imports torch and the rest while this process
    composes the sweep (it is otherwise started by the first run)."""
    if forkserver_available():
        from multiprocessing import forkserver

        _forkserver()
        forkserver.ensure_running()


class _Forked:
    """A worker forked from the fork server, with the part of ``subprocess.Popen`` used here."""

    def __init__(self, process) -> None:
        self.process, self.pid = process, process.pid

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired("worker", timeout)
        return self.process.exitcode

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode


def _start(command: list[str] | None, job: Path, out: Path, device_kind: str | None = None):
    """``command`` None: fork a worker from the fork server (torch and the methods already
    imported); else start ``command JOB RESULT`` as a fresh process. Either way in a new
    session (its own process group), with this process's environment and folder as they are now.

    A CUDA run always gets a fresh process: CUDA cannot be used in a process forked after the
    driver was initialised, and libraries the fork server imports (bitsandbytes) initialise it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if command is None and forkserver_available() and device_kind != "cuda":
        from harness.job.worker import forked_main

        process = _forkserver().Process(target=forked_main, name=f"harness.job.worker {job.parent}",
                                        args=(str(job), str(out), env, os.getcwd(), os.getpid()))
        process.start()
        return _Forked(process)
    command = command or [sys.executable, "-m", "harness.job.worker"]
    return subprocess.Popen([*command, str(job), str(out)], start_new_session=True, env=env)


def run_worker(command: list[str] | None, container: dict, row: dict, work_dir: Path,
               timeout_s: float | None = None) -> tuple[dict, list[dict], dict]:
    """Run :func:`harness.run.tracked.run_tracked` in a process of its own (forked from the fork server when ``command``
    is None, else ``command``); raise if it fails, dies or runs past ``timeout_s`` (then it is
    killed, with any process it started)."""
    job, out = work_dir / "job.json", work_dir / "result.json"
    job.write_text(json.dumps({"config": container, "row": row}))
    out.unlink(missing_ok=True)
    proc = _start(command, job, out, row.get("device_kind"))
    _CHILDREN.add(proc)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise WorkerError(f"run exceeded trainer.timeout_s={timeout_s:g} s and was stopped") from None
    except BaseException:
        _kill_group(proc)  # Ctrl-C or an error here: the worker does not train on alone
        raise
    finally:
        _CHILDREN.discard(proc)
    if out.is_file():
        payload = json.loads(out.read_text())
        if payload.get("error"):
            raise WorkerError(payload["error"])
        from harness.run.tracked import arrays

        return payload["fields"], payload["curves"], arrays(payload.get("predictions") or {})
    if proc.returncode < 0:
        raise WorkerError(f"worker process killed by signal {-proc.returncode}"
                          + (" (out of memory?)" if proc.returncode == -9 else ""))
    raise WorkerError(f"worker process exited with code {proc.returncode} and no result")


# Worker processes running now, killed if the sweep that started this process dies.
_CHILDREN: set = set()
_watching = False


def watch_sweep() -> None:
    """In a launcher's worker process (joblib, ...): end this process and the run it trains when
    the sweep's own process is gone (SIGKILL leaves no handler to stop the launcher's pool)."""
    global _watching
    import socket

    sweep_pid = int(os.environ.get(SWEEP_PID_ENV) or 0)
    elsewhere = os.environ.get(SWEEP_HOST_ENV, socket.gethostname()) != socket.gethostname()
    if _watching or not sweep_pid or sweep_pid == os.getpid() or elsewhere:
        return
    _watching = True

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(sweep_pid, 0)
            except ProcessLookupError:
                for proc in list(_CHILDREN):
                    _kill_group(proc)
                os._exit(1)
            except PermissionError:
                pass

    threading.Thread(target=watch, daemon=True).start()


