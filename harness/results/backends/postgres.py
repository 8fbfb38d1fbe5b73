"""The PostgreSQL results store, one database shared by every host of a sweep (psycopg 3).

``store.url=postgresql://user[:password]@host[:port]/database`` (scheme ``postgresql`` or
``postgres``; any libpq parameter may follow, e.g. ``?sslmode=require`` or
``?options=-csearch_path%3Dteam_a`` to keep the tables in a schema of their own). The tables,
columns, claims and predictions are those of the SQLite store, with the same protocol:

- every write is one transaction; a run is stored whole or not at all, and a writer killed
  mid-run leaves nothing behind (the server rolls its transaction back);
- a configuration's claim and its finished row are serialized by a transaction-level advisory
  lock on the config hash, so two hosts never both train one configuration, and a claim whose
  lease has expired (or, on the same host, whose owner process is gone) is taken over; leases
  run on the database server's clock, so hosts whose clocks differ agree on them;
- a writer runs no DDL once the store is up to date, so a user granted only SELECT and INSERT
  (and UPDATE/DELETE on claims) can write to a store someone else created;
- a store opened to read (``create=False``: ``load()``, ``list``, the report) runs read-only
  transactions and never creates or migrates anything; the first write creates the tables or
  adds the columns declared since (under an advisory lock, so concurrent first writers agree);
- the store's ``meta`` table names this harness: tables called ``runs`` that another program
  made are refused, never changed; a store with a newer schema version is refused.

Connections are opened per operation, so a store object survives forks and dropped connections.
A server that cannot be reached, or a connection lost mid-operation (a restart), is a
:class:`StoreUnreachable`, which the runner waits out (:mod:`harness.results.retry`); a wrong
password, a missing right or a bad statement is not. ``record`` is idempotent per run id, so an
operation tried again after its commit's acknowledgement was lost stores nothing twice.
The password goes to libpq apart from the URL (:mod:`harness.results.secrets`): messages never
repeat it, whatever characters it holds.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from harness.errors import first_line
from harness.fields import FIELDS, Field
from harness.results.backends.common import (HOLDER_COLUMNS, StoreReads, claim_values,
                                             holder_still_holds, pack)
from harness.results.secrets import connect_args, scrub
from harness.results.store import (SCHEMA_VERSION, STORE_BACKENDS, StoreError, StoreUnreachable,
                                   check_row, missing_store_message, redact)

if TYPE_CHECKING:
    import pandas as pd

APPLICATION = "peft-harness"
SQL_TYPES = {"text": "TEXT", "integer": "BIGINT", "real": "DOUBLE PRECISION", "bool": "INTEGER"}
TABLES = {"meta", "runs", "curves", "claims", "predictions"}
DDL_LOCK = 0x50454654  # advisory lock held while tables are created or columns added ("PEFT")
# SQLSTATEs of a lost connection or a server going down or starting up: class 08, admin or crash
# shutdown, "cannot connect now", too many connections.
OUTAGE_STATES = ("08", "57P01", "57P02", "57P03", "53300")
# What a server that answers but is not ready says when refusing a connection (no SQLSTATE then).
NOT_READY = ("starting up", "shutting down", "not yet accepting connections", "in recovery",
             "too many clients", "remaining connection slots", "terminating connection")


def column_sql(field: Field) -> str:
    return f"{field.name} {SQL_TYPES[field.type]}" + (" PRIMARY KEY" if field.key else "")


def is_outage(exc: BaseException) -> bool:
    """Whether a psycopg error means the server could not be reached or the connection was lost,
    which waiting may cure; not a refusal (password, role, database, rights) nor a bad statement."""
    import psycopg

    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    if state:
        return state.startswith(OUTAGE_STATES)
    text = str(exc)
    return "FATAL:" not in text or any(words in text for words in NOT_READY)


def _failure(exc: BaseException, url: str, what: str) -> StoreError:
    """``exc`` as one line about the store at ``url``, without its password; StoreUnreachable for
    an outage."""
    kind = StoreUnreachable if is_outage(exc) else StoreError
    return kind(f"{what} the results store {redact(url)}: {scrub(first_line(exc), url)}")


def _connect(url: str, read_only: bool = False):
    try:
        import psycopg
    except ImportError:
        raise StoreError("a postgresql:// store needs psycopg: pip install 'peft-harness[postgres]'") from None
    timeout = {} if "connect_timeout" in url else {"connect_timeout": 30}
    target, password = connect_args(url)  # the password apart: libpq never echoes it
    secret = {} if password is None else {"password": password}
    try:
        conn = psycopg.connect(target, autocommit=True, **timeout, **secret)
        if read_only:
            conn.execute("SET default_transaction_read_only = on")
    except psycopg.Error as exc:
        raise _failure(exc, url, "cannot connect to") from None
    return conn


@contextmanager
def _session(url: str, read_only: bool = False):
    """A connection for one operation; a connection lost meanwhile is a StoreUnreachable."""
    import psycopg

    conn = _connect(url, read_only)
    try:
        yield conn
    except psycopg.Error as exc:
        if is_outage(exc):
            raise _failure(exc, url, "lost the connection to") from None
        raise
    finally:
        conn.close()


def _tables(conn) -> set[str]:
    rows = conn.execute("SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = current_schema()").fetchall()
    return {r[0] for r in rows}


def _inspect(conn, url: str) -> set[str]:
    """This store's tables; StoreError if the database holds another program's tables of those
    names, a search_path that names no existing schema, or a store of a newer schema. Reads only."""
    if conn.execute("SELECT current_schema()").fetchone()[0] is None:  # nowhere to read or create
        path = conn.execute("SHOW search_path").fetchone()[0]
        raise StoreError(f"{redact(url)}: no schema on its search_path ({path}) exists in database "
                         f"{conn.info.dbname}; create it first (CREATE SCHEMA name;) or name an existing one")
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
    have = _columns(conn)
    missing = [n for n in names if n not in have]
    if missing:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
        for name in missing:
            conn.execute(f"ALTER TABLE runs ADD COLUMN IF NOT EXISTS {column_sql(FIELDS[name])}")


def _up_to_date(conn, url: str) -> bool:
    """Whether the store has every table, every declared column and this schema version, so
    that a writer needs no DDL (a user granted only reads and inserts can then write)."""
    tables = _inspect(conn, url)
    if tables != TABLES or set(FIELDS) - _columns(conn):
        return False
    version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return version is not None and int(version[0]) == SCHEMA_VERSION


def _create(conn, url: str) -> None:
    if _up_to_date(conn, url):
        return
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


def _server_time(conn) -> float:
    """The database server's clock (seconds since the epoch): leases are set and compared on it,
    so hosts whose clocks differ agree on when a claim expires."""
    return float(conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0])


def _lock_config(conn, config_hash: str) -> None:
    """Serialize claims and records of one configuration until the transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (config_hash,))


