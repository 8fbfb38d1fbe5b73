"""The PostgreSQL results store, one database shared by every host of a sweep (psycopg 3).

``store.url=postgresql://user[:password]@host[:port]/database`` (scheme ``postgresql`` or
``postgres``; any libpq parameter may follow, e.g. ``?sslmode=require`` or
``?options=-csearch_path%3Dteam_a`` to keep the tables in a schema of their own). The tables,
columns, claims and predictions are those of the SQLite store, with the same protocol:

- every write is one transaction; a run is stored whole or not at all, and a writer killed
  mid-run leaves nothing behind (the server rolls its transaction back);
- a configuration's claim and its finished row are serialized by a transaction-level advisory
  lock on the config hash, so two hosts never both train one configuration, and a claim whose
  lease has expired (or, on the same host, whose owner process is gone) is taken over;
- a store opened to read (``create=False``: ``load()``, ``list``, the report) runs read-only
  transactions and never creates or migrates anything; the first write creates the tables or
  adds the columns declared since (under an advisory lock, so concurrent first writers agree);
- the store's ``meta`` table names this harness: tables called ``runs`` that another program
  made are refused, never changed; a store with a newer schema version is refused.

Connections are opened per operation, so a store object survives forks and dropped connections.
Messages never repeat the URL's password.
"""
from __future__ import annotations

import time
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING

from harness.fields import FIELDS, Field
from harness.results.backends.common import (HOLDER_COLUMNS, StoreReads, claim_values,
                                             holder_still_holds, pack)
from harness.results.store import (SCHEMA_VERSION, STORE_BACKENDS, StoreError,
                                   check_row, missing_store_message, redact)

if TYPE_CHECKING:
    import pandas as pd

APPLICATION = "peft-harness"
SQL_TYPES = {"text": "TEXT", "integer": "BIGINT", "real": "DOUBLE PRECISION", "bool": "INTEGER"}
TABLES = {"meta", "runs", "curves", "claims", "predictions"}
DDL_LOCK = 0x50454654  # advisory lock held while tables are created or columns added ("PEFT")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def column_sql(field: Field) -> str:
    return f"{field.name} {SQL_TYPES[field.type]}" + (" PRIMARY KEY" if field.key else "")


def _connect(url: str, read_only: bool = False):
    try:
        import psycopg
    except ImportError:
        raise StoreError("a postgresql:// store needs psycopg: pip install 'peft-harness[postgres]'") from None
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=30)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to the results store {redact(url)}: {_first_line(exc)}") from None
    if read_only:
        conn.execute("SET default_transaction_read_only = on")
    return conn


def _tables(conn) -> set[str]:
    rows = conn.execute("SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = current_schema()").fetchall()
    return {r[0] for r in rows}


def _inspect(conn, url: str) -> set[str]:
    """This store's tables; StoreError if the database holds another program's tables of those
    names, or a store of a newer schema. Reads only."""
    tables = _tables(conn) & TABLES
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall()) if "meta" in tables else {}
    if tables and meta.get("application") != APPLICATION:
        raise StoreError(f"{redact(url)} has tables named {sorted(tables)} that are not a results "
                         f"store of this harness; use another database or schema")
    if int(meta.get("schema_version", 0)) > SCHEMA_VERSION:
        raise StoreError(f"{redact(url)} has schema version {meta['schema_version']}, newer than "
                         f"this harness's {SCHEMA_VERSION}; upgrade the harness")
    return tables


def _columns(conn) -> set[str]:
    rows = conn.execute("SELECT column_name FROM information_schema.columns "
                        "WHERE table_schema = current_schema() AND table_name = 'runs'").fetchall()
    return {r[0] for r in rows}


def _add_missing_columns(conn, names) -> None:
    """Add the declared fields among ``names`` that the runs table lacks (inside a transaction)."""
    missing = [n for n in names if n not in _columns(conn)]
    if missing:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
        for name in missing:
            conn.execute(f"ALTER TABLE runs ADD COLUMN IF NOT EXISTS {column_sql(FIELDS[name])}")


def _create(conn, url: str) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
        _inspect(conn, url)  # under the lock: what another first writer may just have made
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('application', %s) ON CONFLICT (key) DO NOTHING",
                     (APPLICATION,))
        conn.execute("INSERT INTO meta VALUES ('schema_version', %s) ON CONFLICT (key) "
                     "DO UPDATE SET value = EXCLUDED.value", (str(SCHEMA_VERSION),))
        conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({', '.join(column_sql(f) for f in FIELDS.values())})")
        _add_missing_columns(conn, list(FIELDS))
        conn.execute("CREATE TABLE IF NOT EXISTS curves (run_id TEXT NOT NULL REFERENCES runs(run_id), "
                     "epoch BIGINT, variant TEXT, split TEXT, metric TEXT, value DOUBLE PRECISION)")
        conn.execute("CREATE INDEX IF NOT EXISTS curves_run ON curves(run_id)")
        conn.execute("CREATE INDEX IF NOT EXISTS runs_hash ON runs(config_hash, status)")
        conn.execute("CREATE TABLE IF NOT EXISTS claims (config_hash TEXT PRIMARY KEY, run_id TEXT NOT NULL, "
                     "owner TEXT NOT NULL, host TEXT, pid BIGINT, claimed_at DOUBLE PRECISION, "
                     "expires_at DOUBLE PRECISION NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS predictions (run_id TEXT NOT NULL, split TEXT NOT NULL, "
                     "what TEXT NOT NULL, dtype TEXT, shape TEXT, data BYTEA, "
                     "PRIMARY KEY (run_id, split, what))")


