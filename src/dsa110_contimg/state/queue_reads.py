"""The queue reads every backend answers from the state database.

Both job queues (`state.queue.SqliteJobQueue`, `state.redis_queue.RedisJobQueue`)
keep each job's record in the ``jobs`` table; this mixin is their one read path.
"""

from __future__ import annotations

from collections.abc import Sequence

from dsa110_contimg.state import jobs
from dsa110_contimg.state.db import Connection
from dsa110_contimg.state.jobs import Job

__all__ = ["RecordReads"]


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
