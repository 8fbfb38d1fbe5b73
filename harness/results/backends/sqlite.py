"""The SQLite results store: a file named by a path or a ``sqlite:///path`` URL (scheme ``sqlite``).

WAL mode and one ``BEGIN IMMEDIATE`` transaction per write, so any number of processes may write
to one file at once. The runs table has a column per field of :mod:`harness.fields`; a field
declared after the file was created becomes a column on the next write (``ALTER TABLE ADD
COLUMN``), and reading a file that lacks it gives an empty column.

Reading never writes: a store opened with ``create=False`` (``list``, ``export``, ``load()``, the
report, the summary) is opened read-only, is never converted to WAL or migrated, and can be read
on read-only media. Migration happens on the first write. A file is adopted only if it is this
harness's store (its ``application_id``, or a store from before the id with the harness's tables)
or an SQLite file with no tables; anything else is refused without being changed. Paths are
quoted in SQLite URIs, so ``#`` and ``?`` in a path name the file they name.

Besides runs and curves the store holds claims (a run claims its configuration before it trains,
with an owner and a lease that its runner renews; see :meth:`SQLiteStore.claim`) and each run's
per-example predictions (compact arrays, keyed by run and split).

This is the only module that knows a store is a file.
"""
from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from harness.fields import FIELDS, Field
from harness.results.backends.common import (HOLDER_COLUMNS, StoreReads, claim_values,
                                             holder_still_holds, pack)
from harness.results.store import (SCHEMA_VERSION, STORE_BACKENDS, StoreError,
                                   check_row, missing_store_message)

if TYPE_CHECKING:
    import pandas as pd

PREFIX = "sqlite:///"
# PRAGMA application_id of a harness store ("PEFT"): a file with another id is never adopted.
APPLICATION_ID = 0x50454654
# The columns a store from before the application id must have to be adopted as one.
LEGACY_RUN_COLUMNS = {"run_id", "status"}
SQL_TYPES = {"text": "TEXT", "integer": "INTEGER", "real": "REAL", "bool": "INTEGER"}


def sql_type(field: Field) -> str:
    return SQL_TYPES[field.type]


def column_sql(field: Field) -> str:
    return f"{field.name} {sql_type(field)}" + (" PRIMARY KEY" if field.key else "")


def store_file(url: str | os.PathLike) -> Path:
    """The file behind ``url``: a path (``.sqlite``/``.db``) or a ``sqlite:///path`` URL
    (``sqlite:///rel/path`` is relative, ``sqlite:////abs/path`` absolute, as in SQLAlchemy)."""
    text = os.fspath(url)
    if text.startswith(PREFIX):
        text = text[len(PREFIX):]
    elif "://" in text:
        raise StoreError(f"unsupported SQLite store location {text!r}; use a file path or sqlite:///path")
    if not text:
        raise StoreError("empty results store location; give a file path or sqlite:///path")
    return Path(text)


