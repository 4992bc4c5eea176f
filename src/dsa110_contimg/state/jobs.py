"""Durable job queue: the state machine of the streaming services.

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
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dsa110_contimg.exceptions import PipelineError, ResourceError, StateError
from dsa110_contimg.state.db import to_iso_utc
from dsa110_contimg.tables import JOBS
from dsa110_contimg.utils.storage import is_resource_exhaustion

__all__ = [
    "CONVERT_GROUP",
    "PROCESS_BLOCK",
    "UPDATE_VARIABILITY",
    "JOB_KINDS",
    "JOB_STATES",
    "TERMINAL_STATES",
    "PRIORITY_LIVE",
    "PRIORITY_BACKFILL",
    "Job",
    "JobSpec",
    "is_retryable",
    "backoff_delay_s",
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
    "get_job",
    "find_job",
    "list_jobs",
    "count_jobs",
    "count_jobs_by_kind",
    "list_job_events",
    "set_service_state",
    "get_service_state",
]

log = logging.getLogger(__name__)

CONVERT_GROUP = "convert_group"
PROCESS_BLOCK = "process_block"
UPDATE_VARIABILITY = "update_variability"
JOB_KINDS = (CONVERT_GROUP, PROCESS_BLOCK, UPDATE_VARIABILITY)
JOB_STATES = ("pending", "running", "done", "failed", "quarantined")
TERMINAL_STATES = frozenset({"done", "failed", "quarantined"})

PRIORITY_LIVE = 0
"""Priority of live data (claimed first; smaller runs earlier)."""
PRIORITY_BACKFILL = 10
"""Priority of backfill (data older than ``queue.live_window_s``)."""

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
_COLUMNS = ", ".join(JOBS.names)  # the jobs table, as dsa110_contimg.tables has it


@dataclass(frozen=True, slots=True)
class Job:
    """One row of the ``jobs`` table (see ``0002_jobs.sql`` for the columns)."""

    id: int
    kind: str
    key: str
    state: str
    priority: int
    data_time_iso: str
    payload: dict[str, object]
    result: dict[str, object] | None
    attempts: int
    max_attempts: int
    not_before_at: str
    lease_owner: str | None
    lease_expires_at: str | None
    heartbeat_at: str | None
    error_class: str | None
    error_message: str | None
    quarantine_reason: str | None
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None

    def to_dict(self) -> dict[str, object]:
        """Return the job as a JSON-serialisable dict keyed by column name."""
        out = {name: getattr(self, name) for name in self.__slots__}
        out["payload_json"] = out.pop("payload")
        out["result_json"] = out.pop("result")
        return out


@dataclass(frozen=True, slots=True)
class JobSpec:
    """Work to enqueue: its identity, inputs and scheduling.

    Attributes
    ----------
    kind : str
        One of `JOB_KINDS`.
    key : str
        Unique within the kind (a group id, a block id).
    data_time_iso : str
        Time of the data the job is about (ISO 8601); orders jobs of equal
        priority, oldest first.
    payload : dict
        JSON-serialisable inputs of the job.
    priority : int
        `PRIORITY_LIVE` or `PRIORITY_BACKFILL` (smaller runs first).
    """

    kind: str
    key: str
    data_time_iso: str
    payload: dict[str, object] = field(default_factory=dict)
    priority: int = PRIORITY_BACKFILL


def is_retryable(error: BaseException) -> bool:
    """Return whether retrying the work that raised ``error`` can succeed.

    Pipeline errors say so through their class attribute ``retryable``;
    ``OSError`` (full disk, flaky filesystem) is retryable; any other
    exception is unexpected and retried too, so it ends as ``failed`` (not
    quarantined) when retries run out.
    """
    if isinstance(error, PipelineError):
        return bool(type(error).retryable)
    return True


def backoff_delay_s(attempts: int, *, base_s: float, max_s: float) -> float:
    """Return the delay before the next try, ``base_s * 2**(attempts - 1)``, capped."""
    if attempts < 1:
        return 0.0
    return float(min(max_s, base_s * 2.0 ** min(attempts - 1, 60)))


# --------------------------------------------------------------------------- core


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
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
        msg = (
            f"state database {_db_path(conn)}: {err}; free space on its "
            "filesystem (nothing was changed: the transition was rolled back)"
        )
        raise ResourceError(msg) from err


def _db_path(conn: sqlite3.Connection) -> str:
    for row in conn.execute("PRAGMA database_list"):
        if row[1] == "main":
            return str(row[2]) or ":memory:"
    return "?"


def _row_to_job(row: Sequence[object]) -> Job:
    values = list(row)
    values[6] = json.loads(str(values[6]))
    values[7] = None if values[7] is None else json.loads(str(values[7]))
    return Job(*values)  # type: ignore[arg-type]


def _fetch(conn: sqlite3.Connection, job_id: int) -> Job:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    if row is None:
        msg = f"no job with id {job_id}; list jobs with 'dsa110-contimg status'"
        raise StateError(msg)
    return _row_to_job(row)


def _truncate(text: str) -> str:
    if len(text) <= _MAX_MESSAGE_CHARS:
        return text
    return text[: _MAX_MESSAGE_CHARS - 15] + " ...[truncated]"


def _event(
    conn: sqlite3.Connection,
    job_id: int,
    from_state: str | None,
    to_state: str,
    *,
    reason: str,
    now: str,
    worker: str | None = None,
    error_class: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO job_events (job_id, from_state, to_state, reason, worker, "
        "error_class, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (job_id, from_state, to_state, _truncate(reason), worker, error_class, now),
    )


def _move(
    conn: sqlite3.Connection,
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
    assignments = ", ".join(f"{name} = ?" for name in columns)
    conn.execute(
        f"UPDATE jobs SET {assignments} WHERE id = ?", (*columns.values(), job.id)
    )
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
    conn: sqlite3.Connection,
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
    cursor = conn.execute(
        "INSERT INTO jobs (kind, key, state, priority, data_time_iso, payload_json, "
        "max_attempts, not_before_at, quarantine_reason, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kind, key) DO NOTHING",
        (
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
        ),
    )
    return cursor.lastrowid if cursor.rowcount == 1 else None


# ------------------------------------------------------------------ transitions


def enqueue_job(
    conn: sqlite3.Connection,
    spec: JobSpec,
    *,
    now: datetime,
    max_attempts: int = 5,
    quarantine_reason: str | None = None,
) -> tuple[Job, bool]:
    """Add a job unless one with the same kind and key exists (exactly-once enqueue).

    Parameters
    ----------
    conn : sqlite3.Connection
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
    conn: sqlite3.Connection,
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
    sql = "SELECT id FROM jobs WHERE state = 'pending' AND not_before_at <= ?"
    params: list[object] = [stamp]
    if kinds is not None:
        if not kinds:
            return None
        sql += f" AND kind IN ({', '.join('?' for _ in kinds)})"
        params += list(kinds)
    sql += " ORDER BY priority, data_time_iso, id LIMIT 1"
    with _transaction(conn):
        row = conn.execute(sql, params).fetchone()
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
    conn: sqlite3.Connection,
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
        conn.execute(
            "UPDATE jobs SET heartbeat_at = ?, lease_expires_at = ?, updated_at = ? "
            "WHERE id = ?",
            (stamp, to_iso_utc(now + timedelta(seconds=lease_s)), stamp, job_id),
        )
        return _fetch(conn, job_id)


