"""Store operations that outlive their server's restart.

A sweep into a shared database should not end because the database restarted: the runner's
store operations (open, claim, renew, release, record, and the reads of the runner and the
summary) go through :func:`patiently`, which tries an operation again, with a growing pause,
while the backend says the store is unreachable (:class:`StoreUnreachable`: never for a wrong
password, a missing right or a bad statement, which fail at once).

The patience is counted from the start of an outage and shared by the whole process
(:data:`OUTAGE`): once the store has been unreachable for ``$PEFT_HARNESS_STORE_RETRY_S``
seconds (default :data:`DEFAULT_RETRY_S`), each operation is tried once until one succeeds, so a
store that is gone for good costs one wait, not one per operation (and one more at the end of
the sweep, for the runs it kept: :meth:`Outage.be_patient_again`). What a run could not record
meanwhile is kept in its folder (``unrecorded.json``, :mod:`harness.job.unrecorded`).
"""
from __future__ import annotations

import math
import os
import sys
import threading
import time
from typing import Callable

from harness.results.store import StoreError, StoreUnreachable, open_store

RETRY_ENV = "PEFT_HARNESS_STORE_RETRY_S"
DEFAULT_RETRY_S = 90.0
FIRST_PAUSE_S, LONGEST_PAUSE_S = 0.5, 2.0


def retry_budget() -> float:
    """How long an outage is waited out (seconds): ``$PEFT_HARNESS_STORE_RETRY_S``, else the
    default; StoreError (bad input) unless a number of seconds, 0 or more."""
    text = os.environ.get(RETRY_ENV, "").strip()
    if not text:
        return DEFAULT_RETRY_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise StoreError(f"{RETRY_ENV} must be a number of seconds (0 or more), got {text!r}")
    return value


class Outage:
    """The store's outage as this process sees it (shared by its threads): when it began, how
    many there were and how long they lasted, for the sweep's summary."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.since: float | None = None  # when the outage began
        self.patient_from: float | None = None  # when the patience being spent began
        self.count, self.total_s = 0, 0.0

    def failed(self, exc: BaseException, budget: float) -> float:
        """Note a failed attempt; the seconds of patience left (0 or less: none)."""
        with self.lock:
            now = time.monotonic()
            if self.since is None:
                self.since, self.patient_from, self.count = now, now, self.count + 1
                print(f"[harness] the results store is unreachable ({exc}); waiting up to {budget:g} s "
                      f"for it to come back (${RETRY_ENV})", file=sys.stderr, flush=True)
            return self.patient_from + budget - now

    def be_patient_again(self) -> None:
        """A full wait once more for an outage whose patience is spent (what the sweep kept on
        disk is worth one more wait before the command ends)."""
        with self.lock:
            if self.since is not None:
                self.patient_from = time.monotonic()

    def lasted(self) -> float:
        with self.lock:
            return 0.0 if self.since is None else time.monotonic() - self.since

    def ended(self) -> None:
        with self.lock:
            if self.since is not None:
                gone = time.monotonic() - self.since
                self.since, self.patient_from, self.total_s = None, None, self.total_s + gone
                print(f"[harness] the results store is back after {gone:.0f} s", file=sys.stderr, flush=True)


OUTAGE = Outage()


def patiently(op: Callable, *args, stop: threading.Event | None = None,
              on_wait: Callable[[], None] | None = None, **kwargs):
    """``op(*args, **kwargs)``, tried again while the store is unreachable, until the outage has
    lasted :func:`retry_budget` seconds (or ``stop`` is set); then its StoreUnreachable. The
    first time it has to wait, ``on_wait()`` runs (the runner keeps its finished run on disk)."""
    budget, pause, waited = retry_budget(), FIRST_PAUSE_S, False
    while True:
        try:
            result = op(*args, **kwargs)
        except StoreUnreachable as exc:
            left = OUTAGE.failed(exc, budget)
            if left <= 0 or (stop is not None and stop.is_set()):
                raise StoreUnreachable(f"{exc} (unreachable for {OUTAGE.lasted():.0f} s; "
                                       f"${RETRY_ENV}={budget:g})") from None
            if on_wait is not None and not waited:
                on_wait()
            waited = True
            if stop is None:
                time.sleep(min(pause, left))
            elif stop.wait(min(pause, left)):  # stopped meanwhile: no attempt more
                raise StoreUnreachable(str(exc)) from None
            pause = min(2 * pause, LONGEST_PAUSE_S)
            continue
        OUTAGE.ended()
        return result


class PatientStore:
    """The store at ``url`` for the runner: every operation waits out an outage
    (:func:`patiently`). A store unreachable when this is made is opened on first use; any other
    StoreError (not a store, a newer schema) is raised at once."""

    def __init__(self, url: str, create: bool = True) -> None:
        self.url, self.create, self._store = url, create, None
        try:
            patiently(self._opened)
        except StoreUnreachable:
            pass  # said by OUTAGE; each operation tries again

    def _opened(self):
        if self._store is None:
            self._store = open_store(self.url, create=self.create)
        return self._store

    def _call(self, method: str, *args, stop=None, on_wait=None):
        return patiently(lambda: getattr(self._opened(), method)(*args), stop=stop, on_wait=on_wait)

    def claim(self, config_hash: str, run_id: str, owner: str, lease_s: float, force: bool = False):
        return self._call("claim", config_hash, run_id, owner, lease_s, force)

    def renew(self, config_hash: str, run_id: str, lease_s: float, stop=None) -> bool:
        return self._call("renew", config_hash, run_id, lease_s, stop=stop)

    def release(self, config_hash: str, run_id: str) -> None:
        self._call("release", config_hash, run_id)

    def record(self, row: dict, curves: list[dict], predictions: dict | None = None, on_wait=None) -> None:
        self._call("record", row, curves, predictions, on_wait=on_wait)

    def runs(self):
        return self._call("runs")

    def claims(self):
        return self._call("claims")

    def finished_hashes(self) -> set[str]:
        return self._call("finished_hashes")


def load_patiently(url: str, status: str | None = None, decode: bool = True):
    """:func:`harness.results.load`, waiting out an outage."""
    from harness.results import load

    return patiently(load, url, status=status, decode=decode)
