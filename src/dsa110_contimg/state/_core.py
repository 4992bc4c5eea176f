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

Writes are Core statements too: `sa.insert`/`sa.update`/`sa.delete` with
`values` and named parameters (`params_of` names one per column), ``RETURNING``
by `.returning()`. An upsert (``INSERT ... ON CONFLICT``) is one statement of
each dialect's own ``insert`` (`upsert`); a `Query` takes such a pair as a
mapping ``{backend: statement}``. `Query.executemany` runs a statement once per
parameter mapping (one ``executemany`` of the connection).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from dsa110_contimg.state._postgres import PgConnection

__all__ = ["Query", "const", "in_list", "in_params", "params_of", "upsert"]


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


def params_of(columns) -> dict[str, sa.BindParameter]:
    """``{name: bindparam(name)}`` for each column name: `values` of a write."""
    return {name: sa.bindparam(name) for name in columns}


def upsert(
    table: sa.Table,
    columns,
    conflict,
    update=None,
    *,
    set_: Mapping[str, Any] | None = None,
    where: Any = None,
) -> dict[str, Any]:
    """``INSERT ... ON CONFLICT (conflict) DO UPDATE``, one statement per dialect.

    Parameters
    ----------
    table : sqlalchemy.Table
        A table of `state.schema_core`.
    columns : sequence of str
        The inserted columns; each a parameter of its own name.
    conflict : sequence of str
        The columns of the unique key (``ON CONFLICT (...)``).
    update : sequence of str, optional
        Columns set to the inserted value (``col = excluded.col``); by
        default every inserted column not in ``conflict``. An empty sequence
        with no ``set_`` gives ``DO NOTHING``.
    set_ : mapping, optional
        Further ``SET`` items, ``{column: expression}``; an expression may use
        the ``excluded`` row given as a callable ``set_(excluded)``.
    where : callable, optional
        ``where(excluded)``: the ``DO UPDATE ... WHERE`` condition.

    Returns
    -------
    dict
        ``{"sqlite": statement, "postgresql": statement}``, for `Query`.
    """
    from sqlalchemy.dialects import postgresql, sqlite

    if update is None:
        update = [c for c in columns if c not in conflict]
    statements = {}
    for backend, module in (("sqlite", sqlite), ("postgresql", postgresql)):
        statement = module.insert(table).values(params_of(columns))
        excluded = statement.excluded
        items: dict[str, Any] = {c: excluded[c] for c in update}
        extra = set_(excluded) if callable(set_) else set_
        items.update(extra or {})
        if not items:
            statement = statement.on_conflict_do_nothing(index_elements=list(conflict))
        else:
            statement = statement.on_conflict_do_update(
                index_elements=list(conflict),
                set_=items,
                where=None if where is None else where(excluded),
            )
        statements[backend] = statement
    return statements


class Query:
    """A Core statement compiled once per backend, run on a state connection.

    Parameters
    ----------
    statement : sqlalchemy.sql.Executable or mapping
        A statement on `state.schema_core`'s tables; its parameters are named
        `sqlalchemy.bindparam`\\ s. A mapping ``{"sqlite": ..., "postgresql":
        ...}`` gives each backend its own statement (`upsert`).
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

    def executemany(self, conn, rows) -> Any:
        """Run the statement once per parameter mapping of ``rows`` on ``conn``."""
        backend = "postgresql" if isinstance(conn, PgConnection) else "sqlite"
        text, names, defaults = self._compiled.get(backend) or self.sql(backend)
        return conn.executemany(
            text,
            [[p[n] if n in p else defaults[n] for n in names] for p in rows],
        )


def _compile(statement: Any, backend: str) -> tuple[str, tuple[str, ...], dict]:
    if isinstance(statement, Mapping):
        statement = statement[backend]
    if isinstance(statement, sa.Insert):
        # no implicit ``RETURNING id`` (PostgreSQL's dialect would add one to
        # fetch a generated key): the SQL is what the statement says
        statement = statement.inline()
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
