"""The store as the dashboard reads it: a snapshot of its runs, reloaded when the store changes,
the filters' choices, and the runs a set of filters picks.

Everything is read through :mod:`harness.results` with ``create=False``: an SQLite file is
opened read-only, a PostgreSQL store in read-only transactions, so nothing is ever written and a
role with SELECT only can use it. Runs are picked with the report's own selection
(:func:`harness.report.select.select_runs`: its stages, its axes, runs of one task name on other
data told apart), and a configuration is the report's group (:func:`harness.report.aggregate.metric_frame`).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.fields import FIELDS, Field
from harness.report.aggregate import metric_frame
from harness.report.select import AXES, STAGES, Selection, deduplicate, select_runs
from harness.results import open_store
from harness.results.backends.common import holder_still_holds
from harness.errors import first_line
from harness.results.store import StoreError, StoreUnreachable, redact

# The filters besides the report's axes (AXES): the protocol stage, the harness version, the status.
FILTERS = (*AXES, "harness_version", "status")
NUMERIC_AXES = ("r", "seed")
PICKED = 8  # selections a view keeps


def axis_fields() -> list[Field]:
    """The fields a Pareto axis may show: every recorded number with a direction."""
    return [f for f in FIELDS.values() if f.higher_is_better is not None and f.type in ("integer", "real")]


def axis_label(f: Field) -> str:
    """'Peak memory MiB (lower is better)': the report's label, its unit, its direction."""
    unit = "" if f.report or not f.unit or f.report_scale != 1.0 else f" [{f.unit}]"
    return f"{f.report or f.name}{unit} ({'higher' if f.higher_is_better else 'lower'} is better)"


@dataclass
class Snapshot:
    """The store at one moment: ``raw`` as stored, ``runs`` with the report's task names (one
    task's runs on other data told apart), ``per_run`` one row per finished run (duplicates of a
    configuration left out, as the report does) with its configuration's label and every axis
    field in shown units, and the claims of the runs training now."""

    raw: pd.DataFrame
    runs: pd.DataFrame
    per_run: pd.DataFrame
    claims: pd.DataFrame
    mark: Any
    loaded_at: float = field(default_factory=time.time)
    _curves: pd.DataFrame | None = None

    def counts(self) -> dict[str, int]:
        status = self.runs["status"].value_counts() if len(self.runs) else {}
        return {"finished": int(status.get("finished", 0)), "failed": int(status.get("failed", 0)),
                "running": int((self.claims["state"] == "running").sum()) if len(self.claims) else 0}


def _per_run(runs: pd.DataFrame) -> pd.DataFrame:
    finished, _ = deduplicate(runs[runs["status"] == "finished"].reset_index(drop=True))
    if finished.empty:
        return pd.DataFrame(columns=["task", "model", "method", "quant", "r", "seed", "run_id", "label"])
    out = metric_frame(finished)
    for f in axis_fields():
        out[f.display_name] = pd.to_numeric(finished[f.name], errors="coerce").to_numpy() / f.report_scale
    out["config_json"] = finished["config_json"].to_numpy()
    return out


def _claims(store, raw: pd.DataFrame) -> pd.DataFrame:
    """The store's claims, each with its state (running, or stale: its lease ran out or its
    process on this host is gone) and what the store already knows of its configuration."""
    claims = store.claims()
    if claims.empty:
        return claims.assign(state=pd.Series(dtype=object), known=pd.Series(dtype=object))
    claims = claims.copy()
    claims["state"] = ["running" if holder_still_holds(c) else "stale"
                       for c in claims.to_dict("records")]
    seen = raw.drop_duplicates("config_hash", keep="last").set_index("config_hash")
    claims["known"] = [_describe(seen.loc[h]) if h in seen.index else "" for h in claims["config_hash"]]
    return claims.sort_values("claimed_at").reset_index(drop=True)


def _describe(row) -> str:
    r = "" if pd.isna(row["r"]) else f" r={int(row['r'])}"
    return f"{row['method']} ({row['quant']}{r}, seed {row['seed']}) on {row['task']} / {row['model']}"


