"""The state database's figures behind the alert rules and ``/metrics``.

A view of `state.figures` at one time over the rules' one-hour window, in
the shape the alert rules and the declared metrics (``tables.METRICS``) need:
every figure is computed by `state.figures` (one definition for the HTTP
API, ``/metrics`` and the in-process alert engine). Windowed figures count
rows whose timestamp lies in ``(now - 1 h, now]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dsa110_contimg.state.db import Connection, to_iso_utc
from dsa110_contimg.state.figures import (
    backlog_at,
    compute_figures,
    errors_by_kind_class,
    finished_by_kind_state,
    intake_paused,
    last_arrival,
    queue_by_kind_state,
)
from dsa110_contimg.state.intake import intake_hold
from dsa110_contimg.state.jobs import CONVERT_GROUP, PROCESS_BLOCK

__all__ = ["AlertInputs", "backlog_at", "read_alert_inputs"]

_WINDOW_H = 1.0


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
        Seconds of work per second of data converted in the last hour
        (`state.figures.real_time_factor`); None when nothing converted.
    last_arrival_at : datetime or None
        When the newest group was enqueued.
    calibration_age_s : dict
        Declination strip (deg) in use -> seconds since its newest solution's
        transit.
    intake_paused : bool
        The free-disk guard's flag.
    image_rms_ratio : float or None
        Median rms / thermal rms of the last hour's images.
    ingest_lag_s : float
        Age of the oldest pending job's data (s); 0 when none.
    n_workers : int
        ``services.max_workers`` (the real-time factor a pipeline keeps up at).
    calibration_valid : dict
        Strip in use -> whether ``now`` lies in its newest solution's validity.
    stage_success_ratio : dict
        Job kind -> done / finished in the last hour (kinds that finished any).
    data_age_s : float or None
        ``now`` minus the newest group's data time (s).
    intake_held : bool
        The operator's hold on intake (``intake pause``).
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
    n_workers: int = 1
    calibration_valid: dict[float, bool] = field(default_factory=dict)
    stage_success_ratio: dict[str, float] = field(default_factory=dict)
    data_age_s: float | None = None
    intake_held: bool = False


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
        ``services.max_workers`` (reported, for the real-time factor's rule).
    growth_window : timedelta
        How far back ``backlog_groups_before`` looks (the rules' ``delta``).

    Returns
    -------
    AlertInputs
    """
    figures = compute_figures(
        conn, now=now, window_h=_WINDOW_H, group_duration_s=group_duration_s
    )
    until = to_iso_utc(now)
    since = to_iso_utc(now - timedelta(hours=_WINDOW_H))
    in_use = [c for c in figures.calibration if c.in_use]
    hold = intake_hold(conn)
    return AlertInputs(
        now=now,
        backlog_groups=backlog_at(conn, CONVERT_GROUP, now),
        backlog_groups_before=backlog_at(conn, CONVERT_GROUP, now - growth_window),
        backlog_blocks=backlog_at(conn, PROCESS_BLOCK, now),
        queue_jobs=queue_by_kind_state(conn),
        groups_arrived_last_hour=figures.n_groups_arrived,
        groups_processed_last_hour=figures.n_groups_processed,
        jobs_finished_last_hour=finished_by_kind_state(
            conn, since_iso=since, until_iso=until
        ),
        job_errors_last_hour=errors_by_kind_class(
            conn, since_iso=since, until_iso=until
        ),
        realtime_factor=figures.real_time_factor,
        last_arrival_at=last_arrival(conn, until_iso=until),
        calibration_age_s={round(c.dec_strip_deg, 2): c.age_s for c in in_use},
        intake_paused=intake_paused(conn),
        image_rms_ratio=figures.image_rms_ratio_median,
        ingest_lag_s=figures.ingest_lag_s,
        n_workers=max(1, int(n_workers)),
        calibration_valid={round(c.dec_strip_deg, 2): c.valid_now for c in in_use},
        stage_success_ratio={
            kind: s.success_rate
            for kind, s in figures.stages.items()
            if s.success_rate is not None
        },
        data_age_s=figures.data_age_s,
        intake_held=bool(hold and hold.get("paused")),
    )
