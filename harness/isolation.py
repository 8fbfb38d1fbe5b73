"""A run in a process of its own: start it, stop it at its time limit, and never leave it behind.

:func:`run_worker` starts ``python -m harness.worker`` for one run in a new process group and
waits for it; past ``trainer.timeout_s``, or if the waiting process is interrupted, the group is
killed. :func:`watch_sweep` ends a launcher's worker process (joblib, ...) and the run it trains
when the command's own process is gone: a SIGKILL of the command leaves no handler that could stop
the launcher's pool, and its queued jobs would otherwise go on training.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

# Set by the command's own process: a launcher's worker process ends with it (see watch_sweep).
SWEEP_PID_ENV = "PEFT_HARNESS_SWEEP_PID"


class WorkerError(RuntimeError):
    pass


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_worker(command: list[str], container: dict, row: dict, work_dir: Path,
               timeout_s: float | None = None) -> tuple[dict, list[dict], dict]:
    """Run :func:`execute` in a fresh Python process; raise if it fails, dies or runs past
    ``timeout_s`` (then it is killed, with any process it started)."""
    job, out = work_dir / "job.json", work_dir / "result.json"
    job.write_text(json.dumps({"config": container, "row": row}))
    out.unlink(missing_ok=True)
    # Its own process group: a timeout kills the worker and whatever it started.
    proc = subprocess.Popen([*command, str(job), str(out)], start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
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
        return payload["fields"], payload["curves"], arrays(payload.get("predictions") or {})
    if proc.returncode < 0:
        raise WorkerError(f"worker process killed by signal {-proc.returncode}"
                          + (" (out of memory?)" if proc.returncode == -9 else ""))
    raise WorkerError(f"worker process exited with code {proc.returncode} and no result")


def arrays(predictions: dict) -> dict:
    """Predictions read back from JSON (the inverse of :func:`lists`)."""
    import numpy as np

    return {split: {k: np.asarray(v) for k, v in arrays.items()} for split, arrays in predictions.items()}


def lists(predictions: dict) -> dict:
    """Predictions as JSON can hold them."""
    return {split: {k: v.tolist() if hasattr(v, "tolist") else list(v) for k, v in arrays.items()}
            for split, arrays in predictions.items()}


# Worker processes running now, killed if the sweep that started this process dies.
_CHILDREN: set[subprocess.Popen] = set()
_watching = False


def watch_sweep() -> None:
    """In a launcher's worker process (joblib, ...): end this process and the run it trains when
    the sweep's own process is gone (SIGKILL leaves no handler to stop the launcher's pool)."""
    global _watching
    sweep_pid = int(os.environ.get(SWEEP_PID_ENV) or 0)
    if _watching or not sweep_pid or sweep_pid == os.getpid():
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


