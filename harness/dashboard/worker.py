"""Work that takes seconds runs in a process of its own: the report's analysis behind the findings
panel and the report written for an export. Python runs one thread at a time, so in the server's
process a table's analysis (seconds on a big store) would hold up every other view; here the
page's filters, figure and tables stay quick while it runs, and a findings request that a newer
one makes stale is dropped before it starts.

The process is started on first use (``spawn``: a fresh interpreter, not a copy of the server's
threads), reads the store itself, read-only, and loads the same plug-ins. What it runs:
:func:`harness.dashboard.findings.findings_sections` and :func:`harness.dashboard.export.export_file`.
"""
from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import threading
from concurrent.futures.process import BrokenProcessPool

_view = None  # in the worker process: its own StoreView of the store
_url = None


def _start(url: str, plugins: list[str]) -> None:
    """The worker process's start: plug-ins loaded, the store opened (or, while it cannot be
    reached, at the first request, which then meets the error: a start that raised would leave
    no worker at all)."""
    global _url
    from harness.job.plugins import load_plugins

    load_plugins(plugins)
    _url = url
    try:
        worker_view()
    except Exception:  # noqa: BLE001 - shown by the request that needs the store
        pass


def _ready() -> bool:
    """The worker made ready for its first request: the report's modules imported and the store
    read (an error here is the first request's to meet and show)."""
    import harness.report.build  # noqa: F401 - the report's analysis, which the findings run
    import harness.report.sections  # noqa: F401

    worker_view().snapshot()
    return True


def worker_view():
    """The worker process's own view of the store (the functions it runs read the store with
    it), opened on first use; StoreError while the store cannot be opened."""
    global _view
    if _view is None:
        from harness.dashboard.data import StoreView

        _view = StoreView(_url)
    return _view


class Worker:
    """The one process doing the slow work for the server; ``run`` waits for its answer."""

    def __init__(self, url: str, plugins: list[str] | None = None) -> None:
        self.url, self.plugins = url, list(plugins or [])
        self._pool: futures.ProcessPoolExecutor | None = None
        self._lock, self._pending = threading.Lock(), {}

    def _executor(self) -> futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                     initializer=_start, initargs=(self.url, self.plugins))
        return self._pool

    def run(self, kind: str, fn, *args):
        """``fn(*args)`` in the worker; a request of the same ``kind`` still waiting is dropped."""
        with self._lock:
            for old in self._pending.pop(kind, []):
                old.cancel()
            try:
                job = self._executor().submit(fn, *args)
            except BrokenProcessPool:  # the worker died (killed, out of memory): a new one
                self._pool = None
                job = self._executor().submit(fn, *args)
            self._pending.setdefault(kind, []).append(job)
        try:
            return job.result()
        except BrokenProcessPool:
            with self._lock:
                self._pool = None
            raise RuntimeError("the dashboard's worker process stopped; try again") from None

    def start(self) -> None:
        """Start the process now, in the background (its imports and its read of the store take
        seconds), so that the first findings do not wait for them."""
        with self._lock:
            self._executor().submit(_ready)

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
