"""What every store backend shares: how per-example arrays are packed, when a claim's holder is
gone, the runs table read back with a column for every declared field, and the reads."""
from __future__ import annotations

import json
import os
import socket
import time
import zlib
from typing import TYPE_CHECKING

from harness.fields import FIELDS
from harness.results.store import CURVE_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

IDS_PER_QUERY = 500  # run ids per "IN (...)" query: within SQLite's oldest limit of 999 parameters
CLAIM_COLUMNS = ("config_hash", "run_id", "owner", "host", "pid", "claimed_at", "expires_at")
HOLDER_COLUMNS = ("run_id", "owner", "host", "pid", "expires_at")


def pack(array) -> tuple[str, str, bytes]:
    """An array as (dtype, shape as JSON, compressed bytes): one example per row, any dtype."""
    import numpy as np

    a = np.ascontiguousarray(array)
    return a.dtype.str, json.dumps(list(a.shape)), zlib.compress(a.tobytes())


def unpack(dtype: str, shape: str, blob) -> "object":
    import numpy as np

    return np.frombuffer(zlib.decompress(bytes(blob)), dtype=np.dtype(dtype)).reshape(json.loads(shape))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_still_holds(holder: dict, now: float | None = None) -> bool:
    """Whether another run's claim still stands: its lease has not expired and, when it was taken
    on this host, its owner process is alive (a claim from another host lives until its lease
    ends: no host can see another's processes)."""
    now = time.time() if now is None else now
    gone = holder["host"] == socket.gethostname() and not pid_alive(int(holder["pid"]))
    return holder["expires_at"] > now and not gone


def claim_values(config_hash: str, run_id: str, owner: str, lease_s: float) -> tuple:
    """A claims row for this process, taken now."""
    now = time.time()
    return config_hash, run_id, owner, socket.gethostname(), os.getpid(), now, now + lease_s


def with_every_field(df: "pd.DataFrame | None") -> "pd.DataFrame":
    """The runs table with a column for every declared field (empty where the store predates it)."""
    import pandas as pd

    df = pd.DataFrame() if df is None else df
    for name in FIELDS:
        if name not in df.columns:
            df[name] = None
    return df


class StoreReads:
    """The reads every SQL backend shares, written once over its ``_query(sql, params)`` (a
    DataFrame, or None while the store has no tables) and its parameter mark (``MARK``: ``?``
    for sqlite3, ``%s`` for psycopg)."""

    MARK = "?"

    def _query(self, sql: str, params: tuple = ()) -> "pd.DataFrame | None":
        raise NotImplementedError

    def runs(self) -> "pd.DataFrame":
        """Every run, oldest first, with a column for every declared field (empty where the
        store predates the field)."""
        return with_every_field(self._query("SELECT * FROM runs ORDER BY created_at"))

    def curves(self) -> "pd.DataFrame":
        import pandas as pd

        df = self._query("SELECT * FROM curves")
        return pd.DataFrame(columns=list(CURVE_COLUMNS)) if df is None else df

    def claims(self) -> "pd.DataFrame":
        import pandas as pd

        df = self._query("SELECT * FROM claims")
        return pd.DataFrame(columns=list(CLAIM_COLUMNS)) if df is None else df

    def predictions(self, run_ids=None, split: str = "test") -> dict[str, dict]:
        """``{run_id: {what: array}}`` for ``split``: all runs (in the table's order), or those in
        ``run_ids`` (in that order), read by their key :data:`IDS_PER_QUERY` at a time, so that
        the runs of one sweep, or one run, are read without every run's arrays."""
        mark = self.MARK
        if run_ids is None:
            frames = [self._query(f"SELECT * FROM predictions WHERE split={mark}", (split,))]
        else:
            ids = list(dict.fromkeys(run_ids))
            frames = [self._query(f"SELECT * FROM predictions WHERE split={mark} AND run_id IN "
                                  f"({', '.join([mark] * len(part))})", (split, *part))
                      for part in (ids[i:i + IDS_PER_QUERY] for i in range(0, len(ids), IDS_PER_QUERY))]
        out: dict[str, dict] = {} if run_ids is None else {r: {} for r in ids}
        for df in frames:
            for r in ([] if df is None else df.itertuples(index=False)):
                out.setdefault(r.run_id, {})[r.what] = unpack(r.dtype, r.shape, r.data)
        return {r: arrays for r, arrays in out.items() if arrays}

    def prediction_splits(self) -> list[str]:
        """The splits any run kept per-example predictions for."""
        df = self._query("SELECT DISTINCT split FROM predictions ORDER BY split")
        return [] if df is None else list(df["split"])

    def version_mark(self) -> tuple[str, ...] | None:
        """What changes whenever a run is recorded (runs are only ever added): the runs' count and
        their first and latest start; None while the store has no tables. A reader that keeps a
        copy of :meth:`runs` rereads it only when this changes (the dashboard)."""
        found = self._query("SELECT count(*) AS n, max(created_at) AS last, min(created_at) AS first FROM runs")
        return None if found is None else tuple(str(v) for v in found.iloc[0])

    def finished_hashes(self) -> set[str]:
        df = self._query("SELECT DISTINCT config_hash FROM runs WHERE status='finished'")
        return set() if df is None else set(df["config_hash"])
