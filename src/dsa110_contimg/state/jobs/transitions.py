"""Job queue transitions: the state machine of the streaming services.

A job is one unit of work, identified by its kind and key (``("convert_group",
"2025-01-02T03:04:05")``), so enqueuing the same work twice is a no-op. Its
state moves::

    pending --claim--> running --complete--> done
       ^                  |---retryable error, attempts left--> pending (backoff)
       |                  |---retryable error, none left------> failed
       |                  |---non-retryable error-------------> quarantined
       |                  |---release (shutdown) / lease lost--> pending
       +----requeue------ done | failed | quarantined
    pending | running --cancel (operator)--> quarantined

``requeue`` refuses pending and running jobs (a running job requeued would
run twice); a worker whose lease is revoked or reclaimed stops the job and
discards its output.

A running job holds a lease that its worker renews with heartbeats; a job
whose lease expired, or whose worker process is gone, is reclaimed. Every
transition is a plain function here that runs in one ``BEGIN IMMEDIATE``
transaction, refuses illegal moves with `StateError`, and writes a
``job_events`` row with its time and reason. Functions take ``now`` so tests
drive them with a fake clock. Column names follow
``state/schema/0002_jobs.sql``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import lru_cache

import sqlalchemy as sa

from dsa110_contimg.exceptions import ResourceError, StateError
from dsa110_contimg.state import schema_core as core
from dsa110_contimg.state._core import (
    Query,
    const,
    in_list,
    in_params,
    params_of,
    upsert,
)
from dsa110_contimg.state.db import (
    Connection,
    database_file,
    describe_target,
    to_iso_utc,
)
from dsa110_contimg.state.jobs.model import (
    JOB_KINDS,
    TERMINAL_STATES,
    Job,
    JobSpec,
    _row_to_job,
    backoff_delay_s,
    is_retryable,
)
from dsa110_contimg.state.jobs.queries import _fetch, find_job
from dsa110_contimg.utils.storage import is_resource_exhaustion

__all__ = [
    "enqueue_job",
    "claim_job",
    "heartbeat_job",
    "complete_job",
    "record_failure",
    "quarantine_job",
    "release_job",
    "requeue_job",
    "cancel_job",
    "reclaim_expired_jobs",
    "reclaim_orphaned_jobs",
    "set_service_state",
]

log = logging.getLogger(__name__)

_ALLOWED = frozenset(
    {
        (None, "pending"),
        (None, "quarantined"),
        ("pending", "running"),
        ("pending", "quarantined"),
        ("running", "done"),
        ("running", "pending"),
        ("running", "failed"),
        ("running", "quarantined"),
        ("done", "pending"),
        ("failed", "pending"),
        ("quarantined", "pending"),
    }
)
_MAX_MESSAGE_CHARS = 4000

_J = core.jobs
_EVENT_COLUMNS = (
    "job_id",
    "from_state",
    "to_state",
    "reason",
    "worker",
    "error_class",
    "created_at",
)
_EVENT = Query(sa.insert(core.job_events).values(params_of(_EVENT_COLUMNS)))
_INSERT_COLUMNS = (
    "kind",
    "key",
    "state",
    "priority",
    "data_time_iso",
    "payload_json",
    "max_attempts",
    "not_before_at",
    "quarantine_reason",
    "created_at",
    "updated_at",
)
_INSERT = Query(
    {
        backend: statement.returning(_J.c.id)
        for backend, statement in upsert(
            _J, _INSERT_COLUMNS, ("kind", "key"), ()
        ).items()
    }
)
_OF_JOB = _J.c.id == sa.bindparam("job_id")
_HEARTBEAT = Query(
    sa.update(_J)
    .where(_OF_JOB)
    .values(params_of(("heartbeat_at", "lease_expires_at", "updated_at")))
)
_RUNNING = _J.c.state == const("running")
_EXPIRED = Query(
    sa.select(_J)
    .where(_RUNNING, _J.c.lease_expires_at < sa.bindparam("now"))
    .order_by(_J.c.id)
)
_ALL_RUNNING = Query(sa.select(_J).where(_RUNNING).order_by(_J.c.id))
_SET_SERVICE_STATE = Query(
    upsert(core.service_state, ("name", "value_json", "updated_at"), ("name",))
)


@lru_cache(maxsize=64)
def _update_query(names: tuple[str, ...]) -> Query:
    """``UPDATE jobs SET <names> WHERE id = :job_id`` (one per set of columns)."""
    return Query(sa.update(_J).where(_OF_JOB).values(params_of(names)))


@lru_cache(maxsize=16)
def _next_query(n_kinds: int | None) -> Query:
    """The id of the next runnable job (of ``n_kinds`` kinds; None: any)."""
    where = [_J.c.state == const("pending"), _J.c.not_before_at <= sa.bindparam("now")]
    if n_kinds is not None:
        where.append(in_list(_J.c.kind, "kind", n_kinds))
    return Query(
        sa.select(_J.c.id)
        .where(*where)
        .order_by(_J.c.priority, _J.c.data_time_iso, _J.c.id)
        .limit(const(1))
    )


# --------------------------------------------------------------------------- core


@contextmanager
def _transaction(conn: Connection) -> Iterator[None]:
    if conn.in_transaction:
        msg = "job transitions need a connection with no open transaction"
        raise ValueError(msg)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    except sqlite3.OperationalError as err:
        if not is_resource_exhaustion(err):
            raise
        where = describe_target(database_file(conn) or ":memory:")
        msg = (
            f"state database {where}: {err}; free space on its "
            "filesystem (nothing was changed: the transition was rolled back)"
        )
        raise ResourceError(msg) from err


def _truncate(text: str) -> str:
    if len(text) <= _MAX_MESSAGE_CHARS:
        return text
    return text[: _MAX_MESSAGE_CHARS - 15] + " ...[truncated]"


def _event(
    conn: Connection,
    job_id: int,
    from_state: str | None,
    to_state: str,
    *,
    reason: str,
    now: str,
    worker: str | None = None,
    error_class: str | None = None,
) -> None:
    params = {
        "job_id": job_id,
        "from_state": from_state,
        "to_state": to_state,
        "reason": _truncate(reason),
        "worker": worker,
        "error_class": error_class,
        "created_at": now,
    }
    _EVENT.execute(conn, params)


def _move(
    conn: Connection,
    job: Job,
    to_state: str,
    *,
    reason: str,
    now: str,
    worker: str | None = None,
    **columns: object,
) -> Job:
    """Apply one checked transition inside an open transaction.

    ``columns`` are the other columns to set; an ``error_class`` among them is
    also recorded on the event.
    """
    if (job.state, to_state) not in _ALLOWED:
        msg = (
            f"job {job.id} ({job.kind} {job.key}) cannot go from {job.state} to "
            f"{to_state} ({reason})"
        )
        raise StateError(msg)
    columns = {"state": to_state, "updated_at": now, **columns}
    _update_query(tuple(columns)).execute(conn, {**columns, "job_id": job.id})
    _event(
        conn,
        job.id,
        job.state,
        to_state,
        reason=reason,
        now=now,
        worker=worker,
        error_class=columns.get("error_class"),  # type: ignore[arg-type]
    )
    log.debug(
        "job transition",
        extra={
            "job_id": job.id,
            "kind": job.kind,
            "key": job.key,
            "from_state": job.state,
            "to_state": to_state,
            "reason": reason,
        },
    )
    return _fetch(conn, job.id)


def _check_owner(job: Job, worker: str, action: str) -> None:
    if job.state != "running" or job.lease_owner != worker:
        msg = (
            f"job {job.id} ({job.kind} {job.key}) is {job.state} and leased to "
            f"{job.lease_owner!r}, not {worker!r}; cannot {action} it (its lease "
            "expired and it was reclaimed)"
        )
        raise StateError(msg)


def _insert(
    conn: Connection,
    spec: JobSpec,
    *,
    now: str,
    max_attempts: int,
    state: str,
    quarantine_reason: str | None,
) -> int | None:
    if spec.kind not in JOB_KINDS:
        msg = f"job kind must be one of {JOB_KINDS}, got {spec.kind!r}"
        raise ValueError(msg)
    if not spec.key:
        msg = "job key must be a non-empty string"
        raise ValueError(msg)
    if max_attempts < 1:
        msg = f"max_attempts must be >= 1, got {max_attempts}"
        raise ValueError(msg)
    row = (
        spec.kind,
        spec.key,
        state,
        spec.priority,
        spec.data_time_iso,
        json.dumps(spec.payload, sort_keys=True),
        max_attempts,
        now,
        quarantine_reason,
        now,
        now,
    )
    cursor = _INSERT.execute(conn, dict(zip(_INSERT_COLUMNS, row, strict=True)))
    row = cursor.fetchone()  # none when the (kind, key) existed
    return None if row is None else int(row[0])


# ------------------------------------------------------------------ transitions


def enqueue_job(
    conn: Connection,
    spec: JobSpec,
    *,
    now: datetime,
    max_attempts: int = 5,
    quarantine_reason: str | None = None,
) -> tuple[Job, bool]:
    """Add a job unless one with the same kind and key exists (exactly-once enqueue).

    Parameters
    ----------
    conn : Connection
        Writable, migrated connection with no open transaction.
    spec : JobSpec
        The work.
    now : datetime
        Current time (timezone-aware).
    max_attempts : int
        Tries allowed for retryable errors.
    quarantine_reason : str, optional
        Create the job directly in ``quarantined`` with this reason (work the
        producer already knows cannot run, kept for an operator to requeue).

    Returns
    -------
    job : Job
        The new job, or the existing one (unchanged) with that kind and key.
    created : bool
        Whether this call created it.
    """
    stamp = to_iso_utc(now)
    state = "pending" if quarantine_reason is None else "quarantined"
    with _transaction(conn):
        job_id = _insert(
            conn,
            spec,
            now=stamp,
            max_attempts=max_attempts,
            state=state,
            quarantine_reason=quarantine_reason,
        )
        if job_id is not None:
            _event(
                conn,
                job_id,
                None,
                state,
                reason=quarantine_reason or "enqueued",
                now=stamp,
            )
            return _fetch(conn, job_id), True
    existing = find_job(conn, spec.kind, spec.key)
    if existing is None:  # pragma: no cover - the conflict row cannot vanish
        msg = f"job {spec.kind} {spec.key} conflicted but does not exist"
        raise StateError(msg)
    return existing, False


def claim_job(
    conn: Connection,
    *,
    worker: str,
    now: datetime,
    lease_s: float,
    kinds: Sequence[str] | None = None,
) -> Job | None:
    """Lease the next runnable job to ``worker``; None when there is none.

    The next job is the pending one whose ``not_before_at`` has passed, with
    the smallest priority, then the oldest data, then the oldest id. Claiming
    counts an attempt.
    """
    stamp = to_iso_utc(now)
    params: dict[str, object] = {"now": stamp}
    if kinds is not None:
        if not kinds:
            return None
        params.update(in_params("kind", kinds))
    query = _next_query(None if kinds is None else len(kinds))
    with _transaction(conn):
        row = query.execute(conn, params).fetchone()
        if row is None:
            return None
        job = _fetch(conn, int(row[0]))
        return _move(
            conn,
            job,
            "running",
            reason=f"claimed (attempt {job.attempts + 1} of {job.max_attempts})",
            now=stamp,
            worker=worker,
            attempts=job.attempts + 1,
            lease_owner=worker,
            lease_expires_at=to_iso_utc(now + timedelta(seconds=lease_s)),
            heartbeat_at=stamp,
            started_at=stamp,
            finished_at=None,
        )


def heartbeat_job(
    conn: Connection,
    job_id: int,
    *,
    worker: str,
    now: datetime,
    lease_s: float,
) -> Job:
    """Extend the lease of a running job; `StateError` when ``worker`` lost it."""
    stamp = to_iso_utc(now)
    with _transaction(conn):
        job = _fetch(conn, job_id)
        _check_owner(job, worker, "renew the lease of")
        params = {
            "heartbeat_at": stamp,
            "lease_expires_at": to_iso_utc(now + timedelta(seconds=lease_s)),
            "updated_at": stamp,
            "job_id": job_id,
        }
        _HEARTBEAT.execute(conn, params)
        return _fetch(conn, job_id)


def complete_job(
    conn: Connection,
    job_id: int,
    *,
    worker: str,
    now: datetime,
    result: Mapping[str, object] | None = None,
    follow_ups: Sequence[JobSpec] = (),
    max_attempts: int = 5,
) -> Job:
    """Mark a running job done and enqueue the jobs its output feeds, atomically.

    A follow-up that already exists and has finished (``done``, ``failed`` or
    ``quarantined``) is requeued, because its input was just remade; one that
    is pending or running is left alone.
    """
    stamp = to_iso_utc(now)
    with _transaction(conn):
        job = _fetch(conn, job_id)
        _check_owner(job, worker, "complete")
        done = _move(
            conn,
            job,
            "done",
            reason="completed",
            now=stamp,
            worker=worker,
            result_json=json.dumps(dict(result or {}), sort_keys=True, default=str),
            finished_at=stamp,
            lease_owner=None,
            lease_expires_at=None,
            error_class=None,
            error_message=None,
        )
        for spec in follow_ups:
            new_id = _insert(
                conn,
                spec,
                now=stamp,
                max_attempts=max_attempts,
                state="pending",
                quarantine_reason=None,
            )
            if new_id is not None:
                _event(
                    conn,
                    new_id,
                    None,
                    "pending",
                    reason=f"enqueued by job {job.id} ({job.kind} {job.key})",
                    now=stamp,
                    worker=worker,
                )
                continue
            existing = find_job(conn, spec.kind, spec.key)
            if existing is not None and existing.state in TERMINAL_STATES:
                _requeue(
                    conn,
                    existing,
                    reason=f"input remade by job {job.id} ({job.kind} {job.key})",
                    now=stamp,
                    worker=worker,
                    payload=spec.payload,
                )
        return done


def record_failure(
    conn: Connection,
    job_id: int,
    error: BaseException,
    *,
    worker: str,
    now: datetime,
    backoff_base_s: float,
    backoff_max_s: float,
) -> Job:
    """Route a running job's error: retry later, fail, or quarantine.

    A retryable error (`is_retryable`) puts the job back to ``pending`` after
    an exponential backoff while attempts remain, else marks it ``failed``. A
    non-retryable error (bad input retrying cannot fix) quarantines it with
    the error as the reason; its payload keeps the inputs.
    """
    stamp = to_iso_utc(now)
    error_class = type(error).__name__
    message = _truncate(str(error) or error_class)
    with _transaction(conn):
        job = _fetch(conn, job_id)
        _check_owner(job, worker, "record a failure of")
        common = {
            "error_class": error_class,
            "error_message": message,
            "lease_owner": None,
            "lease_expires_at": None,
        }
        if not is_retryable(error):
            return _move(
                conn,
                job,
                "quarantined",
                reason=f"{error_class}: {message}",
                now=stamp,
                worker=worker,
                quarantine_reason=f"{error_class}: {message}",
                finished_at=stamp,
                **common,
            )
        if job.attempts >= job.max_attempts:
            return _move(
                conn,
                job,
                "failed",
                reason=f"attempt {job.attempts} of {job.max_attempts} failed, none "
                f"left: {error_class}: {message}",
                now=stamp,
                worker=worker,
                finished_at=stamp,
                **common,
            )
        delay_s = backoff_delay_s(
            job.attempts, base_s=backoff_base_s, max_s=backoff_max_s
        )
        return _move(
            conn,
            job,
            "pending",
            reason=f"attempt {job.attempts} of {job.max_attempts} failed, retry in "
            f"{delay_s:g} s: {error_class}: {message}",
            now=stamp,
            worker=worker,
            not_before_at=to_iso_utc(now + timedelta(seconds=delay_s)),
            **common,
        )


def quarantine_job(
    conn: Connection,
    job_id: int,
    *,
    reason: str,
    now: datetime,
    worker: str | None = None,
) -> Job:
    """Set a pending or running job aside for an operator, with the reason."""
    stamp = to_iso_utc(now)
    with _transaction(conn):
        job = _fetch(conn, job_id)
        if job.state == "running" and worker is not None:
            _check_owner(job, worker, "quarantine")
        return _move(
            conn,
            job,
            "quarantined",
            reason=reason,
            now=stamp,
            worker=worker,
            quarantine_reason=reason,
            finished_at=stamp,
            lease_owner=None,
            lease_expires_at=None,
        )


def cancel_job(
    conn: Connection,
    job_id: int,
    *,
    now: datetime,
    reason: str = "cancelled by an operator (dsa110-contimg cancel)",
) -> Job:
    """Stop a pending or running job: quarantine it and revoke its lease.

    The worker running it sees its lease gone at its next heartbeat, stops
    the job and discards its output; the job can then be requeued.
    """
    stamp = to_iso_utc(now)
    with _transaction(conn):
        job = _fetch(conn, job_id)
        if job.state not in ("pending", "running"):
            msg = (
                f"job {job.id} ({job.kind} {job.key}) is {job.state}, not pending "
                "or running; nothing to cancel (requeue it to run it again)"
            )
            raise StateError(msg)
        return _move(
            conn,
            job,
            "quarantined",
            reason=reason,
            now=stamp,
            quarantine_reason=reason,
            finished_at=stamp,
            lease_owner=None,
            lease_expires_at=None,
        )


def release_job(
    conn: Connection,
    job_id: int,
    *,
    worker: str,
    now: datetime,
    reason: str,
) -> Job:
    """Give a running job back without counting the attempt (e.g. on shutdown)."""
    stamp = to_iso_utc(now)
    with _transaction(conn):
        job = _fetch(conn, job_id)
        _check_owner(job, worker, "release")
        return _move(
            conn,
            job,
            "pending",
            reason=reason,
            now=stamp,
            worker=worker,
            attempts=max(0, job.attempts - 1),
            not_before_at=stamp,
            lease_owner=None,
            lease_expires_at=None,
        )


def _requeue(
    conn: Connection,
    job: Job,
    *,
    reason: str,
    now: str,
    worker: str | None,
    payload: Mapping[str, object] | None,
) -> Job:
    columns: dict[str, object] = {
        "attempts": 0,
        "not_before_at": now,
        "error_class": None,
        "error_message": None,
        "quarantine_reason": None,
        "finished_at": None,
    }
    if payload is not None:
        columns["payload_json"] = json.dumps(dict(payload), sort_keys=True)
    return _move(conn, job, "pending", reason=reason, now=now, worker=worker, **columns)


def requeue_job(
    conn: Connection,
    job_id: int,
    *,
    now: datetime,
    reason: str,
    payload: Mapping[str, object] | None = None,
    worker: str | None = None,
) -> Job:
    """Send a finished job (done, failed or quarantined) back to pending.

    Its attempts restart from zero and its error is cleared (the events keep
    the history); ``payload`` replaces the inputs when given. A pending or
    running job is refused with `StateError`: requeuing a running job would
    let a second worker run it while the first still does (cancel it first
    with `cancel_job`).
    """
    with _transaction(conn):
        job = _fetch(conn, job_id)
        if job.state not in TERMINAL_STATES:
            msg = (
                f"job {job.id} ({job.kind} {job.key}) is {job.state}"
                + (f" (leased to {job.lease_owner})" if job.lease_owner else "")
                + "; only done, failed or quarantined jobs can be requeued; "
                "cancel it first ('dsa110-contimg cancel "
                f"{job.id}') if it must be redone"
            )
            raise StateError(msg)
        return _requeue(
            conn,
            job,
            reason=reason,
            now=to_iso_utc(now),
            worker=worker,
            payload=payload,
        )


def _reclaim(conn: Connection, job: Job, *, reason: str, stamp: str) -> Job:
    common = {"lease_owner": None, "lease_expires_at": None}
    if job.attempts >= job.max_attempts:
        return _move(
            conn,
            job,
            "failed",
            reason=f"{reason}; attempt {job.attempts} of {job.max_attempts}, none "
            "left (the job may crash its worker)",
            now=stamp,
            error_class="LeaseLost",
            error_message=reason,
            finished_at=stamp,
            **common,
        )
    return _move(
        conn, job, "pending", reason=reason, now=stamp, not_before_at=stamp, **common
    )


def reclaim_expired_jobs(conn: Connection, *, now: datetime) -> list[Job]:
    """Return running jobs whose lease expired to pending (or failed when exhausted)."""
    stamp = to_iso_utc(now)
    reclaimed = []
    with _transaction(conn):
        rows = _EXPIRED.execute(conn, {"now": stamp}).fetchall()
        for row in rows:
            job = _row_to_job(row)
            reason = (
                f"lease of {job.lease_owner} expired at {job.lease_expires_at} "
                "(no heartbeat)"
            )
            reclaimed.append(_reclaim(conn, job, reason=reason, stamp=stamp))
    return reclaimed


def reclaim_orphaned_jobs(
    conn: Connection,
    *,
    now: datetime,
    is_orphaned: Callable[[str], bool],
) -> list[Job]:
    """Reclaim running jobs whose lease owner ``is_orphaned`` says is gone.

    Used at start-up to take back, without waiting for the lease to expire,
    the jobs of a worker on this host that was killed.
    """
    stamp = to_iso_utc(now)
    reclaimed = []
    with _transaction(conn):
        rows = _ALL_RUNNING.execute(conn).fetchall()
        for row in rows:
            job = _row_to_job(row)
            if job.lease_owner is None or not is_orphaned(job.lease_owner):
                continue
            reason = f"worker {job.lease_owner} is gone (crashed or killed)"
            reclaimed.append(_reclaim(conn, job, reason=reason, stamp=stamp))
    return reclaimed


def set_service_state(
    conn: Connection,
    name: str,
    value: Mapping[str, object],
    *,
    now: datetime,
) -> None:
    """Store a service-wide flag (e.g. ``"intake"``) shown by the status command."""
    stamp = to_iso_utc(now)
    with _transaction(conn):
        params = {
            "name": name,
            "value_json": json.dumps(dict(value), sort_keys=True, default=str),
            "updated_at": stamp,
        }
        _SET_SERVICE_STATE.execute(conn, params)
