"""The results store: one row per run, a long table of per-epoch curves, a schema version.

The training code talks to :class:`ResultsStore` only (``record`` / ``runs`` / ``curves`` /
``finished_hashes``); SQLite is one implementation behind :func:`open_store`. Every ``record`` is
one transaction, so a run is stored whole or not at all, and several processes may write at once.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Protocol

import pandas as pd

SCHEMA_VERSION = 2  # 2: truncation counts and majority macro-F1

# (column, SQL type, python types accepted). Adding a column means a new schema version.
RUN_COLUMNS: list[tuple[str, str, tuple]] = [
    ("run_id", "TEXT PRIMARY KEY", (str,)),
    ("sweep", "TEXT", (str,)),
    ("created_at", "TEXT", (str,)),
    ("status", "TEXT NOT NULL", (str,)),
    ("error", "TEXT", (str,)),
    ("method", "TEXT", (str,)),
    ("model", "TEXT", (str,)),
    ("task", "TEXT", (str,)),
    ("quant", "TEXT", (str,)),
    ("r", "INTEGER", (int,)),
    ("seed", "INTEGER", (int,)),
    ("config_hash", "TEXT", (str,)),
    ("config_json", "TEXT", (str,)),
    ("accuracy", "REAL", (float,)),
    ("f1_macro", "REAL", (float,)),
    ("f1_micro", "REAL", (float,)),
    ("eval_loss", "REAL", (float,)),
    ("best_epoch", "INTEGER", (int,)),
    ("majority_accuracy", "REAL", (float,)),
    ("trainable_params", "INTEGER", (int,)),
    ("total_params", "INTEGER", (int,)),
    ("trainable_pct", "REAL", (float,)),
    ("adapter_bytes", "INTEGER", (int,)),
    ("peak_memory_bytes", "INTEGER", (int,)),
    ("memory_kind", "TEXT", (str,)),
    ("peak_cpu_rss_bytes", "INTEGER", (int,)),
    ("baseline_cpu_rss_bytes", "INTEGER", (int,)),
    ("peak_cuda_allocated_bytes", "INTEGER", (int,)),
    ("peak_cuda_reserved_bytes", "INTEGER", (int,)),
    ("train_samples_per_s", "REAL", (float,)),
    ("train_tokens_per_s", "REAL", (float,)),
    ("infer_latency_ms", "REAL", (float,)),
    ("infer_latency_merged_ms", "REAL", (float,)),
    ("train_s", "REAL", (float,)),
    ("wall_s", "REAL", (float,)),
    ("n_train", "INTEGER", (int,)),
    ("n_validation", "INTEGER", (int,)),
    ("n_test", "INTEGER", (int,)),
    # Examples cut to task.max_length per split, and the majority baseline's macro-F1.
    ("n_truncated_train", "INTEGER", (int,)),
    ("n_truncated_validation", "INTEGER", (int,)),
    ("n_truncated_test", "INTEGER", (int,)),
    ("majority_f1_macro", "REAL", (float,)),
    ("device", "TEXT", (str,)),
    ("git_commit", "TEXT", (str,)),
    ("git_dirty", "INTEGER", (bool, int)),
    ("provenance_json", "TEXT", (str,)),
    ("details_json", "TEXT", (str,)),
    ("schema_version", "INTEGER", (int,)),
]
COLUMN_NAMES = [c[0] for c in RUN_COLUMNS]
REQUIRED = ("run_id", "status", "method", "model", "task", "quant", "seed", "config_hash",
            "config_json", "created_at", "schema_version")
STATUSES = ("finished", "failed")
CURVE_COLUMNS = ("run_id", "epoch", "variant", "split", "metric", "value")


class StoreError(RuntimeError):
    """The store cannot be used (not a results store, newer schema); message is one line."""


def check_row(row: dict) -> None:
    """Raise ValueError if ``row`` does not fit the runs table."""
    unknown = set(row) - set(COLUMN_NAMES)
    if unknown:
        raise ValueError(f"unknown result field(s): {sorted(unknown)}")
    for name in REQUIRED:
        if row.get(name) is None:
            raise ValueError(f"result field '{name}' is required")
    if row["status"] not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {row['status']!r}")
    types = {name: t for name, _, t in RUN_COLUMNS}
    for name, value in row.items():
        if value is not None and not isinstance(value, types[name]):
            raise ValueError(f"result field '{name}' must be {types[name]}, got {type(value).__name__}")


class ResultsStore(Protocol):
    def record(self, row: dict, curves: list[dict]) -> None: ...
    def runs(self) -> pd.DataFrame: ...
    def curves(self) -> pd.DataFrame: ...
    def finished_hashes(self) -> set[str]: ...


def check_existing(path: Path) -> None:
    """Raise StoreError unless the file at ``path`` is a results store this harness can use.

    Reads only (the file is opened read-only), so a file that is not a store is never changed.
    """
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a results store; point store.url at a file")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            version = (conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                       if "meta" in tables else None)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a results store ({exc}); "
                         f"point store.url at a new file") from None
    if tables and version is None:
        raise StoreError(f"{path} is an SQLite file but not a results store "
                         f"(no schema version); point store.url at a new file")
    if version is not None and int(version[0]) > SCHEMA_VERSION:
        raise StoreError(f"{path} has schema version {version[0]}, newer than this "
                         f"harness's {SCHEMA_VERSION}; upgrade the harness")


class SQLiteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists():
            check_existing(self.path)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            self._create(conn)

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
            cols = ", ".join(f"{name} {sql}" for name, sql, _ in RUN_COLUMNS)
            conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
            # A store from an older schema gains the columns added since (left empty for old runs).
            have = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
            for name, sql, _ in RUN_COLUMNS:
                if name not in have:
                    conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {sql.split()[0]}")
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
        conn = self._connect()
        try:
            return pd.read_sql_query(sql, conn, params=params)
        finally:
            conn.close()

    def runs(self) -> pd.DataFrame:
        return self._query("SELECT * FROM runs ORDER BY created_at")

    def curves(self) -> pd.DataFrame:
        return self._query("SELECT * FROM curves")

    def finished_hashes(self) -> set[str]:
        df = self._query("SELECT DISTINCT config_hash FROM runs WHERE status='finished'")
        return set(df["config_hash"])


def store_file(location: str | Path) -> Path:
    """The file behind ``location``: a path (``.sqlite``/``.db``) or a ``sqlite:///path`` URL."""
    text = str(location)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///"):]
    elif "://" in text:
        raise StoreError(f"unsupported store location {text!r}; use a file path or sqlite:///path")
    return Path(text)


def open_store(location: str | Path) -> ResultsStore:
    """The store at ``location``, created if there is none yet."""
    return SQLiteStore(store_file(location))


def check_store(location: str | Path) -> None:
    """Raise StoreError if ``location`` cannot be a store; creates and changes nothing."""
    path = store_file(location)
    if path.exists():
        check_existing(path)


def decode_json_columns(df: pd.DataFrame) -> pd.DataFrame:
    for col in ("config_json", "provenance_json", "details_json"):
        if col in df.columns:
            df[col[: -len("_json")]] = [json.loads(v) if isinstance(v, str) else None for v in df[col]]
    return df