def complete_job(
    conn: sqlite3.Connection,
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
    conn: sqlite3.Connection,
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
    conn: sqlite3.Connection,
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
    conn: sqlite3.Connection,
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
    conn: sqlite3.Connection,
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
    conn: sqlite3.Connection,
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
    conn: sqlite3.Connection,
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


def _reclaim(conn: sqlite3.Connection, job: Job, *, reason: str, stamp: str) -> Job:
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


def reclaim_expired_jobs(conn: sqlite3.Connection, *, now: datetime) -> list[Job]:
    """Return running jobs whose lease expired to pending (or failed when exhausted)."""
    stamp = to_iso_utc(now)
    reclaimed = []
    with _transaction(conn):
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE state = 'running' "
            "AND lease_expires_at < ? ORDER BY id",
            (stamp,),
        ).fetchall()
        for row in rows:
            job = _row_to_job(row)
            reason = (
                f"lease of {job.lease_owner} expired at {job.lease_expires_at} "
                "(no heartbeat)"
            )
            reclaimed.append(_reclaim(conn, job, reason=reason, stamp=stamp))
    return reclaimed


def reclaim_orphaned_jobs(
    conn: sqlite3.Connection,
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
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE state = 'running' ORDER BY id"
        ).fetchall()
        for row in rows:
            job = _row_to_job(row)
            if job.lease_owner is None or not is_orphaned(job.lease_owner):
                continue
            reason = f"worker {job.lease_owner} is gone (crashed or killed)"
            reclaimed.append(_reclaim(conn, job, reason=reason, stamp=stamp))
    return reclaimed


