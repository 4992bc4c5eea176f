"""Read-only queries of the job queue: one job, listings, counts, events, flags.

Nothing here writes; every function works on a read-only connection
(``state.db.connect(path, readonly=True)``). The transitions that change jobs
are in `state.jobs.transitions`. The statements are SQLAlchemy Core on
`state.schema_core.jobs` (`state._core.Query`: compiled once per backend).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from dsa110_contimg.exceptions import StateError
from dsa110_contimg.state import schema_core
from dsa110_contimg.state._core import Query, const, in_list, in_params
from dsa110_contimg.state.db import Connection, to_iso_utc
from dsa110_contimg.state.jobs.model import (
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

_jobs = schema_core.jobs
_events = schema_core.job_events

_BY_ID = Query(sa.select(_jobs).where(_jobs.c.id == sa.bindparam("id")))
_BY_KIND_KEY = Query(
    sa.select(_jobs).where(
        _jobs.c.kind == sa.bindparam("kind"), _jobs.c.key == sa.bindparam("key")
    )
)


def _fetch(conn: Connection, job_id: int) -> Job:
    row = _BY_ID.execute(conn, {"id": job_id}).fetchone()
    if row is None:
        msg = f"no job with id {job_id}; list jobs with 'dsa110-contimg status'"
        raise StateError(msg)
    return _row_to_job(row)


def get_job(conn: Connection, job_id: int) -> Job:
    """Return one job; `StateError` when no job has that id."""
    return _fetch(conn, job_id)


def find_job(conn: Connection, kind: str, key: str) -> Job | None:
    """Return the job with this kind and key, or None."""
    row = _BY_KIND_KEY.execute(conn, {"kind": kind, "key": key}).fetchone()
    return None if row is None else _row_to_job(row)


@functools.lru_cache(maxsize=64)
def _list_query(n_states: int | None, n_kinds: int | None, limited: bool) -> Query:
    query = sa.select(_jobs)
    if n_states is not None:
        query = query.where(in_list(_jobs.c.state, "state", n_states))
    if n_kinds is not None:
        query = query.where(in_list(_jobs.c.kind, "kind", n_kinds))
    query = query.order_by(_jobs.c.id)
    if limited:
        query = query.limit(sa.bindparam("limit"))
    return Query(query)


def list_jobs(
    conn: Connection,
    *,
    states: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[Job]:
    """Return jobs, optionally of some states and kinds, in id order."""
    query = _list_query(
        None if states is None else len(states),
        None if kinds is None else len(kinds),
        limit is not None,
    )
    params = {
        **in_params("state", states or ()),
        **in_params("kind", kinds or ()),
        "limit": None if limit is None else int(limit),
    }
    return [_row_to_job(row) for row in query.execute(conn, params).fetchall()]


_COUNT_BY_STATE = Query(
    sa.select(_jobs.c.state, sa.func.count()).group_by(_jobs.c.state)
)
_COUNT_BY_KIND_STATE = Query(
    sa.select(_jobs.c.kind, _jobs.c.state, sa.func.count()).group_by(
        _jobs.c.kind, _jobs.c.state
    )
)


def count_jobs(conn: Connection) -> dict[str, int]:
    """Return the number of jobs in each state (every state present, zeros too)."""
    counts = dict.fromkeys(JOB_STATES, 0)
    for state, n in _COUNT_BY_STATE.execute(conn):
        counts[str(state)] = int(n)
    return counts


def count_jobs_by_kind(conn: Connection) -> dict[str, dict[str, int]]:
    """Return ``{kind: {state: count}}`` for every kind of `JOB_KINDS`."""
    counts = {kind: dict.fromkeys(JOB_STATES, 0) for kind in JOB_KINDS}
    for kind, state, n in _COUNT_BY_KIND_STATE.execute(conn):
        counts.setdefault(str(kind), dict.fromkeys(JOB_STATES, 0))[str(state)] = int(n)
    return counts


def event_columns(e: sa.Alias, j: sa.Alias) -> list[sa.ColumnElement]:
    """An event's columns with its job's kind and key (``e`` joined to ``j``)."""
    return [
        e.c.id,
        e.c.job_id,
        j.c.kind,
        j.c.key,
        e.c.from_state,
        e.c.to_state,
        e.c.reason,
        e.c.worker,
        e.c.error_class,
        e.c.created_at,
    ]


@functools.lru_cache(maxsize=8)
def _events_query(by_job: bool, errors_only: bool, limited: bool) -> Query:
    e, j = _events.alias("e"), _jobs.alias("j")
    query = sa.select(*event_columns(e, j)).select_from(e.join(j, j.c.id == e.c.job_id))
    if by_job:
        query = query.where(e.c.job_id == sa.bindparam("job_id"))
    if errors_only:
        query = query.where(e.c.error_class.is_not(None))
    query = query.order_by(e.c.id.desc())
    if limited:
        query = query.limit(sa.bindparam("limit"))
    return Query(query)


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
    query = _events_query(job_id is not None, bool(errors_only), limit is not None)
    params = {"job_id": job_id, "limit": None if limit is None else int(limit)}
    cursor = query.execute(conn, params)
    columns = [d[0] for d in cursor.description]
    rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    return rows[::-1]


_SERVICE_STATE = Query(
    sa.select(
        schema_core.service_state.c.name,
        schema_core.service_state.c.value_json,
        schema_core.service_state.c.updated_at,
    ).order_by(schema_core.service_state.c.name)
)


def get_service_state(conn: Connection) -> dict[str, dict[str, object]]:
    """Return ``{name: value}`` of every service flag, each with its ``updated_at``."""
    out: dict[str, dict[str, object]] = {}
    for name, value, updated_at in _SERVICE_STATE.execute(conn):
        out[str(name)] = {**json.loads(str(value)), "updated_at": updated_at}
    return out


_LATEST_DATA_TIME = Query(
    sa.select(sa.func.max(_jobs.c.data_time_iso)).where(
        _jobs.c.kind == sa.bindparam("kind")
    )
)


def latest_data_time(conn: Connection, kind: str) -> str | None:
    """Return the newest ``data_time_iso`` of the jobs of ``kind`` (None if none)."""
    row = _LATEST_DATA_TIME.execute(conn, {"kind": kind}).fetchone()
    return None if row is None else row[0]


_MENTIONING = Query(
    sa.select(_jobs)
    .where(
        _jobs.c.kind == sa.bindparam("kind"),
        _jobs.c.payload_json.like(sa.bindparam("pattern")),
    )
    .order_by(_jobs.c.id)
)


def list_jobs_mentioning(conn: Connection, kind: str, text: str) -> list[Job]:
    """Return the jobs of ``kind`` whose payload JSON contains ``"text"``, by id.

    A coarse text match (the quoted ``text`` anywhere in the payload); the
    caller checks the field it means, e.g. a block's ``groups``.
    """
    params = {"kind": kind, "pattern": f'%"{text}"%'}
    rows = _MENTIONING.execute(conn, params).fetchall()
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


_BACKLOG = Query(
    sa.select(
        sa.func.min(_jobs.c.data_time_iso),
        sa.func.min(_jobs.c.created_at),
        sa.func.sum(
            sa.case(
                (_jobs.c.not_before_at <= sa.bindparam("now"), const(1)),
                else_=const(0),
            )
        ),
    ).where(_jobs.c.state == const("pending"))
)


def pending_backlog(conn: Connection, *, now: datetime) -> PendingBacklog:
    """Return how many pending jobs are runnable at ``now`` and the oldest pending."""
    row = _BACKLOG.execute(conn, {"now": to_iso_utc(now)}).fetchone()
    return PendingBacklog(int(row[2] or 0), row[0], row[1])
