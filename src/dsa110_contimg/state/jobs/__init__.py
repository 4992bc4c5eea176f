"""Durable job queue: the state machine of the streaming services.

A job is one unit of work, identified by its kind and key (``("convert_group",
"2025-01-02T03:04:05")``), so enqueuing the same work twice is a no-op. The
package holds three topics, all re-exported here (import from
``dsa110_contimg.state.jobs``):

- `state.jobs.model`: kinds, states, priorities, `Job`, `JobSpec` and the
  retry policy (`is_retryable`, `backoff_delay_s`);
- `state.jobs.transitions`: every state change (enqueue, claim, heartbeat,
  complete, fail, quarantine, cancel, release, requeue, reclaim), each in one
  ``BEGIN IMMEDIATE`` transaction that refuses illegal moves;
- `state.jobs.queries`: read-only lookups, listings, counts, events and the
  status figures (a read-only connection suffices).
"""

from dsa110_contimg.state.jobs.model import (
    CONVERT_GROUP,
    JOB_KINDS,
    JOB_STATES,
    PRIORITY_BACKFILL,
    PRIORITY_LIVE,
    PROCESS_BLOCK,
    TERMINAL_STATES,
    UPDATE_VARIABILITY,
    Job,
    JobSpec,
    backoff_delay_s,
    is_retryable,
)
from dsa110_contimg.state.jobs.queries import (
    PendingBacklog,
    count_jobs,
    count_jobs_by_kind,
    find_job,
    get_job,
    get_service_state,
    latest_data_time,
    list_job_events,
    list_jobs,
    list_jobs_mentioning,
    pending_backlog,
)
from dsa110_contimg.state.jobs.transitions import (
    cancel_job,
    claim_job,
    complete_job,
    enqueue_job,
    heartbeat_job,
    quarantine_job,
    reclaim_expired_jobs,
    reclaim_orphaned_jobs,
    record_failure,
    release_job,
    requeue_job,
    set_service_state,
)

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
    "PendingBacklog",
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
    "set_service_state",
    "get_job",
    "find_job",
    "list_jobs",
    "list_jobs_mentioning",
    "count_jobs",
    "count_jobs_by_kind",
    "latest_data_time",
    "list_job_events",
    "pending_backlog",
    "get_service_state",
]
