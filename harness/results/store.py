"""The results store: one row per run, a long table of per-epoch curves, a schema version.

The training code talks to :class:`ResultsStore` only (``record`` / ``runs`` / ``curves`` /
``finished_hashes``), opened with :func:`open_store` from a URL. The URL's scheme picks a backend
from :data:`STORE_BACKENDS`; a plain path (no ``scheme://``) is an SQLite file
(:mod:`harness.results.backends.sqlite`). Every ``record`` is one transaction, so a run is stored whole or
not at all, and several processes may write at once.

The runs table's columns are the fields declared in :mod:`harness.fields`. A column declared
after a store was created is added to that store on its next write (older runs read back empty
there), so adding a nullable column needs no new :data:`SCHEMA_VERSION`; only a change that old
code cannot read (a renamed or retyped column) does.

A backend is a class (or factory) registered under its URL scheme::

    @STORE_BACKENDS.register("myscheme")
    class MyStore:
        def __init__(self, url: str, create: bool = True): ...  # StoreError if unusable
        @classmethod
        def check(cls, url: str) -> None: ...  # StoreError unless writable; creates nothing
        def record(self, row, curves, predictions=None): ...  # and claim(), renew(), release(),
                                                              # runs(), curves(), claims(),
                                                              # predictions(), prediction_splits(),
                                                              # finished_hashes()
"""
from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Protocol

from harness.fields import FIELDS, TYPES
from harness.registry import Registry, unknown_name_message

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 2  # 2: truncation counts and majority macro-F1

STATUSES = FIELDS["status"].choices
CURVE_COLUMNS = ("run_id", "epoch", "variant", "split", "metric", "value")
# Backends that ship with the harness; imported (so registered) on first use.
BUILTIN_BACKENDS = ("harness.results.backends",)


class StoreError(RuntimeError):
    """The store cannot be used (missing, not a results store, newer schema, not writable, unknown
    scheme); the message is one line."""


class StoreUnreachable(StoreError):
    """The store's server could not be reached, or the connection to it was lost: an outage that
    may end (a restart), unlike a wrong password or a missing right. The runner waits for the
    store to come back (:mod:`harness.results.retry`); a backend raises it for nothing else."""


def check_row(row: dict) -> None:
    """Raise ValueError if ``row`` does not fit the runs table (:data:`harness.fields.FIELDS`)."""
    unknown = [name for name in row if name not in FIELDS]
    if unknown:
        raise ValueError(f"unknown result field(s): {sorted(unknown)}")
    for field in FIELDS.values():
        if field.required and row.get(field.name) is None:
            raise ValueError(f"result field '{field.name}' is required")
    for name, value in row.items():
        field = FIELDS[name]
        if value is None:
            continue
        if not isinstance(value, TYPES[field.type]):
            raise ValueError(f"result field '{name}' must be {field.type} "
                             f"{TYPES[field.type]}, got {type(value).__name__}")
        if field.choices and value not in field.choices:
            raise ValueError(f"{name} must be one of {field.choices}, got {value!r}")


class ResultsStore(Protocol):
    """What a backend's store offers (the SQLite backend documents each method)."""

    def record(self, row: dict, curves: list[dict], predictions: dict | None = None) -> None: ...
    def claim(self, config_hash: str, run_id: str, owner: str, lease_s: float,
              force: bool = False) -> tuple[str, dict | None]: ...
    def renew(self, config_hash: str, run_id: str, lease_s: float) -> bool: ...
    def release(self, config_hash: str, run_id: str) -> None: ...
    def runs(self) -> pd.DataFrame: ...
    def curves(self) -> pd.DataFrame: ...
    def claims(self) -> pd.DataFrame: ...
    def predictions(self, run_ids=None, split: str = "test") -> dict[str, dict]: ...
    def prediction_splits(self) -> list[str]: ...
    def finished_hashes(self) -> set[str]: ...
    # Optional: what changes when a run is recorded (count, first and latest start), or None.
    # def version_mark(self) -> tuple | None: ...


class StoreBackend(Protocol):
    """What :data:`STORE_BACKENDS` holds: called to open a store, ``check`` for preflight."""

    def __call__(self, url: str, create: bool = True) -> ResultsStore: ...
    def check(self, url: str) -> None: ...


STORE_BACKENDS: Registry[StoreBackend] = Registry("results store scheme")


def _load_builtin() -> None:
    import importlib

    for module in BUILTIN_BACKENDS:
        importlib.import_module(module)


def store_scheme(url: str | os.PathLike) -> str:
    """The scheme of a store URL: the part before ``://``, lower-cased; ``sqlite`` for a path."""
    text = os.fspath(url)
    return text.split("://", 1)[0].lower() if "://" in text else "sqlite"


def backend_for(url: str | os.PathLike) -> StoreBackend:
    """The backend registered for ``url``'s scheme; StoreError naming the known ones if none."""
    _load_builtin()
    scheme = store_scheme(url)
    if scheme not in STORE_BACKENDS:
        # The URL itself is not repeated: it may hold credentials.
        raise StoreError(unknown_name_message("results store scheme", scheme, STORE_BACKENDS.names())
                         + " Give store.url as <scheme>://..., or a plain path for an SQLite file.")
    return STORE_BACKENDS.get(scheme)


def open_store(url: str | os.PathLike, create: bool = True) -> ResultsStore:
    """The store at ``url``. With ``create`` it is made if there is none yet; without, a missing
    store is a StoreError ("no results store at ...")."""
    return backend_for(url)(os.fspath(url), create=create)


def check_store(url: str | os.PathLike) -> None:
    """Raise StoreError (one line) unless ``url`` can be written and is, or can become, this
    harness's store. Creates and changes nothing (preflight calls this)."""
    backend_for(url).check(os.fspath(url))


# ``scheme://user:password@``: the password runs to the last ``@`` of the word, so that an ``@``,
# ``:`` or ``/`` in it (raw or percent-encoded) is hidden whole; ``password=`` (a URL's query, a
# libpq keyword string), its value quoted ('...', with \' inside) or not.
_PASSWORD = re.compile(r"(://[^:/@\s]*:)\S*@")
_PASSWORD_PARAM = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^&\s]*)", re.IGNORECASE)


def redact(url: str | os.PathLike) -> str:
    """A store URL (or a message holding one) fit to print: its password (``user:password@``,
    ``password=``) as ``***``, whatever characters it holds. Better still, keep passwords out of
    URLs (libpq reads ``~/.pgpass`` and ``PGPASSWORD``)."""
    return _PASSWORD_PARAM.sub(r"\1***", _PASSWORD.sub(r"\1***@", os.fspath(url)))


def missing_store_message(url: str) -> str:
    """What a backend says when ``open_store(url, create=False)`` finds no store."""
    return (f"no results store at {url}; run `python -m harness` first "
            f"or pass the store's location")


def decode_json_columns(df: pd.DataFrame) -> pd.DataFrame:
    for col in ("config_json", "provenance_json", "details_json"):
        if col in df.columns:
            df[col[: -len("_json")]] = [json.loads(v) if isinstance(v, str) else None for v in df[col]]
    return df