def _lock_config(conn, config_hash: str) -> None:
    """Serialize claims and records of one configuration until the transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (config_hash,))


class PostgresStore(StoreReads):
    """The store in the database at ``url``; ``create`` as for the SQLite store."""

    MARK = "%s"

    def __init__(self, url: str, create: bool = True) -> None:
        self.url, self.read_only = url, not create
        with self._connection(read=True) as conn:
            tables = _inspect(conn, url)
        if not create and "runs" not in tables:
            raise StoreError(missing_store_message(redact(url)))
        if create:
            with self._connection() as conn:
                _create(conn, url)

    @classmethod
    def check(cls, url: str) -> None:
        """StoreError unless ``url`` is reachable and is, or can become, a store this user can
        write; reads only."""
        with closing(_connect(url, read_only=True)) as conn:
            tables = _inspect(conn, url)
            if "runs" in tables:
                ok = conn.execute("SELECT has_table_privilege('runs', 'INSERT')").fetchone()[0]
                what = "insert into its runs table"
            else:
                ok = conn.execute("SELECT has_schema_privilege(current_schema(), 'CREATE')").fetchone()[0]
                what = "create tables in its schema"
            if not ok:
                raise StoreError(f"cannot write the results store {redact(url)}: this user may not {what}")

    @contextmanager
    def _connection(self, read: bool = False):
        if not read and self.read_only:
            raise StoreError(f"the results store {redact(self.url)} was opened for reading only")
        with closing(_connect(self.url, read_only=read)) as conn:
            yield conn

    def _query(self, sql: str, params: tuple = ()) -> pd.DataFrame | None:
        """The query's result; None while the store has no tables yet."""
        import pandas as pd

        with self._connection(read=True) as conn:
            if "runs" not in _tables(conn):
                return None
            cur = conn.execute(sql, params)
            return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])

    # -- writes --------------------------------------------------------------------------------

    def record(self, row: dict, curves: list[dict], predictions: dict | None = None) -> None:
        """Store a run whole (row, curves, predictions) in one transaction and release its claim."""
        check_row(row)
        names = list(row)
        with self._connection() as conn, conn.transaction():
            _lock_config(conn, row["config_hash"])
            _add_missing_columns(conn, names)
            conn.execute(f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})",
                         [int(v) if isinstance(v, bool) else v for v in row.values()])
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO curves VALUES (%s, %s, %s, %s, %s, %s)",
                                [(row["run_id"], c["epoch"], c.get("variant", ""), c["split"], c["metric"],
                                  None if c["value"] is None else float(c["value"])) for c in curves])
                cur.executemany("INSERT INTO predictions VALUES (%s, %s, %s, %s, %s, %s)",
                                [(row["run_id"], split, what, *pack(array))
                                 for split, arrays in (predictions or {}).items()
                                 for what, array in arrays.items()])
            conn.execute("DELETE FROM claims WHERE config_hash=%s AND run_id=%s",
                         (row["config_hash"], row["run_id"]))

    def claim(self, config_hash: str, run_id: str, owner: str, lease_s: float,
              force: bool = False) -> tuple[str, dict | None]:
        """As :meth:`SQLiteStore.claim`: ``claimed``, ``finished`` or ``("busy", holder)``."""
        with self._connection() as conn, conn.transaction():
            _lock_config(conn, config_hash)
            if not force and conn.execute("SELECT 1 FROM runs WHERE config_hash=%s AND status='finished' "
                                          "LIMIT 1", (config_hash,)).fetchone():
                return "finished", None
            held = conn.execute(f"SELECT {', '.join(HOLDER_COLUMNS)} FROM claims WHERE config_hash=%s",
                                (config_hash,)).fetchone()
            if held and held[0] != run_id:
                holder = dict(zip(HOLDER_COLUMNS, held))
                if holder_still_holds(holder):
                    return "busy", holder
            conn.execute("INSERT INTO claims VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (config_hash) "
                         "DO UPDATE SET run_id=EXCLUDED.run_id, owner=EXCLUDED.owner, host=EXCLUDED.host, "
                         "pid=EXCLUDED.pid, claimed_at=EXCLUDED.claimed_at, expires_at=EXCLUDED.expires_at",
                         claim_values(config_hash, run_id, owner, lease_s))
            return "claimed", None

    def renew(self, config_hash: str, run_id: str, lease_s: float) -> bool:
        """Extend this run's claim; False if it no longer holds it (it was taken over)."""
        with self._connection() as conn:
            cur = conn.execute("UPDATE claims SET expires_at=%s WHERE config_hash=%s AND run_id=%s",
                               (time.time() + lease_s, config_hash, run_id))
            return cur.rowcount == 1

    def release(self, config_hash: str, run_id: str) -> None:
        with self._connection() as conn:
            conn.execute("DELETE FROM claims WHERE config_hash=%s AND run_id=%s", (config_hash, run_id))


STORE_BACKENDS.register("postgresql")(PostgresStore)
STORE_BACKENDS.register("postgres")(PostgresStore)
