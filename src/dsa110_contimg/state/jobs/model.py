"""The job queue's vocabulary: kinds, states, priorities and the row types.

`Job` is one row of the ``jobs`` table (columns in ``state/schema/0002_jobs.sql``),
`JobSpec` the work to enqueue; `is_retryable` and `backoff_delay_s` are the
retry policy that the transitions (`state.jobs.transitions`) apply.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from dsa110_contimg.exceptions import PipelineError
from dsa110_contimg.tables import JOBS

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
]

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


def _row_to_job(row: Sequence[object]) -> Job:
    values = list(row)
    values[6] = json.loads(str(values[6]))
    values[7] = None if values[7] is None else json.loads(str(values[7]))
    return Job(*values)  # type: ignore[arg-type]