class StoreView:
    """One store, read-only: :meth:`snapshot` reloads the runs when the store changed since.

    A store that cannot be read for a while (its server restarting, the network down) leaves
    the last snapshot in use: every view keeps working on what was read, :meth:`read` says why
    the store is not read now, and only a look at the store (``probe``: the page's refresh, a page
    opened) tries it again, so that no view waits on a server that does not answer."""

    def __init__(self, url: str) -> None:
        self.url, self.label = str(url), redact(str(url))
        self.store = open_store(self.url, create=False)  # StoreError: missing, foreign, unreachable
        self._lock, self._snapshot = threading.Lock(), None
        self._picked, self._picked_lock = {}, threading.Lock()
        self._down: str | None = None  # why the last try could not read the store (one line)

    def mark(self) -> Any:
        """What changes when a run is recorded: the runs' count and latest start (runs are only
        ever added). None where the backend cannot say cheaply (every look then reloads)."""
        version_mark = getattr(self.store, "version_mark", None)  # a plug-in backend may not have it
        return None if version_mark is None else version_mark()

    def read(self, refresh_claims: bool = False, probe: bool = True) -> tuple[Snapshot, str | None]:
        """(the store's runs, read again if they changed, and its claims with ``refresh_claims``;
        why the store is not read now, None when it was). While it cannot be read, the last
        snapshot, the store tried again only with ``probe``; StoreError if it never was read."""
        down = self._down
        if down is not None and not probe and self._snapshot is not None:
            return self._snapshot, down
        try:
            snap = self._read(refresh_claims)
        except StoreError as exc:
            if self._snapshot is None:
                raise
            kind = "store unreachable" if isinstance(exc, StoreUnreachable) else "store not readable"
            self._down = down = f"{kind}: {redact(first_line(exc))}"
            return self._snapshot, down
        self._down = None
        return snap, None

    def snapshot(self, refresh_claims: bool = False) -> Snapshot:
        """:meth:`read`'s snapshot, the store not tried while it is down."""
        return self.read(refresh_claims, probe=False)[0]

    def _read(self, refresh_claims: bool) -> Snapshot:
        with self._lock:
            mark, snap = self.mark(), self._snapshot
            if snap is None or mark is None or mark != snap.mark:
                raw = self.store.runs()
                runs = select_runs(raw, Selection(stage="all"))
                runs = pd.concat(runs, ignore_index=True).sort_values("created_at", kind="stable")
                snap = Snapshot(raw, runs.reset_index(drop=True), _per_run(runs), _claims(self.store, raw), mark)
            elif refresh_claims:
                snap.claims, snap.loaded_at = _claims(self.store, snap.raw), time.time()
            self._snapshot = snap
            return snap

    def pick(self, filters: dict) -> pd.DataFrame:
        """:func:`pick` on the current snapshot, kept for the last few filters while it is current."""
        snap = self.snapshot()
        key = (snap.mark, id(snap), tuple(sorted((k, repr(v)) for k, v in filters.items() if v)))
        with self._picked_lock:
            if key in self._picked:
                return self._picked[key]
        chosen = pick(snap.runs, filters)
        with self._picked_lock:
            self._picked[key] = chosen
            while len(self._picked) > PICKED:
                self._picked.pop(next(iter(self._picked)))
        return chosen

    def curves(self, run_ids: list[str]) -> pd.DataFrame:
        snap = self.snapshot()
        if snap._curves is None:
            self._up()
            snap._curves = self.store.curves()
        return snap._curves[snap._curves["run_id"].isin(run_ids)]

    def predictions(self, run_ids: list[str]) -> dict:
        self._up()
        return self.store.predictions(run_ids, split="test")

    def _up(self) -> None:
        """StoreUnreachable at once while the store is down (a look at it tries it again)."""
        if self._down is not None:
            raise StoreUnreachable(self._down)


def choices(runs: pd.DataFrame) -> dict[str, list]:
    """Each filter's values in the store, sorted (numbers as numbers)."""
    out = {}
    for name in FILTERS:
        values = runs[name].dropna().unique() if name in runs.columns else []  # each value once, then in Python
        if name in NUMERIC_AXES:
            out[name] = sorted({int(v) for v in pd.to_numeric(pd.Series(values), errors="coerce").dropna()})
        else:
            out[name] = sorted({str(v) for v in values if str(v) != ""})
    out["stage"] = list(STAGES)
    return out


def selection(filters: dict) -> Selection:
    """The report's :class:`Selection` of the filters on its axes and stage."""
    values = {a: list(filters[a]) for a in AXES if filters.get(a)}
    return Selection(values, stage=filters.get("stage") or "final")


def pick(runs: pd.DataFrame, filters: dict) -> pd.DataFrame:
    """The runs (finished and failed, oldest first) the filters pick."""
    finished, failed = select_runs(runs, selection(filters))
    chosen = pd.concat([finished, failed], ignore_index=True)
    for name in ("harness_version", "status"):
        if filters.get(name):
            chosen = chosen[chosen[name].astype(str).isin([str(v) for v in filters[name]])]
    return chosen.sort_values("created_at", kind="stable").reset_index(drop=True)


def report_selection(runs: pd.DataFrame, chosen: pd.DataFrame, filters: dict) -> Selection:
    """The report's selection of the same runs: its axes and stage, narrowed to the chosen
    runs' configurations where a filter the report has no axis for (version, status) narrows."""
    s = selection(filters)
    if any(filters.get(name) for name in ("harness_version", "status")):
        s.config_hashes = sorted(set(chosen["config_hash"]))
    return s
