"""PostgreSQL connections that behave like the pipeline's SQLite connections.

The state modules speak one SQL dialect (``?`` parameters, ``ON CONFLICT``
upserts, ``RETURNING``, ``BEGIN IMMEDIATE`` write transactions) through the
subset of the `sqlite3.Connection` API they use. `PgConnection` offers that
subset over a pooled SQLAlchemy engine (``postgresql+psycopg://...``,
``pool_pre_ping``), so every function in ``state/`` runs on both backends:

- ``?`` becomes ``%s`` (a literal ``%`` becomes ``%%``), outside quotes;
- a write transaction (``BEGIN IMMEDIATE``, or the implicit one the sqlite3
  module opens before ``INSERT``/``UPDATE``/``DELETE``) takes the
  transaction-scoped advisory lock `WRITE_LOCK_KEY`: writers are serialized
  exactly as SQLite serializes them, so every read-check-write transition is
  as safe here as there;
- driver errors are re-raised as subclasses of the `sqlite3` errors the
  callers already catch (`DatabaseError` stays one class);
- a connection lost outside a transaction is replaced (with backoff) and the
  statement retried; lost inside one, the transaction is gone and a
  retryable `DatabaseUnavailableError` says so.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from dsa110_contimg.exceptions import ResourceError

__all__ = [
    "WRITE_LOCK_KEY",
    "DatabaseUnavailableError",
    "PgConnection",
    "PgIntegrityError",
    "PgOperationalError",
    "connect_postgres",
    "translate",
]

log = logging.getLogger(__name__)

WRITE_LOCK_KEY = 0x0D5A110
"""``pg_advisory_xact_lock`` key every state write transaction holds."""

RECONNECT_ATTEMPTS = 8
"""Tries to (re)connect before giving up: backoff 0.25 s doubling to 8 s (~30 s)."""

_engines: dict[str, Any] = {}
_engines_lock = threading.Lock()


def _forget_engines_after_fork() -> None:
    """A forked child must not share its parent's pooled sockets: new pools."""
    global _engines_lock
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()
    _engines_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_engines_after_fork)


class PgOperationalError(sqlite3.OperationalError):
    """A PostgreSQL operational error (lost connection, lock timeout, ...)."""


class DatabaseUnavailableError(ResourceError, PgOperationalError):
    """The PostgreSQL server cannot be reached; retry later (retryable).

    Also a `DatabaseError`, so every handler that rides out a locked SQLite
    database (retry at the next poll or heartbeat) rides out an outage too.
    """


class PgIntegrityError(sqlite3.IntegrityError):
    """A PostgreSQL constraint violation."""


class PgDatabaseError(sqlite3.DatabaseError):
    """Any other PostgreSQL error."""


def _wrap_error(err: Exception) -> sqlite3.Error:
    import psycopg

    if isinstance(err, psycopg.IntegrityError):
        return PgIntegrityError(str(err))
    if isinstance(err, psycopg.OperationalError):
        return PgOperationalError(str(err))
    return PgDatabaseError(str(err))


_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
_BEGIN = re.compile(r"^\s*BEGIN(\s+(IMMEDIATE|DEFERRED|EXCLUSIVE))?\s*;?\s*$", re.I)


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """Return ``sql`` with ``?`` as ``%s`` and ``%`` as ``%%`` outside quotes."""
    out, quote = [], ""
    for char in sql:
        if quote:
            out.append("%%" if char == "%" else char)
            if char == quote:
                quote = ""
            continue
        if char in "'\"":
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
    return "".join(out)


class _Row(Sequence[Any]):
    """A result row readable by index and by column name, like `sqlite3.Row`."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: tuple[Any, ...], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            try:
                return self._values[self._index[key]]
            except KeyError:
                msg = f"No item with that key: {key!r}"
                raise IndexError(msg) from None
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Row):
            return self._values == other._values
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        return f"Row{self._values!r}"

    def keys(self) -> list[str]:
        return list(self._index)


class _Cursor:
    """The part of `sqlite3.Cursor` the state modules read."""

    def __init__(self, rows: list[tuple[Any, ...]], description, rowcount: int):
        self.description = description
        self.rowcount = rowcount
        self.lastrowid = None  # PostgreSQL has none: use RETURNING
        index = {d[0]: i for i, d in enumerate(description or ())}
        self._rows = [_Row(tuple(r), index) for r in rows]
        self._pos = 0

    def fetchone(self) -> _Row | None:
        if self._pos >= len(self._rows):
            return None
        self._pos += 1
        return self._rows[self._pos - 1]

    def fetchall(self) -> list[_Row]:
        rows = self._rows[self._pos :]
        self._pos = len(self._rows)
        return rows

    def fetchmany(self, size: int = 1) -> list[_Row]:
        rows = self._rows[self._pos : self._pos + size]
        self._pos += len(rows)
        return rows

    def __iter__(self) -> Iterator[_Row]:
        while (row := self.fetchone()) is not None:
            yield row

    def close(self) -> None:
        self._rows = []


def engine_for(url: str):
    """Return the process's pooled SQLAlchemy engine for ``url`` (one per URL)."""
    from sqlalchemy import create_engine

    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            # 5 kept open; more on demand (closed when returned), never a
            # wait on the pool: a process's connections are few and long-lived
            engine = create_engine(
                url, pool_pre_ping=True, pool_size=5, max_overflow=-1, pool_recycle=3600
            )
            _engines[url] = engine
        return engine


