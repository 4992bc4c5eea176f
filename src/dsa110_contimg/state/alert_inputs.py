"""The state database's figures behind the alert rules and ``/metrics``.

Each figure is computed from the job queue, the calibration registry and the
image-quality table at a given time, so the in-process alert engine, the
Prometheus exporter and a test that replays history all see the same
numbers. Windowed figures count rows whose timestamp lies in
``(now - window, now]``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dsa110_contimg.state.db import Connection, to_iso_utc
from dsa110_contimg.state.jobs import (
    CONVERT_GROUP,
    JOB_KINDS,
    JOB_STATES,
    PROCESS_BLOCK,
    TERMINAL_STATES,
    get_service_state,
)

__all__ = ["AlertInputs", "backlog_at", "read_alert_inputs"]

_WINDOW = timedelta(hours=1)
_CALIBRATION_IN_USE = timedelta(hours=24)
_MJD_UNIX_EPOCH = 40587.0


@dataclass(frozen=True, slots=True)
class AlertInputs:
    """Figures of the pipeline at one moment (see ``tables.METRICS``).

    Attributes
    ----------
    now : datetime
        When they were computed (UTC).
    backlog_groups, backlog_blocks : int
        Conversion / block jobs pending or running.
    backlog_groups_before : int
        Conversion jobs pending or running ``growth_window`` ago.
    queue_jobs : dict
        ``(kind, state) -> count`` of every kind and state.
    groups_arrived_last_hour, groups_processed_last_hour : int
        Groups enqueued / converted in the last hour.
    jobs_finished_last_hour : dict
        ``(kind, state) -> count`` of jobs that reached a terminal state.
    job_errors_last_hour : dict
        ``(kind, error_class) -> count`` of failed attempts.
    realtime_factor : float or None
        See ``dsa110_realtime_factor``; None when nothing converted.
    last_arrival_at : datetime or None
        When the newest group was enqueued.
    calibration_age_s : dict
        Declination strip (deg) -> seconds since its newest solution's transit.
    intake_paused : bool
        The free-disk guard's flag.
    image_rms_ratio : float or None
        Median rms / thermal of the last hour's images.
    ingest_lag_s : float
        Age of the oldest pending job's data (s); 0 when none.
    """

    now: datetime
    backlog_groups: int
    backlog_groups_before: int
    backlog_blocks: int
    queue_jobs: dict[tuple[str, str], int]
    groups_arrived_last_hour: int
    groups_processed_last_hour: int
    jobs_finished_last_hour: dict[tuple[str, str], int]
    job_errors_last_hour: dict[tuple[str, str], int]
    realtime_factor: float | None
    last_arrival_at: datetime | None
    calibration_age_s: dict[float, float] = field(default_factory=dict)
    intake_paused: bool = False
    image_rms_ratio: float | None = None
    ingest_lag_s: float = 0.0


def backlog_at(conn: Connection, kind: str, at: datetime) -> int:
    """Return how many jobs of ``kind`` were enqueued by ``at`` and not finished."""
    stamp = to_iso_utc(at)
    row = conn.execute(
        "SELECT COUNT(*) FROM jobs WHERE kind = ? AND created_at <= ? "
        "AND ((finished_at IS NULL AND state IN ('pending', 'running')) "
        "OR finished_at > ?)",
        (kind, stamp, stamp),
    ).fetchone()
    return int(row[0])


def _count(conn: Connection, sql: str, *params: object) -> int:
    return int(conn.execute(sql, params).fetchone()[0] or 0)


def _realtime_factor(
    conn: Connection,
    since: str,
    until: str,
    *,
    n_groups: int,
    group_s: float,
    n_workers: int,
) -> float | None:
    if n_groups <= 0:
        return None
    busy = conn.execute(
        "SELECT SUM((julianday(finished_at) - julianday(started_at)) * 86400.0) "
        "FROM jobs WHERE state = 'done' AND kind IN (?, ?) AND started_at IS NOT NULL "
        "AND finished_at > ? AND finished_at <= ?",
        (CONVERT_GROUP, PROCESS_BLOCK, since, until),
    ).fetchone()[0]
    return float(busy or 0.0) / (max(1, n_workers) * n_groups * group_s)


def _calibration_ages(conn: Connection, now: datetime) -> dict[float, float]:
    since = to_iso_utc(now - _CALIBRATION_IN_USE)
    rows = conn.execute(
        "SELECT s.dec_strip_deg, MAX(s.transit_mjd) FROM cal_solutions s "
        "WHERE s.dec_strip_deg IN (SELECT t.dec_strip_deg FROM cal_applications a "
        "JOIN cal_solutions t ON t.id = a.solution_id WHERE a.applied_at > ?) "
        "GROUP BY s.dec_strip_deg",
        (since,),
    ).fetchall()
    now_unix = now.timestamp()
    return {
        round(float(dec), 2): now_unix - (float(mjd) - _MJD_UNIX_EPOCH) * 86400.0
        for dec, mjd in rows
    }


def read_alert_inputs(
    conn: Connection,
    *,
    now: datetime,
    group_duration_s: float,
    n_workers: int,
    growth_window: timedelta = timedelta(minutes=15),
) -> AlertInputs:
    """Compute the figures at ``now`` from a migrated state database.

    Parameters
    ----------
    conn : Connection
        Read-only is fine.
    now : datetime
        Timezone-aware time of the evaluation.
    group_duration_s : float
        Data span of one group (``services.ms_chunk_duration_min`` x 60, s).
    n_workers : int
        ``services.max_workers``: the real-time factor's share of the work.
    growth_window : timedelta
        How far back ``backlog_groups_before`` looks (the rules' ``delta``).

    Returns
    -------
    AlertInputs
    """
    until, since = to_iso_utc(now), to_iso_utc(now - _WINDOW)
    queue = {(k, s): 0 for k in JOB_KINDS for s in JOB_STATES}
    for kind, state, n in conn.execute(
        "SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state"
    ):
        queue[(str(kind), str(state))] = int(n)
    finished = {(k, s): 0 for k in JOB_KINDS for s in sorted(TERMINAL_STATES)}
    for kind, state, n in conn.execute(
        "SELECT kind, state, COUNT(*) FROM jobs WHERE finished_at > ? "
        "AND finished_at <= ? AND state IN ('done', 'failed', 'quarantined') "
        "GROUP BY kind, state",
        (since, until),
    ):
        finished[(str(kind), str(state))] = int(n)
    errors = {
        (str(kind), str(cls)): int(n)
        for kind, cls, n in conn.execute(
            "SELECT j.kind, e.error_class, COUNT(*) FROM job_events e JOIN jobs j "
            "ON j.id = e.job_id WHERE e.error_class IS NOT NULL AND e.created_at > ? "
            "AND e.created_at <= ? GROUP BY j.kind, e.error_class",
            (since, until),
        )
    }
    arrived = _count(
        conn,
        "SELECT COUNT(*) FROM jobs WHERE kind = ? AND created_at > ? "
        "AND created_at <= ?",
        CONVERT_GROUP,
        since,
        until,
    )
    processed = _count(
        conn,
        "SELECT COUNT(*) FROM jobs WHERE kind = ? AND state = 'done' "
        "AND finished_at > ? AND finished_at <= ?",
        CONVERT_GROUP,
        since,
        until,
    )
    last = conn.execute(
        "SELECT MAX(created_at) FROM jobs WHERE kind = ? AND created_at <= ?",
        (CONVERT_GROUP, until),
    ).fetchone()[0]
    oldest = conn.execute(
        "SELECT MIN(data_time_iso) FROM jobs WHERE state = 'pending'"
    ).fetchone()[0]
    lag = 0.0
    if oldest is not None:
        data_time = datetime.fromisoformat(str(oldest))
        if data_time.tzinfo is None:
            data_time = data_time.replace(tzinfo=UTC)
        lag = max(0.0, (now - data_time).total_seconds())
    ratios = [
        float(r[0])
        for r in conn.execute(
            "SELECT rms_ratio FROM image_quality WHERE rms_ratio IS NOT NULL "
            "AND created_at > ? AND created_at <= ?",
            (since, until),
        )
    ]
    intake = get_service_state(conn).get("intake", {})
    return AlertInputs(
        now=now,
        backlog_groups=backlog_at(conn, CONVERT_GROUP, now),
        backlog_groups_before=backlog_at(conn, CONVERT_GROUP, now - growth_window),
        backlog_blocks=backlog_at(conn, PROCESS_BLOCK, now),
        queue_jobs=queue,
        groups_arrived_last_hour=arrived,
        groups_processed_last_hour=processed,
        jobs_finished_last_hour=finished,
        job_errors_last_hour=errors,
        realtime_factor=_realtime_factor(
            conn,
            since,
            until,
            n_groups=processed,
            group_s=group_duration_s,
            n_workers=n_workers,
        ),
        last_arrival_at=None if last is None else datetime.fromisoformat(str(last)),
        calibration_age_s=_calibration_ages(conn, now),
        intake_paused=bool(intake.get("paused", False)),
        image_rms_ratio=statistics.median(ratios) if ratios else None,
        ingest_lag_s=lag,
    )
