"""Raw files set aside by intake: a persistent record with reasons.

Intake (the stream's watcher and batch ``process``) never moves or deletes a
raw file it cannot use; it records it here (``rejected_files``, schema
``0006_rejected_files.sql``), one row per path with its newest reason, and
``dsa110-contimg status`` lists them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Protocol

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


_UPSERT = """
INSERT INTO rejected_files (path, kind, reason, group_id, size_bytes,
    first_seen_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (path) DO UPDATE SET
    kind = excluded.kind,
    reason = excluded.reason,
    group_id = excluded.group_id,
    size_bytes = excluded.size_bytes,
    updated_at = excluded.updated_at,
    resolved_at = NULL
"""


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
        (
            str(r.path),
            r.kind,
            r.reason,
            r.group_id,
            _size(Path(r.path)),
            to_iso_utc(now),
            to_iso_utc(now),
        )
        for r in rejected
    ]
    if not rows:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(_UPSERT, rows)
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
    sql = (
        "SELECT id, path, kind, reason, group_id, size_bytes, first_seen_at, "
        "updated_at FROM rejected_files WHERE resolved_at IS NULL"
    )
    params: list[object] = []
    if kinds is not None:
        kinds = list(kinds)
        sql += f" AND kind IN ({', '.join('?' for _ in kinds) or 'NULL'})"
        params += kinds
    sql += " ORDER BY updated_at DESC, id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    cursor = conn.execute(sql, params)
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def count_rejected_files(conn: Connection) -> dict[str, int]:
    """Return ``{kind: count}`` of the unresolved rejected files."""
    if not _has_table(conn):
        return {}
    return {
        str(kind): int(n)
        for kind, n in conn.execute(
            "SELECT kind, COUNT(*) FROM rejected_files WHERE resolved_at IS NULL "
            "GROUP BY kind ORDER BY kind"
        )
    }


def resolve_rejected_files(
    conn: Connection, paths: Iterable[str | Path], *, now: datetime
) -> int:
    """Mark the rows of ``paths`` resolved (e.g. a late file now converted)."""
    rows = [(to_iso_utc(now), str(p)) for p in paths]
    if not rows or not _has_table(conn):
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        n = 0
        for row in rows:
            n += conn.execute(
                "UPDATE rejected_files SET resolved_at = ? WHERE path = ? "
                "AND resolved_at IS NULL",
                row,
            ).rowcount
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return n
