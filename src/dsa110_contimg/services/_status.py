"""A read-only report of the job queue: counts, backlog, quarantine, errors."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path

from dsa110_contimg.state.db import connect, schema_version, to_iso_utc
from dsa110_contimg.state.jobs import (
    JOB_STATES,
    count_jobs,
    count_jobs_by_kind,
    get_service_state,
    list_job_events,
    list_jobs,
)

__all__ = ["queue_status", "read_queue_status"]

_JOBS_SCHEMA_VERSION = 2
_N_LISTED = 20


def queue_status(conn: sqlite3.Connection, *, now: datetime) -> dict[str, object]:
    """Return the queue report that ``dsa110-contimg status`` prints.

    Parameters
    ----------
    conn : sqlite3.Connection
        Connection to the state database (read-only is fine).
    now : datetime
        Current time, for the backlog's age.

    Returns
    -------
    dict
        ``pending``, ``running``, ``done``, ``failed`` and ``quarantined``
        counts; ``by_kind`` counts; ``backlog`` (pending + running, how many
        are runnable now, the oldest pending data); ``intake`` (paused by the
        disk guard or not); the ``running_jobs``, ``quarantine`` and
        ``failed_jobs`` lists (up to 20 each, with reasons and inputs); and
        ``last_errors`` (the 10 newest error events).
    """
    report: dict[str, object] = dict.fromkeys(JOB_STATES, 0)
    if schema_version(conn) < _JOBS_SCHEMA_VERSION:
        report.update(
            by_kind={},
            backlog={"n_jobs": 0},
            intake={"paused": False},
            running_jobs=[],
            quarantine=[],
            failed_jobs=[],
            last_errors=[],
            note="no job queue yet: start the stream once",
        )
        return report
    counts = count_jobs(conn)
    report.update(counts)
    stamp = to_iso_utc(now)
    oldest = conn.execute(
        "SELECT MIN(data_time_iso), MIN(created_at), "
        "SUM(CASE WHEN not_before_at <= ? THEN 1 ELSE 0 END) "
        "FROM jobs WHERE state = 'pending'",
        (stamp,),
    ).fetchone()
    report["by_kind"] = count_jobs_by_kind(conn)
    report["backlog"] = {
        "n_jobs": counts["pending"] + counts["running"],
        "n_runnable_now": int(oldest[2] or 0),
        "oldest_pending_data_time_iso": oldest[0],
        "oldest_pending_created_at": oldest[1],
    }
    intake = get_service_state(conn).get("intake", {"paused": False})
    report["intake"] = intake
    report["running_jobs"] = [
        {
            "id": j.id,
            "kind": j.kind,
            "key": j.key,
            "attempts": j.attempts,
            "lease_owner": j.lease_owner,
            "started_at": j.started_at,
            "lease_expires_at": j.lease_expires_at,
        }
        for j in list_jobs(conn, states=["running"], limit=_N_LISTED)
    ]
    report["quarantine"] = [
        {
            "id": j.id,
            "kind": j.kind,
            "key": j.key,
            "quarantine_reason": j.quarantine_reason,
            "payload_json": j.payload,
            "updated_at": j.updated_at,
        }
        for j in list_jobs(conn, states=["quarantined"], limit=_N_LISTED)
    ]
    report["failed_jobs"] = [
        {
            "id": j.id,
            "kind": j.kind,
            "key": j.key,
            "attempts": j.attempts,
            "error_class": j.error_class,
            "error_message": j.error_message,
        }
        for j in list_jobs(conn, states=["failed"], limit=_N_LISTED)
    ]
    report["last_errors"] = list_job_events(conn, errors_only=True, limit=10)
    return report


def read_queue_status(state_db: Path, *, now: datetime) -> dict[str, object]:
    """Open ``state_db`` read-only and return `queue_status` (with its path)."""
    with closing(connect(Path(state_db), readonly=True)) as conn:
        report = queue_status(conn, now=now)
    return {"state_db": str(state_db), **report}
