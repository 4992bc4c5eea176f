"""Raw files set aside by intake: a persistent record with reasons.

Intake (the stream's watcher and batch ``process``) never moves or deletes a
raw file it cannot use; it records it here (``rejected_files``, schema
``0006_rejected_files.sql``), one row per path with its newest reason, and
``dsa110-contimg status`` lists them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa

from dsa110_contimg.state import schema_core as core
from dsa110_contimg.state._core import Query, in_list, in_params, upsert
from dsa110_contimg.state.db import Connection, table_exists, to_iso_utc

__all__ = [
    "RejectedRecord",
    "count_rejected_files",
    "list_rejected_files",
    "record_rejected_files",
    "resolve_rejected_files",
]


class RejectedRecord(Protocol):
    """What a row is made of: `dsa110_contimg.data_ingestion.grouping.RejectedFile`.

    A protocol, so the state layer does not import the science layer.
    """

    @property
    def path(self) -> Path | str: ...
    @property
    def kind(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def group_id(self) -> str | None: ...


_COLUMNS = (
    "path",
    "kind",
    "reason",
    "group_id",
    "size_bytes",
    "first_seen_at",
    "updated_at",
)
_R = core.rejected_files
_UPSERT = Query(
    upsert(
        _R,
        _COLUMNS,
        ("path",),
        ("kind", "reason", "group_id", "size_bytes", "updated_at"),
        set_={"resolved_at": sa.null()},
    )
)
_COUNT = Query(
    sa.select(_R.c.kind, sa.func.count())
    .where(_R.c.resolved_at.is_(None))
    .group_by(_R.c.kind)
    .order_by(_R.c.kind)
)
_RESOLVE = Query(
    sa.update(_R)
    .where(_R.c.path == sa.bindparam("p"), _R.c.resolved_at.is_(None))
    .values(resolved_at=sa.bindparam("now"))
)


@functools.lru_cache(maxsize=32)
def _list_query(n_kinds: int | None, limited: bool) -> Query:
    """The unresolved rows, of ``n_kinds`` kinds (None: all), newest first."""
    where = [_R.c.resolved_at.is_(None)]
    if n_kinds is not None:
        where.append(in_list(_R.c.kind, "kind", n_kinds))
    statement = (
        sa.select(
            _R.c.id,
            _R.c.path,
            _R.c.kind,
            _R.c.reason,
            _R.c.group_id,
            _R.c.size_bytes,
            _R.c.first_seen_at,
            _R.c.updated_at,
        )
        .where(*where)
        .order_by(_R.c.updated_at.desc(), _R.c.id.desc())
    )
    if limited:
        statement = statement.limit(sa.bindparam("limit"))
    return Query(statement)


def _size(path: Path) -> int | None:
    try:
        return path.lstat().st_size
    except OSError:
        return None


def record_rejected_files(
    conn: Connection, rejected: Iterable[RejectedRecord], *, now: datetime
) -> int:
    """Insert or update one row per rejected file, in one transaction.

    Parameters
    ----------
    conn : Connection
        Writable, migrated connection with no open transaction.
    rejected : iterable of RejectedRecord
        Files set aside, with their reasons (e.g. ``RejectedFile``).
    now : datetime
        Current time (timezone-aware).

    Returns
    -------
    int
        Number of rows written.
    """
    rows = [
        {
            "path": str(r.path),
            "kind": r.kind,
            "reason": r.reason,
            "group_id": r.group_id,
            "size_bytes": _size(Path(r.path)),
            "first_seen_at": to_iso_utc(now),
            "updated_at": to_iso_utc(now),
        }
        for r in rejected
    ]
    if not rows:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        _UPSERT.executemany(conn, rows)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return len(rows)


def _has_table(conn: Connection) -> bool:
    return table_exists(conn, "rejected_files")


def list_rejected_files(
    conn: Connection,
    *,
    limit: int | None = None,
    kinds: Iterable[str] | None = None,
) -> list[dict[str, object]]:
    """Return rejected files, newest first (empty before the table exists)."""
    if not _has_table(conn):
        return []
    params: dict[str, object] = {}
    n_kinds = None
    if kinds is not None:
        kinds = list(kinds)
        n_kinds = len(kinds)
        params.update(in_params("kind", kinds))
    if limit is not None:
        params["limit"] = int(limit)
    cursor = _list_query(n_kinds, limit is not None).execute(conn, params)
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def count_rejected_files(conn: Connection) -> dict[str, int]:
    """Return ``{kind: count}`` of the unresolved rejected files."""
    if not _has_table(conn):
        return {}
    return {str(kind): int(n) for kind, n in _COUNT.execute(conn)}


def resolve_rejected_files(
    conn: Connection, paths: Iterable[str | Path], *, now: datetime
) -> int:
    """Mark the rows of ``paths`` resolved (e.g. a late file now converted)."""
    rows = [{"now": to_iso_utc(now), "p": str(p)} for p in paths]
    if not rows or not _has_table(conn):
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        n = 0
        for row in rows:
            n += _RESOLVE.execute(conn, row).rowcount
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return n
