"""The engine, transactions and error translation every part of the store shares.

SQLite gets WAL, ``synchronous=NORMAL``, a busy timeout and foreign keys on
each connection. The driver's own transaction handling is switched off so
that the store emits ``BEGIN`` itself: write transactions use ``BEGIN
IMMEDIATE``, which takes the file's write lock up front and so never fails
half-way when another process writes. Within one process, writers also queue
on a ``threading.Lock`` instead of spinning on the busy timeout.

Every ``SQLAlchemyError`` becomes a ``StoreError`` here, once, with a one-line
message that names the database.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError, StatementError

from digest.errors import StoreError

#: How long a SQLite writer waits for another process's write lock.
BUSY_TIMEOUT_S = 15.0
_IMMEDIATE = "digest_begin_immediate"

T = TypeVar("T")


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size`` (keeps IN lists and batches bounded)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def describe(label: str, exc: BaseException, busy_timeout: float = BUSY_TIMEOUT_S) -> str:
    """A one-line message for a database error, naming the database."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    detail = lines[0] if lines else type(orig).__name__
    low = detail.lower()
    if "database is locked" in low or "database table is locked" in low:
        return f"database {label} is locked by another process (waited {busy_timeout:g} s)"
    if "file is not a database" in low or "malformed" in low:
        return f"database {label} is corrupt or not a SQLite database: {detail}"
    if "unable to open database file" in low:
        return f"cannot open database {label}: check that the folder exists and is writable"
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return f"lost the connection to database {label}: {detail}"
    if "connection" in low and ("refused" in low or "failed" in low or "timeout" in low):
        return f"cannot connect to database {label}: {detail}"
    return f"database {label}: {detail}"


def upsert_into(conn: Connection, table: Table) -> sqlite.Insert | postgresql.Insert:
    """An ``INSERT`` that knows ``ON CONFLICT`` for the connection's dialect."""
    name = conn.dialect.name
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        return postgresql.insert(table)
    raise StoreError(f"unsupported database dialect {name!r}: use SQLite or PostgreSQL")


#: How long a first connection keeps retrying the switch of a new file to WAL.
_WAL_RETRY_S = 10.0


def _set_wal(cur: Any) -> None:
    """``PRAGMA journal_mode = WAL``, retried while another first connection switches the same new file.

    The switch takes the file's exclusive lock, and SQLite answers "database is locked" at once
    (without its busy handler) when several processes open a brand-new file together.
    """
    deadline = time.monotonic() + _WAL_RETRY_S
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sqlite_on_connect(dbapi_conn: Any, record: Any) -> None:
    # The store emits BEGIN itself (see _sqlite_on_begin).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    try:
        # busy_timeout comes from connect(timeout=...); the rest is per connection.
        _set_wal(cur)
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
    finally:
        cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str, busy_timeout: float = BUSY_TIMEOUT_S) -> tuple[Engine, str]:
    """A configured engine for ``url`` and the label that names it in messages."""
    try:
        parsed: URL = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r}") from exc
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            return _sqlite_engine(parsed, busy_timeout)
        if backend != "postgresql":
            raise StoreError(f"unsupported database {url!r}: use sqlite:///PATH or postgresql+psycopg://...")
        label = parsed.render_as_string(hide_password=True)
        return create_engine(parsed, pool_size=10, max_overflow=10, pool_pre_ping=True), label
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreError(f"no driver for database {url!r}: {exc}") from exc


def _sqlite_engine(parsed: URL, busy_timeout: float) -> tuple[Engine, str]:
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise StoreError("the SQLite database must be a file path (sqlite:////abs/path/digest.db)")
    path = Path(database).expanduser().absolute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the folder of database {path}: {exc.strerror}") from exc
    engine = create_engine(
        parsed.set(database=str(path)),
        connect_args={"check_same_thread": False, "timeout": busy_timeout},
        pool_size=10,
        max_overflow=10,
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine, str(path)


class StoreBase:
    """Holds the engine; gives read and write transactions with errors translated."""

    def __init__(self, engine: Engine, label: str, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self._engine = engine
        self._label = label
        self._busy_timeout = busy_timeout
        self._is_sqlite = engine.dialect.name == "sqlite"
        # PostgreSQL takes row locks itself; SQLite has one writer per file anyway.
        self._write_lock: AbstractContextManager[Any] = threading.Lock() if self._is_sqlite else nullcontext()
        self._writer: Connection | None = None
        # The driver's own errors, for the statements that bypass SQLAlchemy (``_raw``).
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error

    @property
    def label(self) -> str:
        """The database this store uses (a file path, or a URL without its password)."""
        return self._label

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except StatementError as exc:
            # A bad value handed in by the caller (e.g. a naive datetime) is a bug, not a database error.
            if not isinstance(exc, DBAPIError) and isinstance(exc.orig, ValueError):
                raise exc.orig from None
            raise StoreError(describe(self._label, exc, self._busy_timeout)) from exc
        except SQLAlchemyError as exc:
            raise StoreError(describe(self._label, exc, self._busy_timeout)) from exc
        except self._dbapi_error as exc:
            raise StoreError(describe(self._label, exc, self._busy_timeout)) from exc

    @contextmanager
    def _connect_for_write(self) -> Iterator[Connection]:
        """A connection, outside a transaction, whose transactions take the write lock."""
        if not self._is_sqlite:
            with self._guard(), self._engine.connect() as conn:
                yield conn
            return
        # SQLite has one writer at a time, so one connection serves every write; checking a
        # connection out of the pool for each one cost more than the UPDATE (the send ledger
        # writes once per message).
        with self._guard(), self._write_lock:
            if self._writer is None:
                self._writer = self._engine.connect()
                self._writer.execution_options(**{_IMMEDIATE: True})
            try:
                yield self._writer
            except BaseException:
                # After an error the connection may be unusable: take a fresh one next time.
                self._close_writer()
                raise

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One short write transaction, committed when the block ends."""
        with self._connect_for_write() as conn, conn.begin():
            yield conn

    @contextmanager
    def _raw(self, conn: Connection) -> Iterator[tuple[Any, Any]]:
        """The DB-API connection under ``conn`` (from ``_connect_for_write``) and a cursor on it.

        For the statements that run once per message, without SQLAlchemy's
        statement and transaction objects. No transaction is begun: on SQLite
        (the driver in autocommit) one statement is its own transaction; on
        PostgreSQL the caller commits. Any error rolls back, and driver errors
        become ``StoreError``.
        """
        raw = conn.connection.dbapi_connection
        if raw is None:  # a closed connection: not reachable from _connect_for_write
            raise StoreError(f"database {self._label}: the connection is closed")
        with self._guard():
            cur = raw.cursor()
            try:
                yield raw, cur
            except BaseException:
                raw.rollback()
                raise
            finally:
                cur.close()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """One read transaction (a consistent snapshot)."""
        with self._guard(), self._engine.connect() as conn, conn.begin():
            yield conn
