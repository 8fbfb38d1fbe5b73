"""Worker process: ``python -m harness.job.worker JOB.json RESULT.json`` runs one job in isolation.

JOB.json holds the resolved config and the run's identity row; RESULT.json gets the metric
fields and curves, or the error. The worker ends itself if the sweep that started it dies, so a
killed sweep leaves no orphan training in the background.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path


def _exit_with_parent(parent: int | None = None, poll_s: float = 1.0) -> None:
    """End this process when the one that started the run (``parent``; default: this process's
    parent) is gone."""
    start_parent = os.getppid()

    def gone() -> bool:
        if parent is None:
            return os.getppid() != start_parent
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if gone():
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def forked_main(job_path: str, result_path: str, env: dict, cwd: str, parent: int) -> None:
    """A worker forked from the fork server (harness.job.isolation): a session of its own, the
    environment and folder of the process that started the run, then :func:`main`."""
    os.setsid()
    (Path(job_path).parent / "worker.pid").write_text(f"{os.getpid()}\n")
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.exit(main(job_path, result_path, parent))


def main(job_path: str, result_path: str, parent: int | None = None) -> int:
    from harness.quiet import quiet_libraries

    quiet_libraries()
    from harness.results.identity import config_hash
    from harness.run.tracked import lists, one_line_error, run_tracked
    from harness.job.validation import from_container
    from harness.run import parallel

    _exit_with_parent(parent)
    job = json.loads(Path(job_path).read_text())
    try:
        # The job file must be the run its parent started: same config (by hash) and run id.
        if config_hash(job["config"]) != job["row"]["config_hash"]:
            raise RuntimeError("the job file's config does not match the run it was written for "
                               f"(run {job['row']['run_id']})")
        if Path(job_path).parent.name != job["row"]["run_id"]:
            raise RuntimeError(f"job file in {Path(job_path).parent}, not in its run's own folder")
        cfg = from_container(job["config"])
        processes = cfg.trainer.processes
        if processes > 1 and not parallel.in_group():  # start the run's processes, wait for them
            code = parallel.launch(job_path, result_path, processes)
            if Path(result_path).is_file():
                return code
            payload = {"error": parallel.first_error(result_path, processes)
                       or f"RuntimeError: data-parallel run: torchrun exited with code {code} and no result"}
        else:
            out = run_tracked(cfg, isolated=True, work_dir=Path(job_path).parent, row=job["row"])
            if out is None:  # another process of a data-parallel run: the first one reports
                return 0
            fields, curves, predictions = out
            payload = {"fields": fields, "curves": curves, "predictions": lists(predictions)}
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which records it
        traceback.print_exc()
        payload = {"error": one_line_error(exc)}
        if parallel.in_group():  # the run's first error (by time) is the one reported
            payload["time"] = time.time()
            result_path = str(parallel.rank_error_file(result_path, parallel.rank()))
    tmp = Path(result_path + ".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(result_path)
    return 0 if "fields" in payload else 1


if __name__ == "__main__":
    code = main(sys.argv[1], sys.argv[2])
    from harness.run.parallel import in_group

    if in_group():
        # A data-parallel process leaves without the interpreter's teardown: torch's distributed
        # state destroyed there can abort a process whose part is done ("terminate called
        # without an active exception", seen in 2 of 43 FSDP runs), and torchrun then stops the
        # others before the first has reported. Its result is already written.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
