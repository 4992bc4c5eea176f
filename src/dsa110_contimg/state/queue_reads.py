"""The queue reads every backend answers from the state database.

Both job queues (`state.queue.SqliteJobQueue`, `state.redis_queue.RedisJobQueue`)
keep each job's record in the ``jobs`` table; this mixin is their one read path.
"""

from __future__ import annotations

from collections.abc import Sequence

from dsa110_contimg.state import jobs
from dsa110_contimg.state.db import Connection
from dsa110_contimg.state.jobs import Job

__all__ = ["DEAD_LETTER_FIELDS", "RecordReads", "dead_letter_row"]

#: keys of each row of `RecordReads.dead_lettered` (the ``dead-letters`` command)
DEAD_LETTER_FIELDS = (
    "job_id",
    "kind",
    "key",
    "state",
    "deliveries",
    "last_error",
    "at",
    "reason",
    "entry",
)


def dead_letter_row(
    job: Job | None,
    *,
    job_id: int | None,
    kind: str,
    deliveries: int,
    at: str,
    reason: str,
    entry: str | None = None,
) -> dict[str, object]:
    """Return one dead-lettered job as a row of `DEAD_LETTER_FIELDS`.

    Parameters
    ----------
    job : Job or None
        The job's record (None when the database no longer has it).
    job_id : int or None
        The job's id (None: an entry whose job was never leased).
    kind : str
        Job kind.
    deliveries : int
        Times the job (sqlite: attempts) or its stream entry (redis) was
        handed to a worker (count).
    at : str
        When it was set aside (ISO 8601 UTC).
    reason : str
        Why it was set aside.
    entry : str, optional
        Redis: the dead-letter stream entry id.
    """
    last_error = reason
    if job is not None and job.error_message:
        last_error = f"{job.error_class or 'Error'}: {job.error_message}"
    return {
        "job_id": job_id,
        "kind": job.kind if job is not None else kind,
        "key": job.key if job is not None else None,
        "state": job.state if job is not None else None,
        "deliveries": deliveries,
        "last_error": last_error,
        "at": at,
        "reason": reason,
        "entry": entry,
    }


class RecordReads:
    """The reads every backend answers from the state database, the jobs' record.

    Both queues keep each job's state, attempts, errors and events in the
    ``jobs`` table (`dsa110_contimg.state.jobs`); only delivery differs.
    """

    conn: Connection

    def get(self, job_id: int) -> Job:
        return jobs.get_job(self.conn, job_id)

    def find(self, kind: str, key: str) -> Job | None:
        return jobs.find_job(self.conn, kind, key)

    def list(
        self,
        *,
        states: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        return jobs.list_jobs(self.conn, states=states, kinds=kinds, limit=limit)

    def counts(self) -> dict[str, int]:
        return jobs.count_jobs(self.conn)

    def dead_lettered(self) -> list[dict[str, object]]:
        """Return the jobs set aside for an operator, oldest first.

        On ``sqlite`` these are the quarantined jobs (``deliveries`` is the
        job's attempts, ``at`` when it was quarantined); the ``redis`` backend
        lists its dead-letter stream instead. Rows have `DEAD_LETTER_FIELDS`;
        ``dsa110-contimg requeue`` replays one.
        """
        rows = [
            dead_letter_row(
                job,
                job_id=job.id,
                kind=job.kind,
                deliveries=job.attempts,
                at=job.finished_at or job.updated_at,
                reason=job.quarantine_reason or "",
            )
            for job in jobs.list_jobs(self.conn, states=["quarantined"])
        ]
        return sorted(rows, key=lambda r: (str(r["at"]), int(r["job_id"] or 0)))
