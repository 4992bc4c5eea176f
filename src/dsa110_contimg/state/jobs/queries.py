"""Read-only queries of the job queue: one job, listings, counts, events, flags.

Nothing here writes; every function works on a read-only connection
(``state.db.connect(path, readonly=True)``). The transitions that change jobs
are in `state.jobs.transitions`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dsa110_contimg.exceptions import StateError
from dsa110_contimg.state.db import Connection, to_iso_utc
from dsa110_contimg.state.jobs.model import (
    _COLUMNS,
    JOB_KINDS,
    JOB_STATES,
    Job,
    _row_to_job,
)

__all__ = [
    "PendingBacklog",
    "count_jobs",
    "count_jobs_by_kind",
    "find_job",
    "get_job",
    "get_service_state",
    "latest_data_time",
    "list_job_events",
    "list_jobs",
    "list_jobs_mentioning",
    "pending_backlog",
]


def _fetch(conn: Connection, job_id: int) -> Job:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    if row is None:
        msg = f"no job with id {job_id}; list jobs with 'dsa110-contimg status'"
        raise StateError(msg)
    return _row_to_job(row)


def get_job(conn: Connection, job_id: int) -> Job:
    """Return one job; `StateError` when no job has that id."""
    return _fetch(conn, job_id)


def find_job(conn: Connection, kind: str, key: str) -> Job | None:
    """Return the job with this kind and key, or None."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE kind = ? AND key = ?", (kind, key)
    ).fetchone()
    return None if row is None else _row_to_job(row)


def list_jobs(
    conn: Connection,
    *,
    states: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[Job]:
    """Return jobs, optionally of some states and kinds, in id order."""
    sql = f"SELECT {_COLUMNS} FROM jobs WHERE 1 = 1"
    params: list[object] = []
    for column, values in (("state", states), ("kind", kinds)):
        if values is not None:
            sql += f" AND {column} IN ({', '.join('?' for _ in values) or 'NULL'})"
            params += list(values)
    sql += " ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [_row_to_job(row) for row in conn.execute(sql, params).fetchall()]


def count_jobs(conn: Connection) -> dict[str, int]:
    """Return the number of jobs in each state (every state present, zeros too)."""
    counts = dict.fromkeys(JOB_STATES, 0)
    for state, n in conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
        counts[str(state)] = int(n)
    return counts


def count_jobs_by_kind(conn: Connection) -> dict[str, dict[str, int]]:
    """Return ``{kind: {state: count}}`` for every kind of `JOB_KINDS`."""
    counts = {kind: dict.fromkeys(JOB_STATES, 0) for kind in JOB_KINDS}
    for kind, state, n in conn.execute(
        "SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state"
    ):
        counts.setdefault(str(kind), dict.fromkeys(JOB_STATES, 0))[str(state)] = int(n)
    return counts


def list_job_events(
    conn: Connection,
    job_id: int | None = None,
    *,
    errors_only: bool = False,
    limit: int | None = None,
) -> list[dict[str, object]]:
    """Return job events, newest last (or the newest ``limit``, still oldest first).

    Parameters
    ----------
    conn : Connection
        Connection to a migrated database (read-only is fine).
    job_id : int, optional
        Only this job's events.
    errors_only : bool
        Only events that carry an error class.
    limit : int, optional
        At most this many of the newest events.

    Returns
    -------
    list of dict
        ``job_events`` columns plus the job's ``kind`` and ``key``.
    """
    sql = (
        "SELECT e.id, e.job_id, j.kind, j.key, e.from_state, e.to_state, e.reason, "
        "e.worker, e.error_class, e.created_at FROM job_events e "
        "JOIN jobs j ON j.id = e.job_id WHERE 1 = 1"
    )
    params: list[object] = []
    if job_id is not None:
        sql += " AND e.job_id = ?"
        params.append(job_id)
    if errors_only:
        sql += " AND e.error_class IS NOT NULL"
    sql += " ORDER BY e.id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    cursor = conn.execute(sql, params)
    columns = [d[0] for d in cursor.description]
    rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    return rows[::-1]


def get_service_state(conn: Connection) -> dict[str, dict[str, object]]:
    """Return ``{name: value}`` of every service flag, each with its ``updated_at``."""
    out: dict[str, dict[str, object]] = {}
    for name, value, updated_at in conn.execute(
        "SELECT name, value_json, updated_at FROM service_state ORDER BY name"
    ):
        out[str(name)] = {**json.loads(str(value)), "updated_at": updated_at}
    return out


def latest_data_time(conn: Connection, kind: str) -> str | None:
    """Return the newest ``data_time_iso`` of the jobs of ``kind`` (None if none)."""
    row = conn.execute(
        "SELECT MAX(data_time_iso) FROM jobs WHERE kind = ?", (kind,)
    ).fetchone()
    return None if row is None else row[0]


def list_jobs_mentioning(conn: Connection, kind: str, text: str) -> list[Job]:
    """Return the jobs of ``kind`` whose payload JSON contains ``"text"``, by id.

    A coarse text match (the quoted ``text`` anywhere in the payload); the
    caller checks the field it means, e.g. a block's ``groups``.
    """
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE kind = ? AND payload_json LIKE ? "
        "ORDER BY id",
        (kind, f'%"{text}"%'),
    ).fetchall()
    return [_row_to_job(row) for row in rows]


@dataclass(frozen=True, slots=True)
class PendingBacklog:
    """The pending jobs at a moment.

    Attributes
    ----------
    n_runnable : int
        Pending jobs whose ``not_before_at`` has passed (claimable now).
    oldest_data_time_iso : str or None
        The oldest ``data_time_iso`` among pending jobs.
    oldest_created_at : str or None
        The oldest ``created_at`` among pending jobs.
    """

    n_runnable: int
    oldest_data_time_iso: str | None
    oldest_created_at: str | None


def pending_backlog(conn: Connection, *, now: datetime) -> PendingBacklog:
    """Return how many pending jobs are runnable at ``now`` and the oldest pending."""
    row = conn.execute(
        "SELECT MIN(data_time_iso), MIN(created_at), "
        "SUM(CASE WHEN not_before_at <= ? THEN 1 ELSE 0 END) "
        "FROM jobs WHERE state = 'pending'",
        (to_iso_utc(now),),
    ).fetchone()
    return PendingBacklog(int(row[2] or 0), row[0], row[1])
