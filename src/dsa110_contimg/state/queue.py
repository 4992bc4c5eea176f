"""The job queue interface the services use, and its backends.

`JobQueue` is what `services._runner.JobRunner` calls to enqueue, claim,
renew, finish, fail, release, requeue, cancel and reclaim jobs. Two backends
implement it (config ``queue.backend``):

- ``sqlite`` (`SqliteJobQueue`, the default): the transitions of
  `state.jobs` on the state database; idle workers poll it.
- ``redis`` (`state.redis_queue.RedisJobQueue`): the same transitions on the
  state database, which stays the job's record of state (attempts, errors,
  payload, events, leases), plus delivery through Redis Streams with a
  consumer group, so workers on several machines take job ids from a stream
  instead of polling, and a dead worker's entries are recovered by
  ``XAUTOCLAIM``.

Either way every state change is one checked database transaction, so a job
cannot be claimed twice, and ``status``, ``list``, ``requeue`` and ``cancel``
read and write the same rows on both backends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from dsa110_contimg.state import jobs
from dsa110_contimg.state.db import Connection
from dsa110_contimg.state.jobs import Job, JobSpec
from dsa110_contimg.state.queue_reads import RecordReads
from dsa110_contimg.utils.config import QueueConfig

__all__ = ["JobQueue", "SqliteJobQueue", "open_queue"]

CANCEL_REASON = "cancelled by an operator (dsa110-contimg cancel)"


@runtime_checkable
class JobQueue(Protocol):
    """The operations of a durable job queue (see `state.jobs.transitions`).

    Every method takes ``now`` (timezone-aware) so tests drive it with a fake
    clock; errors are those of the transitions (`StateError` for an illegal
    move or a lost lease, `DatabaseError` from the state database).
    """

    conn: Connection
    backend: str

    def enqueue(
        self,
        spec: JobSpec,
        *,
        now: datetime,
        max_attempts: int = 5,
        quarantine_reason: str | None = None,
    ) -> tuple[Job, bool]:
        """Add a job unless one with its kind and key exists; (job, created)."""
        ...

    def claim(
        self,
        *,
        worker: str,
        now: datetime,
        lease_s: float,
        kinds: Sequence[str] | None = None,
    ) -> Job | None:
        """Lease the next runnable job of ``kinds`` to ``worker``; None if none."""
        ...

    def heartbeat(
        self, job_id: int, *, worker: str, now: datetime, lease_s: float
    ) -> Job:
        """Renew ``worker``'s lease of a running job."""
        ...

    def complete(
        self,
        job_id: int,
        *,
        worker: str,
        now: datetime,
        result: Mapping[str, object] | None = None,
        follow_ups: Sequence[JobSpec] = (),
        max_attempts: int = 5,
    ) -> Job:
        """Mark a running job done and enqueue its follow-ups, atomically."""
        ...

    def fail(
        self,
        job_id: int,
        error: BaseException,
        *,
        worker: str,
        now: datetime,
        backoff_base_s: float,
        backoff_max_s: float,
    ) -> Job:
        """Route a running job's error: retry after a backoff, fail or quarantine."""
        ...

    def release(self, job_id: int, *, worker: str, now: datetime, reason: str) -> Job:
        """Give a running job back without counting the attempt."""
        ...

    def abandon(self, job_id: int) -> None:
        """Forget a job whose lease this worker lost (nothing is recorded)."""
        ...

    def quarantine(
        self, job_id: int, *, reason: str, now: datetime, worker: str | None = None
    ) -> Job:
        """Set a pending or running job aside for an operator."""
        ...

    def requeue(
        self,
        job_id: int,
        *,
        now: datetime,
        reason: str,
        payload: Mapping[str, object] | None = None,
        worker: str | None = None,
    ) -> Job:
        """Send a finished job back to pending (attempts restart from zero)."""
        ...

    def cancel(self, job_id: int, *, now: datetime, reason: str = CANCEL_REASON) -> Job:
        """Stop a pending or running job (quarantine it, revoke its lease)."""
        ...

    def reclaim_expired(self, *, now: datetime) -> list[Job]:
        """Take back running jobs whose lease expired."""
        ...

    def reclaim_orphaned(
        self, *, now: datetime, is_orphaned: Callable[[str], bool]
    ) -> list[Job]:
        """Take back running jobs whose lease owner ``is_orphaned`` says is gone."""
        ...

    def get(self, job_id: int) -> Job:
        """Return one job (`StateError` when there is none with that id)."""
        ...

    def find(self, kind: str, key: str) -> Job | None:
        """Return the job with that kind and key, or None."""
        ...

    def list(
        self,
        *,
        states: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        """List jobs (see `state.jobs.list_jobs`)."""
        ...

    def counts(self) -> dict[str, int]:
        """Return the number of jobs in each state."""
        ...

    def dead_lettered(self) -> list[dict[str, object]]:
        """Return the jobs set aside for an operator (``dead-letters`` command).

        ``sqlite``: the quarantined jobs; ``redis``: the dead-letter stream.
        """
        ...

    def close(self) -> None:
        """Release the backend's connections (not the state database's)."""
        ...


class SqliteJobQueue(RecordReads):
    """The embedded queue: the `state.jobs` transitions on one connection.

    Parameters
    ----------
    conn : Connection
        Writable, migrated state-database connection.
    """

    backend = "sqlite"

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def enqueue(
        self,
        spec: JobSpec,
        *,
        now: datetime,
        max_attempts: int = 5,
        quarantine_reason: str | None = None,
    ) -> tuple[Job, bool]:
        return jobs.enqueue_job(
            self.conn,
            spec,
            now=now,
            max_attempts=max_attempts,
            quarantine_reason=quarantine_reason,
        )

    def claim(
        self,
        *,
        worker: str,
        now: datetime,
        lease_s: float,
        kinds: Sequence[str] | None = None,
    ) -> Job | None:
        return jobs.claim_job(
            self.conn, worker=worker, now=now, lease_s=lease_s, kinds=kinds
        )

    def heartbeat(
        self, job_id: int, *, worker: str, now: datetime, lease_s: float
    ) -> Job:
        return jobs.heartbeat_job(
            self.conn, job_id, worker=worker, now=now, lease_s=lease_s
        )

    def complete(
        self,
        job_id: int,
        *,
        worker: str,
        now: datetime,
        result: Mapping[str, object] | None = None,
        follow_ups: Sequence[JobSpec] = (),
        max_attempts: int = 5,
    ) -> Job:
        return jobs.complete_job(
            self.conn,
            job_id,
            worker=worker,
            now=now,
            result=result,
            follow_ups=follow_ups,
            max_attempts=max_attempts,
        )

    def fail(
        self,
        job_id: int,
        error: BaseException,
        *,
        worker: str,
        now: datetime,
        backoff_base_s: float,
        backoff_max_s: float,
    ) -> Job:
        return jobs.record_failure(
            self.conn,
            job_id,
            error,
            worker=worker,
            now=now,
            backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s,
        )

    def release(self, job_id: int, *, worker: str, now: datetime, reason: str) -> Job:
        return jobs.release_job(
            self.conn, job_id, worker=worker, now=now, reason=reason
        )

    def abandon(self, job_id: int) -> None:
        del job_id  # the database row already belongs to someone else

    def quarantine(
        self, job_id: int, *, reason: str, now: datetime, worker: str | None = None
    ) -> Job:
        return jobs.quarantine_job(
            self.conn, job_id, reason=reason, now=now, worker=worker
        )

    def requeue(
        self,
        job_id: int,
        *,
        now: datetime,
        reason: str,
        payload: Mapping[str, object] | None = None,
        worker: str | None = None,
    ) -> Job:
        return jobs.requeue_job(
            self.conn, job_id, now=now, reason=reason, payload=payload, worker=worker
        )

    def cancel(self, job_id: int, *, now: datetime, reason: str = CANCEL_REASON) -> Job:
        return jobs.cancel_job(self.conn, job_id, now=now, reason=reason)

    def reclaim_expired(self, *, now: datetime) -> list[Job]:
        return jobs.reclaim_expired_jobs(self.conn, now=now)

    def reclaim_orphaned(
        self, *, now: datetime, is_orphaned: Callable[[str], bool]
    ) -> list[Job]:
        return jobs.reclaim_orphaned_jobs(self.conn, now=now, is_orphaned=is_orphaned)

    def close(self) -> None:
        """Nothing to release: the connection belongs to the caller."""


def open_queue(cfg: QueueConfig, conn: Connection) -> JobQueue:
    """Return the queue backend that ``cfg.backend`` names, on ``conn``.

    Parameters
    ----------
    cfg : QueueConfig
        The ``queue`` section (``backend``, ``redis_url``, leases).
    conn : Connection
        Writable state-database connection (the job records).
    """
    if cfg.backend == "redis":
        from dsa110_contimg.state.redis_queue import RedisJobQueue

        return RedisJobQueue(
            conn,
            url=cfg.redis_url,
            prefix=cfg.redis_prefix,
            max_deliveries=cfg.redis_max_deliveries,
            min_idle_s=2.0 * cfg.lease_s,
        )
    return SqliteJobQueue(conn)
