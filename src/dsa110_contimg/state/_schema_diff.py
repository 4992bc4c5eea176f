"""How a migrated database differs from `state.schema_core.metadata`.

Alembic's autogenerate compares the reflected database with the metadata
(types, nullability, server defaults, keys, indexes). Two things SQLite's
reflection cannot see are not differences and are dropped here, for
`schema_differences` (the tests) and for ``alembic revision --autogenerate``
(``state/migrations/env.py``) alike:

- a ``PRIMARY KEY`` column declared without ``NOT NULL`` (the numbered files'
  ``id INTEGER PRIMARY KEY``, ``key TEXT PRIMARY KEY``) reflects as nullable;
  the metadata has it not null, as PostgreSQL makes every key column;
- a column's inline ``REFERENCES ... ON DELETE CASCADE`` reflects without its
  ``ON DELETE``; it is read from ``PRAGMA foreign_key_list`` instead, and the
  foreign key is a difference only when that disagrees with the metadata;
- SQLite has no identity columns: its ``INTEGER PRIMARY KEY`` is the rowid,
  what the metadata's ``Identity()`` (PostgreSQL's) means there.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import produce_migrations
from alembic.migration import MigrationContext
from alembic.operations import ops
from sqlalchemy import Identity

from dsa110_contimg.state.schema_core import metadata as _metadata

__all__ = ["COMPARE_OPTIONS", "drop_reflection_gaps", "schema_differences"]

COMPARE_OPTIONS = {"compare_type": True, "compare_server_default": True}
"""What Alembic compares (``context.configure`` options)."""


def schema_differences(sa_connection: Any, metadata=_metadata) -> list:
    """Alembic's differences between a database and ``metadata`` (none: equal).

    Parameters
    ----------
    sa_connection : sqlalchemy.engine.Connection
        A connection to the database to compare.
    metadata : sqlalchemy.MetaData, optional
        What it should be (the state schema at the head).

    Returns
    -------
    list
        `alembic.autogenerate.compare_metadata`'s diff tuples, less the
        reflection gaps of SQLite (module docstring).
    """
    context = MigrationContext.configure(sa_connection, opts=dict(COMPARE_OPTIONS))
    script = produce_migrations(context, metadata)
    drop_reflection_gaps(script.upgrade_ops, sa_connection, metadata)
    return script.upgrade_ops.as_diffs()


def drop_reflection_gaps(upgrade_ops: ops.UpgradeOps, sa_connection, metadata) -> None:
    """Remove from ``upgrade_ops`` what SQLite's reflection misses (in place)."""
    if sa_connection.dialect.name != "sqlite":
        return
    kept_tables = []
    for table_ops in upgrade_ops.ops:
        if isinstance(table_ops, ops.ModifyTableOps):
            table = metadata.tables.get(table_ops.table_name)
            table_ops.ops = _kept(table_ops.ops, table, sa_connection)
            if not table_ops.ops:
                continue
        kept_tables.append(table_ops)
    upgrade_ops.ops = kept_tables


def _kept(table_ops: list, table, sa_connection) -> list:
    kept = []
    for op in table_ops:
        if (
            isinstance(op, ops.AlterColumnOp)
            and table is not None
            and op.column_name in table.c
            and table.c[op.column_name].primary_key
        ):
            if op.modify_nullable is False:
                op.modify_nullable = None
            if isinstance(op.modify_server_default, Identity):
                op.modify_server_default = False  # SQLite's rowid is that identity
            if not _alters(op):
                continue
        kept.append(op)
    drops = [o for o in kept if _is_fk_drop(o)]
    creates = [o for o in kept if isinstance(o, ops.CreateForeignKeyOp)]
    if not drops or not creates:
        return kept
    actions = _sqlite_fk_actions(sa_connection, creates[0].source_table)
    for drop in drops:
        old = drop.to_constraint()
        old_key = (
            tuple(c.name for c in old.columns),
            old.referred_table.name,
            tuple(e.column.name for e in old.elements),
        )
        for create in creates:
            key = (
                tuple(create.local_cols),
                create.referent_table,
                tuple(create.remote_cols),
            )
            wanted = (
                _action(create.kw.get("ondelete")),
                _action(create.kw.get("onupdate")),
            )
            if key == old_key and actions.get(key) == wanted:
                kept = [o for o in kept if o is not drop and o is not create]
                creates.remove(create)
                break
    return kept


def _alters(op: ops.AlterColumnOp) -> bool:
    return bool(
        op.modify_nullable is not None
        or op.modify_type is not None
        or op.modify_server_default is not False
        or op.modify_comment is not False
        or op.modify_name is not None
    )


def _is_fk_drop(op) -> bool:
    return isinstance(op, ops.DropConstraintOp) and op.constraint_type == "foreignkey"


def _action(value: str | None) -> str | None:
    value = (value or "").upper()
    return None if value in ("", "NO ACTION") else value


def _sqlite_fk_actions(sa_connection, table: str) -> dict[tuple, tuple]:
    """``{(local cols, referent, remote cols): (on delete, on update)}`` of a table."""
    from sqlalchemy import text

    rows = sa_connection.execute(text(f'PRAGMA foreign_key_list("{table}")')).all()
    by_id: dict[int, list] = {}
    for row in rows:  # id, seq, table, from, to, on_update, on_delete, match
        by_id.setdefault(row[0], []).append(row)
    out = {}
    for fk_rows in by_id.values():
        fk_rows.sort(key=lambda r: r[1])
        key = (
            tuple(r[3] for r in fk_rows),
            fk_rows[0][2],
            tuple(r[4] for r in fk_rows),
        )
        out[key] = (_action(fk_rows[0][6]), _action(fk_rows[0][5]))
    return out