# --------------------------------------------------------------------------- queries


def get_job(conn: sqlite3.Connection, job_id: int) -> Job:
    """Return one job; `StateError` when no job has that id."""
    return _fetch(conn, job_id)


def find_job(conn: sqlite3.Connection, kind: str, key: str) -> Job | None:
    """Return the job with this kind and key, or None."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE kind = ? AND key = ?", (kind, key)
    ).fetchone()
    return None if row is None else _row_to_job(row)


def list_jobs(
    conn: sqlite3.Connection,
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


def count_jobs(conn: sqlite3.Connection) -> dict[str, int]:
    """Return the number of jobs in each state (every state present, zeros too)."""
    counts = dict.fromkeys(JOB_STATES, 0)
    for state, n in conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
        counts[str(state)] = int(n)
    return counts


def count_jobs_by_kind(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Return ``{kind: {state: count}}`` for every kind of `JOB_KINDS`."""
    counts = {kind: dict.fromkeys(JOB_STATES, 0) for kind in JOB_KINDS}
    for kind, state, n in conn.execute(
        "SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state"
    ):
        counts.setdefault(str(kind), dict.fromkeys(JOB_STATES, 0))[str(state)] = int(n)
    return counts


def list_job_events(
    conn: sqlite3.Connection,
    job_id: int | None = None,
    *,
    errors_only: bool = False,
    limit: int | None = None,
) -> list[dict[str, object]]:
    """Return job events, newest last (or the newest ``limit``, still oldest first).

    Parameters
    ----------
    conn : sqlite3.Connection
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


def set_service_state(
    conn: sqlite3.Connection,
    name: str,
    value: Mapping[str, object],
    *,
    now: datetime,
) -> None:
    """Store a service-wide flag (e.g. ``"intake"``) shown by the status command."""
    stamp = to_iso_utc(now)
    with _transaction(conn):
        conn.execute(
            "INSERT INTO service_state (name, value_json, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value_json = excluded.value_json, "
            "updated_at = excluded.updated_at",
            (name, json.dumps(dict(value), sort_keys=True, default=str), stamp),
        )


def get_service_state(conn: sqlite3.Connection) -> dict[str, dict[str, object]]:
    """Return ``{name: value}`` of every service flag, each with its ``updated_at``."""
    out: dict[str, dict[str, object]] = {}
    for name, value, updated_at in conn.execute(
        "SELECT name, value_json, updated_at FROM service_state ORDER BY name"
    ):
        out[str(name)] = {**json.loads(str(value)), "updated_at": updated_at}
    return out
