"""The SQLite results store: a file named by a path or a ``sqlite:///path`` URL (scheme ``sqlite``).

WAL mode and one ``BEGIN IMMEDIATE`` transaction per record, so any number of processes may write
to one file at once. The runs table has a column per field of :mod:`harness.fields`; a field
declared after the file was created becomes a column on the next write (``ALTER TABLE ADD
COLUMN``), and reading a file that lacks it gives an empty column.

This is the only module that knows a store is a file.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from harness.fields import FIELDS, Field
from harness.results.store import (SCHEMA_VERSION, STORE_BACKENDS, StoreError, check_row,
                                   missing_store_message)

if TYPE_CHECKING:
    import pandas as pd

PREFIX = "sqlite:///"
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


def _inspect(path: Path) -> set[str]:
    """The tables of the results store at ``path``; StoreError unless it is one this harness can
    use. Reads only (the file is opened read-only), so a file that is not a store is never changed.
    """
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a results store; point store.url at a file")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            version = (conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                       if "meta" in tables else None)
    except sqlite3.OperationalError as exc:  # permissions, locks: not a verdict on the file
        raise StoreError(f"cannot open the results store {path} ({exc}); check that the file "
                         f"and its folder can be read and written") from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a results store ({exc}); "
                         f"point store.url at a new file") from None
    if tables and version is None:
        raise StoreError(f"{path} is an SQLite file but not a results store "
                         f"(no schema version); point store.url at a new file")
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
class SQLiteStore:
    """The store in the file at ``url``; with ``create``, made (and brought up to the declared
    columns) if needed, else StoreError if there is no store there."""

    def __init__(self, url: str | os.PathLike, create: bool = True) -> None:
        self.path = store_file(url)
        if self.path.exists():
            tables = _inspect(self.path)
            if not create and "runs" not in tables:
                raise StoreError(missing_store_message(str(self.path)))
        elif create:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the results store {self.path} ({exc})") from None
        else:
            raise StoreError(missing_store_message(str(self.path)))
        if create:
            with self._connect() as conn:
                self._create(conn)

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

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=120, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 120000")
        return conn

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
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
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def record(self, row: dict, curves: list[dict]) -> None:
        check_row(row)
        names = list(row)
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            _add_missing_columns(conn, names)  # a field declared since this store was opened
            conn.execute(f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                         [int(v) if isinstance(v, bool) else v for v in row.values()])
            conn.executemany(
                "INSERT INTO curves VALUES (?, ?, ?, ?, ?, ?)",
                [(row["run_id"], c["epoch"], c.get("variant", ""), c["split"], c["metric"],
                  None if c["value"] is None else float(c["value"])) for c in curves])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def _query(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        import pandas as pd

        conn = self._connect()
        try:
            return pd.read_sql_query(sql, conn, params=params)
        finally:
            conn.close()

    def runs(self) -> pd.DataFrame:
        """Every run, oldest first, with a column for every declared field (empty where this file
        predates the field)."""
        df = self._query("SELECT * FROM runs ORDER BY created_at")
        for name in FIELDS:
            if name not in df.columns:
                df[name] = None
        return df

    def curves(self) -> pd.DataFrame:
        return self._query("SELECT * FROM curves")

    def finished_hashes(self) -> set[str]:
        df = self._query("SELECT DISTINCT config_hash FROM runs WHERE status='finished'")
        return set(df["config_hash"])