def _raw_connection(url: str):
    """Check out a DBAPI connection from the pool, retrying with backoff."""
    import psycopg
    import sqlalchemy.exc

    delay = 0.25
    for attempt in range(1, RECONNECT_ATTEMPTS + 1):
        try:
            fairy = engine_for(url).raw_connection()
            fairy.driver_connection.autocommit = True
            return fairy
        except (sqlalchemy.exc.OperationalError, psycopg.OperationalError) as err:
            if attempt == RECONNECT_ATTEMPTS:
                msg = (
                    f"state database {_safe(url)} cannot be reached after "
                    f"{attempt} tries ({getattr(err, 'orig', err)}); start "
                    "PostgreSQL or fix "
                    "database.url, then retry"
                )
                raise DatabaseUnavailableError(msg) from err
            log.warning("state db unreachable", extra={"attempt": attempt})
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
    msg = "unreachable"
    raise AssertionError(msg)


def _params(parameters: Sequence[Any] | None) -> tuple[Any, ...] | None:
    """Parameters as SQLite stores them: ``bool`` as 0/1 (its INTEGER columns)."""
    if not parameters:
        return None
    return tuple(int(p) if isinstance(p, bool) else p for p in parameters)


def _safe(url: str) -> str:
    """``url`` without its password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


class PgConnection:
    """A state-database connection to PostgreSQL with the `sqlite3` API subset.

    Created by `connect_postgres`; the caller closes it (back to the pool).
    """

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.url = url
        self.readonly = readonly
        self.row_factory = None  # accepted and ignored: rows are always _Row
        self._fairy = _raw_connection(url)
        self._in_tx = False

    # ------------------------------------------------------------ transactions
    @property
    def in_transaction(self) -> bool:
        return self._in_tx

    def _begin(self) -> None:
        self._run("BEGIN READ ONLY" if self.readonly else "BEGIN", None, reconnect=True)
        self._in_tx = True
        if not self.readonly:
            self._run(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})", None)

    def commit(self) -> None:
        if self._in_tx:
            self._in_tx = False
            self._run("COMMIT", None)

    def rollback(self) -> None:
        if self._in_tx:
            self._in_tx = False
            try:
                self._run("ROLLBACK", None)
            except sqlite3.OperationalError:
                if not self._broken():
                    raise

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    def close(self) -> None:
        if self._fairy is None:
            return
        try:
            self.rollback()
        finally:
            self._fairy.close()  # back to the pool
            self._fairy = None

    # --------------------------------------------------------------- execution
    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> _Cursor:
        if _BEGIN.match(sql):
            if self._in_tx:
                msg = "cannot start a transaction within a transaction"
                raise PgOperationalError(msg)
            self._begin()
            return _Cursor([], None, -1)
        if not self._in_tx and _WRITE.match(sql):
            self._begin()  # what the sqlite3 module does before a write
        sql = translate(sql) if parameters else sql
        return self._run(sql, _params(parameters), reconnect=not self._in_tx)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> _Cursor:
        if not self._in_tx and _WRITE.match(sql):
            self._begin()
        total = 0
        for parameters in seq:
            total += max(self._run(translate(sql), _params(parameters)).rowcount, 0)
        return _Cursor([], None, total)

    def _broken(self) -> bool:
        return self._fairy is None or self._fairy.driver_connection.closed

    def _reconnect(self) -> None:
        with contextlib.suppress(Exception):  # already gone
            self._fairy.invalidate()
        self._fairy = _raw_connection(self.url)

    def _run(self, sql: str, parameters, *, reconnect: bool = False) -> _Cursor:
        import psycopg

        if self._fairy is None:
            msg = "Cannot operate on a closed database."
            raise PgOperationalError(msg)
        for attempt in (1, 2):
            cursor = None
            try:
                cursor = self._fairy.driver_connection.cursor()
                cursor.execute(sql, parameters or None)
                rows = cursor.fetchall() if cursor.description else []
                return _Cursor(rows, cursor.description, cursor.rowcount)
            except psycopg.Error as err:
                if self._broken() and reconnect and attempt == 1:
                    log.warning("state db connection lost; reconnecting")
                    self._reconnect()
                    continue
                if self._broken():
                    self._in_tx = False
                    msg = (
                        f"state database {_safe(self.url)}: connection lost "
                        f"({err}); the transaction was rolled back: retry it"
                    )
                    raise DatabaseUnavailableError(msg) from _wrap_error(err)
                raise _wrap_error(err) from err
            finally:
                if cursor is not None:
                    cursor.close()
        msg = "unreachable"
        raise AssertionError(msg)


def connect_postgres(url: str, *, readonly: bool = False) -> PgConnection:
    """Open a pooled PostgreSQL state connection (see `PgConnection`)."""
    return PgConnection(url, readonly=readonly)