def _uri(path: Path, **params) -> str:
    """An SQLite URI for ``path``: quoted, so that ``#``, ``?`` and ``%`` stay part of the name."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"file:{quote(str(path.absolute()))}" + (f"?{query}" if query else "")


def read_only_connection(path: Path) -> sqlite3.Connection:
    """A connection that cannot write ``path``. A WAL store on read-only media cannot be opened
    with ``mode=ro`` (SQLite would create its shared-memory file); it is then read as immutable."""
    conn = None
    try:
        conn = sqlite3.connect(_uri(path, mode="ro"), uri=True, timeout=120)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        if conn is not None:
            conn.close()
        if os.access(path.absolute().parent, os.W_OK) and os.access(path, os.W_OK):
            raise
    conn = sqlite3.connect(_uri(path, mode="ro", immutable=1), uri=True)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


def _inspect(path: Path, reading: bool = False) -> set[str]:
    """The tables of the results store at ``path``; StoreError unless it is one this harness can
    use. Reads only (the file is opened read-only), so a file that is not a store is never changed.
    ``reading``: the advice is a reading command's (``--store``), not a training run's (``store.url``).
    """
    a_file, a_store = (("pass --store a file", "pass --store a store the harness wrote") if reading
                       else ("point store.url at a file", "point store.url at a new file"))
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a results store; {a_file}")
    try:
        conn = read_only_connection(path)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = (conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                       if "meta" in tables else None)
            run_columns = ({r[1] for r in conn.execute("PRAGMA table_info(runs)")}
                           if "runs" in tables else set())
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:  # permissions, locks: not a verdict on the file
        raise StoreError(f"cannot open the results store {path} ({exc}); check that the file "
                         f"and its folder can be read and written") from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a results store ({exc}); {a_store}") from None
    foreign = (app_id not in (0, APPLICATION_ID)
               or (app_id == 0 and tables and (version is None
                                               or not LEGACY_RUN_COLUMNS <= run_columns)))
    if foreign:
        raise StoreError(f"{path} is an SQLite file but not a results store of this harness; {a_store}")
    if version is not None and int(version[0]) > SCHEMA_VERSION:
        raise StoreError(f"{path} has schema version {version[0]}, newer than this "
                         f"harness's {SCHEMA_VERSION}; upgrade the harness")
    return tables


def check_existing(path: Path) -> None:
    """Raise StoreError unless the file at ``path`` is a results store this harness can use."""
    _inspect(path)


def _add_missing_columns(conn: sqlite3.Connection, names) -> None:
    """Add the declared fields among ``names`` that the runs table lacks (inside a transaction)."""
    have = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    for name in names:
        if name not in have:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {sql_type(FIELDS[name])}")


@STORE_BACKENDS.register("sqlite")
class SQLiteStore(StoreReads):
    """The store in the file at ``url``.

    ``create=True`` (a command that trains): the store is made, or brought up to the declared
    columns, when opened. ``create=False`` (a command that reads): the file is opened
    read-only and must be a store with runs already; StoreError otherwise.
    """

    def __init__(self, url: str | os.PathLike, create: bool = True) -> None:
        self.path = store_file(url)
        self.read_only = not create
        self._ready = False
        if self.path.exists():
            tables = _inspect(self.path, reading=not create)
            if not create and "runs" not in tables:
                raise StoreError(missing_store_message(str(self.path)))
        elif create:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the results store {self.path} ({exc})") from None
        else:
            raise StoreError(missing_store_message(str(self.path)))
        if create:  # a command that writes: the store is made or migrated now
            self._write_connection().close()

    @classmethod
    def check(cls, url: str | os.PathLike) -> None:
        """StoreError unless ``url`` is (or can become) a results store this process can write;
        opens an existing file read-only and creates nothing."""
        path = store_file(url)
        if path.exists():
            if path.is_file():
                # SQLite writes its journal (WAL) next to the file: the folder must be writable too.
                for target in (path, path.absolute().parent):
                    if not os.access(target, os.W_OK):
                        raise StoreError(f"cannot write the results store {path} (permission denied)"
                                         if target == path else
                                         f"cannot write {target} (permission denied); the results "
                                         f"store {path} keeps its journal there")
            _inspect(path)
            return
        existing = next(p for p in path.absolute().parents if p.exists())
        if not existing.is_dir():
            raise StoreError(f"cannot create the results store {path}: {existing} is not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise StoreError(f"cannot write {existing} (permission denied); "
                             f"the results store {path} would be created there")

    # -- connections ---------------------------------------------------------------------------

    def _write_connection(self) -> sqlite3.Connection:
        """A connection for a write; the first one creates or migrates the store."""
        if self.read_only:
            raise StoreError(f"the results store {self.path} was opened for reading only")
        if self._ready and not self.path.exists():  # not made again empty: its runs are elsewhere
            raise StoreError(f"the results store {self.path} is gone (deleted or moved since this "
                             f"command opened it)")
        conn = sqlite3.connect(_uri(self.path, mode="rwc"), uri=True, timeout=120,
                               isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 120000")
        if not self._ready:
            if self.path.exists() and self.path.stat().st_size:
                _inspect(self.path)  # the file may have changed hands since it was opened
            self._create(conn)
            self._ready = True
        return conn

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            cols = ", ".join(column_sql(f) for f in FIELDS.values())
            conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
            # A store from before gains the columns declared since (left empty for old runs).
            _add_missing_columns(conn, list(FIELDS))
            conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
            conn.execute("CREATE TABLE IF NOT EXISTS curves (run_id TEXT NOT NULL REFERENCES runs(run_id), "
                         "epoch INTEGER, variant TEXT, split TEXT, metric TEXT, value REAL)")
            conn.execute("CREATE INDEX IF NOT EXISTS curves_run ON curves(run_id)")
            conn.execute("CREATE INDEX IF NOT EXISTS runs_hash ON runs(config_hash, status)")
            conn.execute("CREATE TABLE IF NOT EXISTS claims (config_hash TEXT PRIMARY KEY, "
                         "run_id TEXT NOT NULL, owner TEXT NOT NULL, host TEXT, pid INTEGER, "
                         "claimed_at REAL, expires_at REAL NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS predictions (run_id TEXT NOT NULL, "
                         "split TEXT NOT NULL, what TEXT NOT NULL, dtype TEXT, shape TEXT, "
                         "data BLOB, PRIMARY KEY (run_id, split, what))")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _query(self, sql: str, params: tuple = ()) -> pd.DataFrame | None:
        """The query's result; None when a store opened for writing has no file or table yet."""
        import pandas as pd

        if not self.path.exists() or not self.path.stat().st_size:
            return None
        conn = read_only_connection(self.path)
        try:
            return pd.read_sql_query(sql, conn, params=params)
        except pd.errors.DatabaseError as exc:
            if "no such table" in str(exc):
                return None
            raise
        finally:
            conn.close()

    # -- writes --------------------------------------------------------------------------------

    def record(self, row: dict, curves: list[dict], predictions: dict | None = None) -> None:
        """Store a run whole (row, curves, predictions) in one transaction and release its claim.

        ``predictions``: ``{split: {"labels": array, "predictions": array, ...}}``, any arrays of
        one example per row, kept compactly (see :meth:`predictions`).
        """
        check_row(row)
        names = list(row)
        conn = self._write_connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            _add_missing_columns(conn, names)  # a field declared since this store was opened
            conn.execute(f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                         [int(v) if isinstance(v, bool) else v for v in row.values()])
            conn.executemany(
                "INSERT INTO curves VALUES (?, ?, ?, ?, ?, ?)",
                [(row["run_id"], c["epoch"], c.get("variant", ""), c["split"], c["metric"],
                  None if c["value"] is None else float(c["value"])) for c in curves])
            conn.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?)",
                             [(row["run_id"], split, what, *pack(array))
                              for split, arrays in (predictions or {}).items()
                              for what, array in arrays.items()])
            conn.execute("DELETE FROM claims WHERE config_hash=? AND run_id=?",
                         (row["config_hash"], row["run_id"]))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def claim(self, config_hash: str, run_id: str, owner: str, lease_s: float,
              force: bool = False) -> tuple[str, dict | None]:
        """Claim a configuration before training it, atomically with the "already finished?" check.

        Returns ``("claimed", None)``, ``("finished", None)`` (a finished row exists and not
        ``force``) or ``("busy", holder)`` (another live run holds it). A claim whose lease has
        expired, or whose owner process on this host is gone, is taken over.
        """
        conn = self._write_connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if not force and conn.execute("SELECT 1 FROM runs WHERE config_hash=? AND status='finished' "
                                              "LIMIT 1", (config_hash,)).fetchone():
                    conn.execute("COMMIT")
                    return "finished", None
                held = conn.execute(f"SELECT {', '.join(HOLDER_COLUMNS)} FROM claims "
                                    "WHERE config_hash=?", (config_hash,)).fetchone()
                if held and held[0] != run_id:
                    holder = dict(zip(HOLDER_COLUMNS, held))
                    if holder_still_holds(holder):
                        conn.execute("COMMIT")
                        return "busy", holder
                conn.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?, ?)",
                             claim_values(config_hash, run_id, owner, lease_s))
                conn.execute("COMMIT")
                return "claimed", None
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    def renew(self, config_hash: str, run_id: str, lease_s: float) -> bool:
        """Extend this run's claim; False if it no longer holds it (it was taken over)."""
        conn = self._write_connection()
        try:
            cur = conn.execute("UPDATE claims SET expires_at=? WHERE config_hash=? AND run_id=?",
                               (time.time() + lease_s, config_hash, run_id))
            return cur.rowcount == 1
        finally:
            conn.close()

    def release(self, config_hash: str, run_id: str) -> None:
        conn = self._write_connection()
        try:
            conn.execute("DELETE FROM claims WHERE config_hash=? AND run_id=?", (config_hash, run_id))
        finally:
            conn.close()
