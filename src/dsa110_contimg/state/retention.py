"""Queries of retention and database maintenance (services/_maintenance.py).

Only finished work is deleted: ``done`` jobs (with their ``job_events``, by
the foreign key's cascade), old ``block_metrics`` rows, and the
``deletions`` records themselves. A conversion job is deleted only once its
group has a row in ``groups`` (which the watcher also reads), so a group whose
raw files are still in the incoming directory is never decided again. Every
file retention deletes is recorded in ``deletions`` (``0008_retention.sql``);
those rows also mark a group's raw files or MS as handled.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from dsa110_contimg.state.db import Connection, is_postgres, to_iso_utc
from dsa110_contimg.state.jobs import CONVERT_GROUP

__all__ = [
    "DoneGroup",
    "expired_jobs",
    "expired_block_metrics",
    "expired_deletion_records",
    "groups_for_raw_cleanup",
    "groups_for_ms_cleanup",
    "record_deletion",
    "count_deletions",
    "checkpoint",
    "optimize",
    "vacuum",
]

_EXPIRED_JOBS = (
    "FROM jobs WHERE state = 'done' AND finished_at < ? AND updated_at < ? "
    "AND (kind != ? OR EXISTS (SELECT 1 FROM groups g WHERE g.group_id = jobs.key))"
)


@contextmanager
def _transaction(conn: Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def expired_jobs(
    conn: Connection, before: datetime, *, delete: bool
) -> tuple[int, int]:
    """Count (and with ``delete``, delete) done jobs finished before ``before``.

    Returns
    -------
    n_jobs, n_events : int
        Jobs, and their ``job_events`` rows, that are (or would be) deleted.
    """
    stamp = to_iso_utc(before)
    params = (stamp, stamp, CONVERT_GROUP)
    with _transaction(conn):
        n_jobs = conn.execute(f"SELECT COUNT(*) {_EXPIRED_JOBS}", params).fetchone()[0]
        events = f"FROM job_events WHERE job_id IN (SELECT id {_EXPIRED_JOBS})"
        n_events = conn.execute(f"SELECT COUNT(*) {events}", params).fetchone()[0]
        if delete and n_jobs:
            conn.execute(f"DELETE {events}", params)
            conn.execute(f"DELETE {_EXPIRED_JOBS}", params)
    return int(n_jobs), int(n_events)


def _expire(
    conn: Connection, table: str, column: str, before: datetime, delete: bool
) -> int:
    stamp = to_iso_utc(before)
    with _transaction(conn):
        n = conn.execute(
            f"SELECT COUNT(*) FROM {table} WHERE {column} < ?", (stamp,)
        ).fetchone()[0]
        if delete and n:
            conn.execute(f"DELETE FROM {table} WHERE {column} < ?", (stamp,))
    return int(n)


def expired_block_metrics(conn: Connection, before: datetime, *, delete: bool) -> int:
    """Count (and with ``delete``, delete) ``block_metrics`` rows recorded before."""
    return _expire(conn, "block_metrics", "recorded_at", before, delete)


def expired_deletion_records(
    conn: Connection, before: datetime, *, delete: bool
) -> int:
    """Count (and with ``delete``, delete) ``deletions`` rows older than ``before``."""
    return _expire(conn, "deletions", "deleted_at", before, delete)


@dataclass(frozen=True, slots=True)
class DoneGroup:
    """A group whose conversion job is done: its raw files and its MS."""

    group_id: str
    data_time_iso: str
    files: tuple[str, ...]
    ms_path: str | None
    finished_at: str


def _done_groups(conn: Connection, before: datetime, kind: str) -> list[DoneGroup]:
    rows = conn.execute(
        "SELECT key, data_time_iso, payload_json, result_json, finished_at FROM jobs "
        "WHERE state = 'done' AND finished_at < ? AND kind = ? AND NOT EXISTS "
        "(SELECT 1 FROM deletions d WHERE d.group_id = jobs.key AND d.kind = ?) "
        "ORDER BY data_time_iso",
        (to_iso_utc(before), CONVERT_GROUP, kind),
    ).fetchall()
    out = []
    for key, data_time, payload_json, result_json, finished_at in rows:
        payload = json.loads(payload_json)
        result = json.loads(result_json) if result_json else {}
        files = payload.get("files") if isinstance(payload, dict) else None
        ms_path = result.get("ms_path") if isinstance(result, dict) else None
        out.append(
            DoneGroup(
                str(key),
                str(data_time),
                tuple(sorted(str(p) for p in files.values()))
                if isinstance(files, dict)
                else (),
                None if ms_path is None else str(ms_path),
                str(finished_at),
            )
        )
    return out


def groups_for_raw_cleanup(conn: Connection, before: datetime) -> list[DoneGroup]:
    """Done conversion jobs finished before ``before`` whose raw files are not yet
    deleted (no ``deletions`` row of kind ``raw`` for the group)."""
    return _done_groups(conn, before, "raw")


def groups_for_ms_cleanup(conn: Connection, before: datetime) -> list[DoneGroup]:
    """Done conversion jobs finished before ``before`` whose MS is not yet deleted."""
    return _done_groups(conn, before, "ms")


def record_deletion(
    conn: Connection,
    *,
    kind: str,
    path: str,
    reason: str,
    now: datetime,
    group_id: str | None = None,
    size_bytes: int | None = None,
) -> None:
    """Record one deleted file or directory (``kind`` raw, ms, corrupt, superseded)."""
    with _transaction(conn):
        conn.execute(
            "INSERT INTO deletions (kind, path, group_id, reason, size_bytes, "
            "deleted_at) VALUES (?, ?, ?, ?, ?, ?)",
            (kind, path, group_id, reason, size_bytes, to_iso_utc(now)),
        )


def count_deletions(conn: Connection) -> dict[str, int]:
    """Return the number of recorded deletions of each kind."""
    return {
        str(kind): int(n)
        for kind, n in conn.execute(
            "SELECT kind, COUNT(*) FROM deletions GROUP BY kind ORDER BY kind"
        )
    }


def checkpoint(conn: Connection) -> tuple[int, int, int]:
    """``PRAGMA wal_checkpoint(TRUNCATE)``: (busy, log pages, checkpointed pages).

    PostgreSQL manages its write-ahead log itself: ``(0, 0, 0)`` there.
    """
    if is_postgres(conn):
        return 0, 0, 0
    row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def optimize(conn: Connection) -> None:
    """Refresh the planner statistics (SQLite ``PRAGMA optimize``, PostgreSQL
    ``ANALYZE``)."""
    conn.execute("ANALYZE" if is_postgres(conn) else "PRAGMA optimize")


def vacuum(conn: Connection) -> None:
    """``VACUUM``: rebuild the database file (PostgreSQL: the tables), returning
    deleted rows' pages."""
    conn.execute("VACUUM")
