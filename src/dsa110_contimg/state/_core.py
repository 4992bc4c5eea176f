"""Run SQLAlchemy Core statements through the state connections (both backends).

A `Query` wraps a Core statement on `state.schema_core`'s tables. It is
compiled once per backend (SQLite, PostgreSQL) on first use and the SQL text
kept: a call only looks the text up, orders its parameters and runs it on the
caller's `state.db.Connection` (an `sqlite3.Connection`, or a `PgConnection`,
which takes the same ``?`` parameters), so rows, transactions, read-only
connections and the retry on a lost PostgreSQL connection are what they are
for a hand-written statement, at the same cost per call.

Parameters are named `sqlalchemy.bindparam`\\ s given as a mapping; constants
of a statement are rendered into its SQL with `const` (PostgreSQL would type a
bound ``1`` as ``BIGINT`` and a ``SUM`` of it as ``NUMERIC``).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from dsa110_contimg.state._postgres import PgConnection

__all__ = ["Query", "const", "in_list", "in_params"]


@functools.cache
def _dialect(backend: str):
    """The SQLAlchemy dialect of ``backend``, ``?`` parameters (imported on use)."""
    if backend == "postgresql":
        from sqlalchemy.dialects.postgresql.base import PGDialect

        # the plain dialect, not psycopg's, which would add ``::TYPE`` casts
        return PGDialect(paramstyle="qmark")
    from sqlalchemy.dialects.sqlite.base import SQLiteDialect

    return SQLiteDialect(paramstyle="qmark")


def const(value: object) -> sa.ColumnElement:
    """A constant rendered into the SQL text (``'image'``, ``1``, ``1e-06``)."""
    bound = sa.literal(value)
    text = str(bound.compile(compile_kwargs={"literal_binds": True}))
    return sa.literal_column(text, bound.type)


def in_list(column: sa.ColumnElement, name: str, n: int) -> sa.ColumnElement:
    """``column IN (:name_0, ..., :name_{n-1})``; no row matches when ``n`` is 0.

    Give the values with `in_params`.
    """
    if n == 0:
        return sa.false()
    return column.in_([sa.bindparam(f"{name}_{i}") for i in range(n)])


def in_params(name: str, values) -> dict[str, object]:
    """The parameters of `in_list` ``(name, len(values))``."""
    return {f"{name}_{i}": value for i, value in enumerate(values)}


class Query:
    """A Core statement compiled once per backend, run on a state connection.

    Parameters
    ----------
    statement : sqlalchemy.sql.Executable
        A statement on `state.schema_core`'s tables; its parameters are named
        `sqlalchemy.bindparam`\\ s.
    """

    __slots__ = ("_compiled", "_lock", "statement")

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[str, tuple[str, ...], dict[str, object]]] = {}
        self._lock = threading.Lock()

    def sql(self, backend: str) -> tuple[str, tuple[str, ...], dict[str, object]]:
        """``(SQL text, parameter names in order, defaults)`` for ``backend``."""
        compiled = self._compiled.get(backend)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(backend)
                if compiled is None:
                    compiled = _compile(self.statement, backend)
                    self._compiled[backend] = compiled
        return compiled

    def execute(self, conn, params: Mapping[str, object] | None = None):
        """Run the statement on ``conn``; return its cursor.

        Parameters
        ----------
        conn : state.db.Connection
            An SQLite or PostgreSQL state connection.
        params : Mapping, optional
            A value for every parameter of the statement without a default.
        """
        backend = "postgresql" if isinstance(conn, PgConnection) else "sqlite"
        compiled = self._compiled.get(backend)
        text, names, defaults = compiled or self.sql(backend)
        if not names:
            return conn.execute(text)
        params = params or {}
        values = [params[n] if n in params else defaults[n] for n in names]
        return conn.execute(text, values)


def _compile(statement: Any, backend: str) -> tuple[str, tuple[str, ...], dict]:
    compiled = statement.compile(dialect=_dialect(backend))
    names = tuple(compiled.positiontup or ())
    # a bindparam() without a value is required: the caller gives it (a
    # KeyError names one left out); one with a value has it as its default
    defaults = {
        name: bind.value
        for bind, name in compiled.bind_names.items()
        if not bind.required
    }
    return compiled.string, names, defaults
