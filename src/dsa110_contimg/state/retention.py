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

import sqlalchemy as sa

from dsa110_contimg.state import schema_core as core
from dsa110_contimg.state._core import Query, const, params_of
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

_J = core.jobs
_E = core.job_events
_D = core.deletions
_STAMP = sa.bindparam("stamp")
_EXPIRED_JOBS = sa.and_(
    _J.c.state == const("done"),
    _J.c.finished_at < _STAMP,
    _J.c.updated_at < _STAMP,
    sa.or_(
        _J.c.kind != sa.bindparam("kind"),
        sa.exists().where(core.groups.c.group_id == _J.c.key),
    ),
)
_EXPIRED_EVENTS = _E.c.job_id.in_(sa.select(_J.c.id).where(_EXPIRED_JOBS))
_COUNT_EXPIRED_JOBS = Query(
    sa.select(sa.func.count()).select_from(_J).where(_EXPIRED_JOBS)
)
_COUNT_EXPIRED_EVENTS = Query(
    sa.select(sa.func.count()).select_from(_E).where(_EXPIRED_EVENTS)
)
_DELETE_EXPIRED_EVENTS = Query(sa.delete(_E).where(_EXPIRED_EVENTS))
_DELETE_EXPIRED_JOBS = Query(sa.delete(_J).where(_EXPIRED_JOBS))
_EXPIRE = {
    name: (
        Query(sa.select(sa.func.count()).select_from(table).where(column < _STAMP)),
        Query(sa.delete(table).where(column < _STAMP)),
    )
    for name, table, column in (
        ("block_metrics", core.block_metrics, core.block_metrics.c.recorded_at),
        ("deletions", _D, _D.c.deleted_at),
    )
}
_DONE_GROUPS = Query(
    sa.select(
        _J.c.key,
        _J.c.data_time_iso,
        _J.c.payload_json,
        _J.c.result_json,
        _J.c.finished_at,
    )
    .where(
        _J.c.state == const("done"),
        _J.c.finished_at < sa.bindparam("before"),
        _J.c.kind == sa.bindparam("kind"),
        ~sa.exists().where(
            _D.c.group_id == _J.c.key, _D.c.kind == sa.bindparam("deleted_kind")
        ),
    )
    .order_by(_J.c.data_time_iso)
)
_DELETION_COLUMNS = ("kind", "path", "group_id", "reason", "size_bytes", "deleted_at")
_RECORD_DELETION = Query(sa.insert(_D).values(params_of(_DELETION_COLUMNS)))
_COUNT_DELETIONS = Query(
    sa.select(_D.c.kind, sa.func.count()).group_by(_D.c.kind).order_by(_D.c.kind)
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
    params = {"stamp": stamp, "kind": CONVERT_GROUP}
    with _transaction(conn):
        n_jobs = _COUNT_EXPIRED_JOBS.execute(conn, params).fetchone()[0]
        n_events = _COUNT_EXPIRED_EVENTS.execute(conn, params).fetchone()[0]
        if delete and n_jobs:
            _DELETE_EXPIRED_EVENTS.execute(conn, params)
            _DELETE_EXPIRED_JOBS.execute(conn, params)
    return int(n_jobs), int(n_events)


def _expire(conn: Connection, table: str, before: datetime, delete: bool) -> int:
    count, remove = _EXPIRE[table]
    params = {"stamp": to_iso_utc(before)}
    with _transaction(conn):
        n = count.execute(conn, params).fetchone()[0]
        if delete and n:
            remove.execute(conn, params)
    return int(n)


def expired_block_metrics(conn: Connection, before: datetime, *, delete: bool) -> int:
    """Count (and with ``delete``, delete) ``block_metrics`` rows recorded before."""
    return _expire(conn, "block_metrics", before, delete)


def expired_deletion_records(
    conn: Connection, before: datetime, *, delete: bool
) -> int:
    """Count (and with ``delete``, delete) ``deletions`` rows older than ``before``."""
    return _expire(conn, "deletions", before, delete)


@dataclass(frozen=True, slots=True)
class DoneGroup:
    """A group whose conversion job is done: its raw files and its MS."""

    group_id: str
    data_time_iso: str
    files: tuple[str, ...]
    ms_path: str | None
    finished_at: str


def _done_groups(conn: Connection, before: datetime, kind: str) -> list[DoneGroup]:
    params = {"before": to_iso_utc(before), "kind": CONVERT_GROUP, "deleted_kind": kind}
    rows = _DONE_GROUPS.execute(conn, params).fetchall()
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
        row = (kind, path, group_id, reason, size_bytes, to_iso_utc(now))
        _RECORD_DELETION.execute(conn, dict(zip(_DELETION_COLUMNS, row, strict=True)))


def count_deletions(conn: Connection) -> dict[str, int]:
    """Return the number of recorded deletions of each kind."""
    return {str(kind): int(n) for kind, n in _COUNT_DELETIONS.execute(conn)}


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