class PostgresStore(StoreReads):
    """The store in the database at ``url``; ``create`` as for the SQLite store."""

    MARK = "%s"

    def __init__(self, url: str, create: bool = True) -> None:
        self.url, self.read_only = url, not create
        self._known_columns: set[str] = set()  # the runs table's columns known to exist (none: ask)
        with self._connection(read=True) as conn:
            tables = _inspect(conn, url)
        if not create and "runs" not in tables:
            raise StoreError(missing_store_message(redact(url)))
        if create:
            import psycopg

            with self._connection() as conn:
                try:
                    _create(conn, url)
                except psycopg.Error as exc:  # e.g. no right to create or alter the tables
                    raise _failure(exc, url, "cannot prepare") from None
            self._known_columns = set(FIELDS)  # columns are never dropped: no need to ask per run

    @classmethod
    def check(cls, url: str) -> None:
        """StoreError unless ``url`` is reachable and is, or can become, a store this user can
        write; reads only."""
        with _session(url, read_only=True) as conn:
            if not _up_to_date(conn, url):  # also refuses another program's tables, a newer schema
                ok = conn.execute("SELECT has_schema_privilege(current_schema(), 'CREATE')").fetchone()[0]
                what = "create or update its tables (the store is new or older than this harness)"
            else:
                needs = [("runs", "SELECT"), ("runs", "INSERT"), ("curves", "INSERT"), ("predictions", "INSERT"),
                         *(("claims", priv) for priv in ("SELECT", "INSERT", "UPDATE", "DELETE"))]
                missing = [f"{priv} on {table}" for table, priv in needs
                           if not conn.execute("SELECT has_table_privilege(%s, %s)", (table, priv)).fetchone()[0]]
                ok, what = not missing, f"write it ({', '.join(missing)})"
            if not ok:
                raise StoreError(f"cannot write the results store {redact(url)}: this user may not {what}")

    @contextmanager
    def _connection(self, read: bool = False):
        if not read and self.read_only:
            raise StoreError(f"the results store {redact(self.url)} was opened for reading only")
        with _session(self.url, read_only=read) as conn:
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
        """Store a run whole (row, curves, predictions) in one transaction and release its claim.
        A run already stored (a retry after a commit whose acknowledgement was lost) is left as
        it is."""
        check_row(row)
        names = list(row)
        with self._connection() as conn, conn.transaction():
            _lock_config(conn, row["config_hash"])
            if set(names) - self._known_columns:  # a field declared since this store was opened
                _add_missing_columns(conn, names)
            cur = conn.execute(f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))}) "
                               "ON CONFLICT (run_id) DO NOTHING",
                               [int(v) if isinstance(v, bool) else v for v in row.values()])
            if cur.rowcount == 0:
                conn.execute("DELETE FROM claims WHERE config_hash=%s AND run_id=%s",
                             (row["config_hash"], row["run_id"]))
                return
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
            now = _server_time(conn)  # one clock for every host: the database's
            if held and held[0] != run_id:
                holder = dict(zip(HOLDER_COLUMNS, held))
                if holder_still_holds(holder, now):
                    return "busy", holder
            values = claim_values(config_hash, run_id, owner, lease_s)
            conn.execute("INSERT INTO claims VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (config_hash) "
                         "DO UPDATE SET run_id=EXCLUDED.run_id, owner=EXCLUDED.owner, host=EXCLUDED.host, "
                         "pid=EXCLUDED.pid, claimed_at=EXCLUDED.claimed_at, expires_at=EXCLUDED.expires_at",
                         (*values[:5], now, now + lease_s))
            return "claimed", None

    def renew(self, config_hash: str, run_id: str, lease_s: float) -> bool:
        """Extend this run's claim; False if it no longer holds it (it was taken over)."""
        with self._connection() as conn:
            cur = conn.execute("UPDATE claims SET expires_at=%s WHERE config_hash=%s AND run_id=%s",
                               (_server_time(conn) + lease_s, config_hash, run_id))
            return cur.rowcount == 1

    def release(self, config_hash: str, run_id: str) -> None:
        with self._connection() as conn:
            conn.execute("DELETE FROM claims WHERE config_hash=%s AND run_id=%s", (config_hash, run_id))


STORE_BACKENDS.register("postgresql")(PostgresStore)
STORE_BACKENDS.register("postgres")(PostgresStore)
