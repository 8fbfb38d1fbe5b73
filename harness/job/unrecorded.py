"""Runs the store could not take, kept in their folders until it can (``unrecorded.json``).

A finished run whose record fails (a full disk, a store file gone, a database unreachable past
the patience of :mod:`harness.results.retry`) is written to its run folder, so that nothing
trained is lost; ``python -m harness.results import`` records it later. A run that waits for
its store to come back is kept there while it waits, and the file is renamed
``unrecorded.imported.json`` once the run is recorded. At the end of a sweep the command
records what its runs kept (:func:`record_kept`), so an outage over by then loses nothing, and
:func:`kept_lines` says what happened.
"""
from __future__ import annotations

import json
import shlex
from datetime import datetime
from pathlib import Path

UNRECORDED = "unrecorded.json"
IMPORTED = "unrecorded.imported.json"


def keep_unrecorded(work_dir: Path, row: dict, curves: list[dict], predictions: dict) -> Path:
    """Write a run the store could not take to its folder, for ``python -m harness.results import``."""
    from harness.run.tracked import lists

    path = work_dir / UNRECORDED
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"row": row, "curves": curves, "predictions": lists(predictions)}))
    tmp.replace(path)
    return path


def mark_recorded(path: Path) -> None:
    """The kept run is in the store now: its file is renamed, so that no import records it again."""
    path.replace(path.with_name(IMPORTED))


def _store_of(row: dict, stores: list[str]) -> str:
    """Which of the command's stores a kept run belongs to: the one its config names (stored with
    the password as ``***``, so compared redacted)."""
    from harness.results.store import redact

    named = (json.loads(row.get("config_json") or "{}").get("store") or {}).get("url")
    return next((u for u in stores if redact(u) == redact(named or "")), stores[0])


def record_kept(folder: Path, stores: list[str]) -> int:
    """Record the runs kept under ``folder`` into their stores (waiting out an outage), each once;
    the number recorded. A store still unreachable leaves its runs kept."""
    from harness.run.tracked import arrays
    from harness.results.retry import PatientStore

    kept = sorted(Path(folder).rglob(UNRECORDED)) if stores and Path(folder).is_dir() else []
    opened: dict[str, tuple] = {}
    recorded = 0
    for path in kept:
        try:
            data = json.loads(path.read_text())
            url = _store_of(data["row"], stores)
            if url not in opened:
                store = PatientStore(url)
                opened[url] = (store, set(store.runs()["run_id"]), set(store.finished_hashes()))
            store, have, finished = opened[url]
            row = data["row"]
            # never a run twice, nor a second finished run of a configuration (as results import)
            if row["run_id"] not in have and not (row.get("status") == "finished"
                                                  and row.get("config_hash") in finished):
                store.record(row, data["curves"], arrays(data.get("predictions") or {}))
                have.add(row["run_id"])
                finished |= {row["config_hash"]} if row.get("status") == "finished" else set()
                recorded += 1
        except Exception:  # noqa: BLE001 - still kept, and the summary says how to record it
            continue
        mark_recorded(path)
    return recorded


def settle_kept(folder: Path, stores: list[str], since: str) -> list[str]:
    """At the end of a sweep (in the command's process): record what its runs kept under
    ``folder`` (:func:`record_kept`), and the summary's lines on the store's outages and on the
    runs kept, still kept (with the command that records them) or recorded late."""
    from harness.results.retry import OUTAGE
    from harness.results.store import redact

    if Path(folder).is_dir() and next(Path(folder).rglob(UNRECORDED), None):
        OUTAGE.be_patient_again()
        record_kept(folder, stores)
    lines = kept_lines(folder, since, redact(stores[0]) if stores else "URL", OUTAGE.count > 0)
    if OUTAGE.count:
        lasted, still = OUTAGE.total_s + OUTAGE.lasted(), OUTAGE.since is not None
        lines.insert(0, f"[harness] the results store was unreachable {OUTAGE.count} time"
                        f"{'s' * (OUTAGE.count > 1)} during this command, {lasted:.0f} s in all"
                        f"{' (and still is)' if still else ''}; its operations waited for it")
    return lines


def import_command(folder: Path, store: str) -> str:
    """The command that records the runs kept under ``folder`` into ``store`` (its password
    already redacted), quoted for a POSIX shell: a PostgreSQL URL's ``&`` and a folder's spaces
    paste as they are."""
    return f"python -m harness.results import {shlex.quote(str(folder))} --store {shlex.quote(store)}"


def kept_lines(folder: Path, since: str, store_hint: str, unreachable: bool) -> list[str]:
    """What the sweep's summary says about its kept runs: those still in ``unrecorded.json``
    (and how to record them), those recorded late (kept since the command started at ``since``)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    start = datetime.fromisoformat(since).timestamp()
    pending = list(folder.rglob(UNRECORDED))
    late = [p for p in folder.rglob(IMPORTED) if p.stat().st_mtime >= start - 1]
    why = "the store was unreachable" if unreachable else "the store could not take it"
    lines = []
    if pending:
        n = len(pending)
        lines.append(f"[harness] {n} run{'s' * (n > 1)} kept in {'their folders' if n > 1 else 'its folder'} "
                     f"as {UNRECORDED}: {why}; `{import_command(folder, store_hint)}` records "
                     f"{'them' if n > 1 else 'it'}")
    if late:
        n = len(late)
        lines.append(f"[harness] {n} run{'s' * (n > 1)} kept as {UNRECORDED} while the store "
                     + ("was unreachable, recorded when it came back" if unreachable else
                        "could not take it, recorded since"))
    return lines
