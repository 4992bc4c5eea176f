"""The operator's figures, computed from the state database.

Every figure the HTTP API (``/api/metrics``), the Prometheus exposition
(``/metrics``) and the in-process alert engine (through `state.alert_inputs`)
show comes from here, read from the ``jobs``, ``job_events``,
``block_metrics``, ``image_quality``, ``cal_solutions`` and
``cal_applications`` tables over a time window ``(now - window, now]``. A
read-only connection suffices (``state.db.connect(path, readonly=True)``).

Definitions (a *stage* is a job kind: ``convert_group``, ``process_block``,
``update_variability``):

- **stage duration**: ``finished_at - started_at`` of the jobs of a stage that
  finished ``done`` in the window (seconds; the last attempt only); the
  ``/metrics`` histogram (`duration_histogram`) takes every such job kept.
- **success rate** of a stage: jobs finished ``done`` / jobs finished
  (``done``, ``failed``, ``quarantined``) in the window; None when none
  finished. The block success rate is the same over ``block_metrics`` rows.
- **real-time factor** (`real_time_factor`): seconds of work (the stage
  durations of every stage, summed) per second of data converted in the
  window (groups converted x the group duration). Below 1 one worker keeps
  up; with N workers, below N.
- **backlog**: jobs pending or running now; the series (and `backlog_at`)
  counts, at each time, jobs created by then that had not finished by then.
- **ingest rate / processed rate**: ``convert_group`` jobs created / finished
  ``done`` in the window, per hour (and counted); their ratio processed/arrived.
- **queue delay**: ``created_at - data_time_iso`` of the ``convert_group`` jobs
  created in the window, median and maximum; **ingest lag** (`ingest_lag_s`):
  ``now`` minus the oldest pending job's data time; **data age**: ``now``
  minus the newest data time.
- **failures by class**: job events in the window that carry an error class
  (`errors_by_kind_class`, by job kind too).
- **calibration age** per strip: ``now`` minus the transit of the strip's
  newest solution (hours), whether ``now`` is inside its validity, and whether
  the strip is in use (a solution of it applied in the last 24 h).
- **image noise**: ``rms_jy / thermal_rms_jy`` of the images quality-checked
  in the window.
"""

from __future__ import annotations

import functools
import statistics
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from dsa110_contimg.state import schema_core as t
from dsa110_contimg.state._core import Query, const
from dsa110_contimg.state.db import Connection, to_iso_utc
from dsa110_contimg.state.jobs import get_service_state
from dsa110_contimg.state.jobs.model import CONVERT_GROUP, JOB_KINDS, JOB_STATES

__all__ = [
    "CALIBRATION_IN_USE",
    "Figures",
    "StageFigures",
    "StripCalibration",
    "backlog_at",
    "backlog_series",
    "calibration_ages",
    "compute_figures",
    "duration_histogram",
    "errors_by_kind_class",
    "failure_totals",
    "failures_by_class",
    "finished_by_kind_state",
    "ingest_lag_s",
    "intake_paused",
    "job_durations",
    "last_arrival",
    "mjd_of",
    "queue_by_kind_state",
    "real_time_factor",
]

_MJD_UNIX_EPOCH = 40587.0
"""MJD of 1970-01-01T00:00:00 UTC."""

_FINISHED = ("done", "failed", "quarantined")

CALIBRATION_IN_USE = timedelta(hours=24)
"""A strip is in use when one of its solutions was applied this recently."""


class _SecondsBetween(FunctionElement):
    """``max(0, end - start)`` in seconds, to the millisecond, of two ISO texts."""

    type = sa.Float()
    inherit_cache = True


@compiles(_SecondsBetween, "sqlite")
def _seconds_sqlite(element, compiler, **kw) -> str:
    end, start = (compiler.process(c, **kw) for c in element.clauses)
    # julianday is a float of days
    return f"MAX(0.0, ROUND((julianday({end}) - julianday({start})) * 86400.0, 3))"


@compiles(_SecondsBetween, "postgresql")
def _seconds_postgresql(element, compiler, **kw) -> str:
    end, start = (compiler.process(c, **kw) for c in element.clauses)
    end, start = (f"CAST({x} AS TIMESTAMPTZ)" for x in (end, start))
    span = f"EXTRACT(EPOCH FROM ({end} - {start}))"
    return f"GREATEST(0.0, CAST(ROUND({span}, 3) AS DOUBLE PRECISION))"


_jobs, _events = t.jobs, t.job_events
_DURATION_S = _SecondsBetween(_jobs.c.finished_at, _jobs.c.started_at)
"""A job's last run in seconds, to the millisecond (both backends)."""
_SINCE, _UNTIL = sa.bindparam("since"), sa.bindparam("until")

_JOB_DURATIONS = Query(
    sa.select(_jobs.c.kind, _DURATION_S)
    .where(
        _jobs.c.state == const("done"),
        _jobs.c.started_at.is_not(None),
        _jobs.c.finished_at > _SINCE,
        _jobs.c.finished_at <= _UNTIL,
    )
    .order_by(_jobs.c.finished_at, _jobs.c.id)
)


def mjd_of(when: datetime) -> float:
    """Return the MJD (UTC days) of a timezone-aware time."""
    return _MJD_UNIX_EPOCH + when.timestamp() / 86400.0


def _window(now: datetime, window_h: float) -> tuple[str, str]:
    if not window_h > 0:
        msg = f"window_h must be > 0 hours, got {window_h}"
        raise ValueError(msg)
    return to_iso_utc(now - timedelta(hours=window_h)), to_iso_utc(now)


def _parse(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class StageFigures:
    """Figures of one stage (job kind) over the window.

    Attributes
    ----------
    n_done, n_failed, n_quarantined : int
        Jobs of the stage that finished in each state in the window.
    success_rate : float or None
        ``n_done / (n_done + n_failed + n_quarantined)``; None when none finished.
    mean_s, median_s, p90_s, max_s : float or None
        Durations of the jobs finished done (seconds); None when none.
    total_s : float
        Sum of those durations (seconds).
    """

    n_done: int
    n_failed: int
    n_quarantined: int
    success_rate: float | None
    mean_s: float | None
    median_s: float | None
    p90_s: float | None
    max_s: float | None
    total_s: float


@dataclass(frozen=True, slots=True)
class StripCalibration:
    """The newest calibration solution of one declination strip.

    Attributes
    ----------
    dec_strip_deg : float
        The strip (deg).
    calibrator : str
        Calibrator of its newest solution.
    solution_id : int
        Row of ``cal_solutions``.
    transit_mjd, valid_from_mjd, valid_to_mjd : float
        Transit and validity window of that solution (UTC MJD).
    age_h : float
        ``now`` minus the transit (hours).
    valid_now : bool
        Whether ``now`` lies inside the validity window.
    n_solutions : int
        Solutions stored for the strip.
    in_use : bool
        Whether a solution of the strip was applied in the last
        `CALIBRATION_IN_USE` before ``now`` (the strips the alerts watch).
    """

    dec_strip_deg: float
    calibrator: str
    solution_id: int
    transit_mjd: float
    valid_from_mjd: float
    valid_to_mjd: float
    age_h: float
    valid_now: bool
    n_solutions: int
    in_use: bool = False

    @property
    def age_s(self) -> float:
        """``now`` minus the transit (seconds)."""
        return self.age_h * 3600.0


@dataclass(frozen=True, slots=True)
class Figures:
    """Every figure of the window ``[now - window_h, now]``; see the module doc.

    Attributes
    ----------
    now : str
        End of the window (UTC ISO 8601).
    window_h : float
        Length of the window (hours).
    stages : dict of str to StageFigures
        Per job kind.
    block_success_rate : float or None
        Over ``block_metrics`` rows recorded in the window.
    n_blocks_recorded : int
        Those rows.
    real_time_factor : float or None
        Work seconds per data second; None when no group was converted.
    queue : dict of str to int
        Jobs in each state now (every state present).
    backlog : int
        Jobs pending or running now.
    backlog_runnable : int
        Pending jobs whose ``not_before_at`` has passed.
    oldest_pending_data_time : str or None
        Data time of the oldest pending job.
    n_groups_arrived, n_groups_processed : int
        ``convert_group`` jobs created / finished done in the window.
    ingest_lag_s : float
        ``now`` minus that data time (s; 0 when nothing is pending), the
        ``dsa110_ingest_lag_seconds`` metric (`ingest_lag_s`).
    ingest_rate_per_h, processed_rate_per_h : float
        ``convert_group`` jobs created / finished done per hour.
    processed_over_arrived : float or None
        ``processed_rate_per_h / ingest_rate_per_h``; None when nothing arrived.
    ingest_lag_median_s, ingest_lag_max_s : float or None
        Queue delay after the data time (seconds).
    data_age_s : float or None
        ``now`` minus the newest ``convert_group`` data time (seconds).
    failures_by_class : dict of str to int
        Failure events in the window by exception class.
    calibration : list of StripCalibration
        Per strip, by declination.
    image_rms_ratio_median, image_rms_ratio_max : float or None
        ``rms / thermal`` of images checked in the window.
    n_images_checked, n_images_failed_qa : int
        Images quality-checked in the window, and those that failed the gates.
    """

    now: str
    window_h: float
    stages: dict[str, StageFigures]
    block_success_rate: float | None
    n_blocks_recorded: int
    real_time_factor: float | None
    queue: dict[str, int]
    backlog: int
    backlog_runnable: int
    oldest_pending_data_time: str | None
    ingest_rate_per_h: float
    processed_rate_per_h: float
    processed_over_arrived: float | None
    ingest_lag_median_s: float | None
    ingest_lag_max_s: float | None
    data_age_s: float | None
    failures_by_class: dict[str, int] = field(default_factory=dict)
    calibration: list[StripCalibration] = field(default_factory=list)
    image_rms_ratio_median: float | None = None
    image_rms_ratio_max: float | None = None
    n_images_checked: int = 0
    n_images_failed_qa: int = 0
    ingest_lag_s: float = 0.0
    n_groups_arrived: int = 0
    n_groups_processed: int = 0

    def to_dict(self) -> dict[str, object]:
        """Return the figures as JSON-serialisable nested dicts."""
        return asdict(self)


def job_durations(
    conn: Connection, *, since_iso: str, until_iso: str
) -> dict[str, list[float]]:
    """Return the durations (s) of jobs finished done in a window, by kind.

    Parameters
    ----------
    conn : Connection
        State database (read-only is fine).
    since_iso, until_iso : str
        Window on ``finished_at`` (UTC ISO text): ``(since, until]``.

    Returns
    -------
    dict of str to list of float
        Every kind of `JOB_KINDS` (empty lists too), durations in seconds,
        in finishing order.
    """
    out: dict[str, list[float]] = {kind: [] for kind in JOB_KINDS}
    rows = _JOB_DURATIONS.execute(conn, {"since": since_iso, "until": until_iso})
    for kind, seconds in rows:
        if seconds is not None:
            out.setdefault(str(kind), []).append(max(0.0, float(seconds)))
    return out


@functools.lru_cache(maxsize=16)
def _histogram_query(n_buckets: int) -> Query:
    done = (
        sa.select(_jobs.c.kind, _DURATION_S.label("d"))
        .where(
            _jobs.c.state == const("done"),
            _jobs.c.started_at.is_not(None),
            _jobs.c.finished_at.is_not(None),
        )
        .cte("done")
        .prefix_with("MATERIALIZED")
    )
    at_most = [
        sa.func.sum(
            sa.case((done.c.d <= sa.bindparam(f"bound_{i}"), const(1)), else_=const(0))
        )
        for i in range(n_buckets)
    ]
    total = sa.func.coalesce(sa.func.sum(done.c.d), const(0.0))  # SQLite's TOTAL
    return Query(
        sa.select(done.c.kind, sa.func.count(), total, *at_most).group_by(done.c.kind)
    )


def duration_histogram(
    conn: Connection, buckets: tuple[float, ...]
) -> dict[str, tuple[list[int], int, float]]:
    """Return the durations of every job ever finished done, bucketed, by kind.

    Parameters
    ----------
    conn : Connection
        State database (read-only is fine).
    buckets : tuple of float
        Increasing upper bounds (seconds), without ``+Inf``.

    Returns
    -------
    dict of str to (list of int, int, float)
        Per kind of `JOB_KINDS`: the cumulative count at or below each bound,
        the total count and the sum of the durations (seconds), as a
        Prometheus histogram needs them. Jobs retention deleted no longer count.
    """
    if list(buckets) != sorted(buckets):
        msg = f"buckets must increase, got {buckets}"
        raise ValueError(msg)
    out: dict[str, tuple[list[int], int, float]] = {
        kind: ([0] * len(buckets), 0, 0.0) for kind in JOB_KINDS
    }
    params = {f"bound_{i}": float(b) for i, b in enumerate(buckets)}
    for kind, n, total, *counts in _histogram_query(len(buckets)).execute(conn, params):
        out[str(kind)] = ([int(c or 0) for c in counts], int(n), float(total or 0.0))
    return out


def failure_totals(conn: Connection) -> dict[tuple[str, str], int]:
    """Return the failure events ever recorded, by (job kind, error class)."""
    rows = _errors_query(windowed=False).execute(conn)
    return {(str(kind), str(cls)): int(n) for kind, cls, n in rows}


@functools.cache
def _errors_query(*, windowed: bool) -> Query:
    e, j = _events.alias("e"), _jobs.alias("j")
    query = (
        sa.select(j.c.kind, e.c.error_class, sa.func.count())
        .select_from(e.join(j, j.c.id == e.c.job_id))
        .where(e.c.error_class.is_not(None))
    )
    if windowed:
        query = query.where(e.c.created_at > _SINCE, e.c.created_at <= _UNTIL)
    return Query(query.group_by(j.c.kind, e.c.error_class))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _stage(durations: list[float], finished: dict[str, int]) -> StageFigures:
    n_done, n_failed, n_quar = (finished.get(s, 0) for s in _FINISHED)
    total = n_done + n_failed + n_quar
    has = bool(durations)
    return StageFigures(
        n_done=n_done,
        n_failed=n_failed,
        n_quarantined=n_quar,
        success_rate=n_done / total if total else None,
        mean_s=statistics.fmean(durations) if has else None,
        median_s=statistics.median(durations) if has else None,
        p90_s=_percentile(durations, 0.9) if has else None,
        max_s=max(durations) if has else None,
        total_s=float(sum(durations)),
    )


def errors_by_kind_class(
    conn: Connection, *, since_iso: str, until_iso: str
) -> dict[tuple[str, str], int]:
    """Return the job events carrying an error class in ``(since, until]``.

    Keyed by ``(job kind, error class)``: one failed attempt is one event.
    """
    rows = _errors_query(windowed=True).execute(
        conn, {"since": since_iso, "until": until_iso}
    )
    return {(str(kind), str(cls)): int(n) for kind, cls, n in rows}


def failures_by_class(
    conn: Connection, *, since_iso: str, until_iso: str
) -> dict[str, int]:
    """Return `errors_by_kind_class` summed over the job kinds, by class."""
    out: dict[str, int] = {}
    for (_, cls), n in errors_by_kind_class(
        conn, since_iso=since_iso, until_iso=until_iso
    ).items():
        out[cls] = out.get(cls, 0) + n
    return dict(sorted(out.items()))


def _calibration_ages() -> Query:
    s = t.cal_solutions.alias("s")
    c = t.cal_solutions.alias("c")
    u = t.cal_solutions.alias("t")
    a = t.cal_applications.alias("a")
    n_solutions = (
        sa.select(sa.func.count())
        .select_from(c)
        .where(c.c.dec_strip_deg == s.c.dec_strip_deg)
        .scalar_subquery()
    )
    applied = sa.exists(
        sa.select(const(1))
        .select_from(a.join(u, u.c.id == a.c.solution_id))
        .where(
            u.c.dec_strip_deg == s.c.dec_strip_deg,
            a.c.applied_at > sa.bindparam("applied_after"),
        )
    )
    newest = (
        sa.select(c.c.id)
        .where(c.c.dec_strip_deg == s.c.dec_strip_deg)
        .order_by(c.c.transit_mjd.desc(), c.c.id.desc())
        .limit(const(1))
        .scalar_subquery()
    )
    return Query(
        sa.select(
            s.c.dec_strip_deg,
            s.c.calibrator,
            s.c.id,
            s.c.transit_mjd,
            s.c.valid_from_mjd,
            s.c.valid_to_mjd,
            n_solutions,
            applied,
        )
        .where(s.c.id == newest)
        .order_by(s.c.dec_strip_deg)
    )


_CALIBRATION_AGES = _calibration_ages()


def calibration_ages(conn: Connection, *, now: datetime) -> list[StripCalibration]:
    """Return the newest solution of each declination strip and its age at ``now``.

    A strip is *in use* when a solution of it was applied (``cal_applications``)
    in the `CALIBRATION_IN_USE` (24 h) before ``now``.
    """
    now_mjd = mjd_of(now)
    rows = _CALIBRATION_AGES.execute(
        conn, {"applied_after": to_iso_utc(now - CALIBRATION_IN_USE)}
    ).fetchall()
    return [
        StripCalibration(
            dec_strip_deg=float(dec),
            calibrator=str(cal),
            solution_id=int(sid),
            transit_mjd=float(transit),
            valid_from_mjd=float(lo),
            valid_to_mjd=float(hi),
            age_h=(now_mjd - float(transit)) * 24.0,
            valid_now=float(lo) <= now_mjd <= float(hi),
            n_solutions=int(n),
            in_use=bool(used),
        )
        for dec, cal, sid, transit, lo, hi, n, used in rows
    ]


def queue_by_kind_state(conn: Connection) -> dict[tuple[str, str], int]:
    """Return the jobs now in each ``(kind, state)`` (every pair present)."""
    out = {(k, s): 0 for k in JOB_KINDS for s in JOB_STATES}
    for kind, state, n in _QUEUE.execute(conn):
        out[(str(kind), str(state))] = int(n)
    return out


_QUEUE = Query(
    sa.select(_jobs.c.kind, _jobs.c.state, sa.func.count()).group_by(
        _jobs.c.kind, _jobs.c.state
    )
)
_FINISHED_BY = Query(
    sa.select(_jobs.c.kind, _jobs.c.state, sa.func.count())
    .where(
        _jobs.c.state.in_([const(s) for s in _FINISHED]),
        _jobs.c.finished_at > _SINCE,
        _jobs.c.finished_at <= _UNTIL,
    )
    .group_by(_jobs.c.kind, _jobs.c.state)
)


def finished_by_kind_state(
    conn: Connection, *, since_iso: str, until_iso: str
) -> dict[tuple[str, str], int]:
    """Return the jobs that reached a terminal state in ``(since, until]``.

    Keyed by ``(kind, state)``, every kind and terminal state present.
    """
    out = {(k, s): 0 for k in JOB_KINDS for s in _FINISHED}
    for kind, state, n in _FINISHED_BY.execute(
        conn, {"since": since_iso, "until": until_iso}
    ):
        out[(str(kind), str(state))] = int(n)
    return out


def _unindexed(column: sa.ColumnElement) -> sa.ColumnElement:
    """``column || ''``: the same value, a term no index can serve.

    The backlog counts must search the (state, ...) indexes; a planner
    without statistics otherwise prefers the (kind, created_at) index, which
    reads the kind's whole history (the SQLite idiom; PostgreSQL too).
    """
    return column.concat(const(""))


_KIND, _AT = sa.bindparam("kind"), sa.bindparam("at")
_WAITING = Query(
    sa.select(sa.func.count()).where(
        _jobs.c.state.in_([const("pending"), const("running")]),
        _jobs.c.kind == _KIND,
        _unindexed(_jobs.c.created_at) <= _AT,
        _jobs.c.finished_at.is_(None),
    )
)
_FINISHED_LATER = Query(
    sa.select(sa.func.count()).where(
        _jobs.c.state.in_([const(s) for s in _FINISHED]),
        _jobs.c.finished_at > _AT,
        _unindexed(_jobs.c.kind) == _KIND,
        _unindexed(_jobs.c.created_at) <= _AT,
    )
)
_LAST_ARRIVAL = Query(
    sa.select(sa.func.max(_jobs.c.created_at)).where(
        _jobs.c.kind == const(CONVERT_GROUP), _jobs.c.created_at <= _UNTIL
    )
)


def backlog_at(conn: Connection, kind: str, at: datetime) -> int:
    """Return how many jobs of ``kind`` were enqueued by ``at`` and not finished.

    The same count as one point of `backlog_series` (a job requeued counts
    from its first creation).
    """
    stamp = to_iso_utc(at)
    # two counts the (state, ...) indexes serve: jobs not finished (pending and
    # running ones have no finished_at) and jobs finished after ``at``
    params = {"kind": kind, "at": stamp}
    waiting = _WAITING.execute(conn, params).fetchone()[0]
    later = _FINISHED_LATER.execute(conn, params).fetchone()[0]
    return int(waiting) + int(later)


def last_arrival(conn: Connection, *, until_iso: str) -> datetime | None:
    """Return when the newest ``convert_group`` job was enqueued by ``until``."""
    last = _LAST_ARRIVAL.execute(conn, {"until": until_iso}).fetchone()[0]
    return None if last is None else _parse(str(last))


def ingest_lag_s(oldest_pending_data_time: str | None, now: datetime) -> float:
    """Return the ingest lag: ``now`` minus the oldest pending job's data time.

    Seconds, never negative; 0 when nothing is pending.
    """
    if oldest_pending_data_time is None:
        return 0.0
    return max(0.0, (now - _parse(str(oldest_pending_data_time))).total_seconds())


def real_time_factor(
    work_s: float, n_groups_converted: int, group_duration_s: float
) -> float | None:
    """Return seconds of work per second of data converted.

    Parameters
    ----------
    work_s : float
        Wall time of every job finished done in the window, all stages (s).
    n_groups_converted : int
        ``convert_group`` jobs finished done in the window.
    group_duration_s : float
        Data span of one group (s).

    Returns
    -------
    float or None
        ``work_s / (n_groups_converted * group_duration_s)``; None when no
        group was converted. Below 1 one worker keeps up; with N workers
        (``services.max_workers``), below N.
    """
    if n_groups_converted <= 0:
        return None
    return work_s / (n_groups_converted * group_duration_s)


def intake_paused(conn: Connection) -> bool:
    """Return the free-disk guard's flag (``service_state`` key ``intake``)."""
    return bool(get_service_state(conn).get("intake", {}).get("paused", False))


_SERIES = Query(
    sa.select(_jobs.c.kind, _jobs.c.created_at, _jobs.c.finished_at).where(
        _jobs.c.created_at <= _UNTIL,
        sa.or_(_jobs.c.finished_at.is_(None), _jobs.c.finished_at > _SINCE),
    )
)


def backlog_series(
    conn: Connection, *, start: datetime, end: datetime, n_points: int = 60
) -> list[dict[str, object]]:
    """Return the backlog (jobs queued and not yet finished) at evenly spaced times.

    Parameters
    ----------
    conn : Connection
        State database (read-only is fine).
    start, end : datetime
        Timezone-aware span; ``end`` after ``start``.
    n_points : int
        Number of samples (>= 2), ``start`` and ``end`` included.

    Returns
    -------
    list of dict
        ``{"time": iso, "backlog": n, "pending_groups": n}`` where ``backlog``
        counts jobs of any kind with ``created_at <= time`` and no
        ``finished_at`` at or before it, and ``pending_groups`` the
        ``convert_group`` ones among them. A requeued job counts from its
        first creation.
    """
    if n_points < 2 or not end > start:
        msg = f"backlog_series needs n_points >= 2 and end > start, got {n_points}"
        raise ValueError(msg)
    step = (end - start) / (n_points - 1)
    times = [to_iso_utc(start + step * i) for i in range(n_points)]
    # one read: the jobs that can count at some sample (created by the end,
    # not finished before the start); each sample then counts in Python
    rows = _SERIES.execute(conn, {"until": times[-1], "since": times[0]}).fetchall()
    out = []
    for stamp in times:
        total = groups = 0
        for kind, created, finished in rows:
            if created <= stamp and (finished is None or finished > stamp):
                total += 1
                groups += kind == CONVERT_GROUP
        out.append({"time": stamp, "backlog": total, "pending_groups": groups})
    return out


def _finished_counts(
    conn: Connection, since_iso: str, until_iso: str
) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {kind: {} for kind in JOB_KINDS}
    pairs = finished_by_kind_state(conn, since_iso=since_iso, until_iso=until_iso)
    for (kind, state), n in pairs.items():
        if n:
            out.setdefault(kind, {})[state] = n
    return out


_IMAGE_NOISE = Query(
    sa.select(
        t.image_quality.c.rms_jy,
        t.image_quality.c.thermal_rms_jy,
        t.image_quality.c.passed,
    ).where(
        t.image_quality.c.created_at > _SINCE, t.image_quality.c.created_at <= _UNTIL
    )
)


def _image_noise(
    conn: Connection, since_iso: str, until_iso: str
) -> tuple[float | None, float | None, int, int]:
    rows = _IMAGE_NOISE.execute(conn, {"since": since_iso, "until": until_iso})
    rows = rows.fetchall()
    ratios = [
        float(rms) / float(thermal)
        for rms, thermal, _ in rows
        if rms is not None and thermal is not None and float(thermal) > 0
    ]
    n_failed = sum(1 for *_, passed in rows if not passed)
    if not ratios:
        return None, None, len(rows), n_failed
    return statistics.median(ratios), max(ratios), len(rows), n_failed


_GROUPS = _jobs.c.kind == const(CONVERT_GROUP)
_ARRIVED = Query(
    sa.select(_jobs.c.data_time_iso, _jobs.c.created_at).where(
        _GROUPS, _jobs.c.created_at > _SINCE, _jobs.c.created_at <= _UNTIL
    )
)
_PROCESSED = Query(
    sa.select(sa.func.count()).where(
        _GROUPS,
        _jobs.c.state == const("done"),
        _jobs.c.finished_at > _SINCE,
        _jobs.c.finished_at <= _UNTIL,
    )
)
_NEWEST_DATA = Query(sa.select(sa.func.max(_jobs.c.data_time_iso)).where(_GROUPS))
_BLOCKS = Query(
    sa.select(sa.func.count(), sa.func.avg(t.block_metrics.c.success)).where(
        t.block_metrics.c.recorded_at > _SINCE, t.block_metrics.c.recorded_at <= _UNTIL
    )
)
_PENDING = Query(
    sa.select(
        sa.func.min(_jobs.c.data_time_iso),
        sa.func.sum(
            sa.case((_jobs.c.not_before_at <= _UNTIL, const(1)), else_=const(0))
        ),
    ).where(_jobs.c.state == const("pending"))
)


def _ingest(
    conn: Connection, since_iso: str, until_iso: str, now: datetime
) -> tuple[int, int, list[float], float | None]:
    window = {"since": since_iso, "until": until_iso}
    created = _ARRIVED.execute(conn, window).fetchall()
    lags = [
        (_parse(str(made)) - _parse(str(data))).total_seconds()
        for data, made in created
    ]
    processed = _PROCESSED.execute(conn, window).fetchone()[0]
    newest = _NEWEST_DATA.execute(conn).fetchone()[0]
    age = None if newest is None else (now - _parse(str(newest))).total_seconds()
    return len(created), int(processed or 0), lags, age


def compute_figures(
    conn: Connection,
    *,
    now: datetime,
    window_h: float = 1.0,
    group_duration_s: float = 300.0,
) -> Figures:
    """Return every figure of the window ``[now - window_h, now]``.

    Parameters
    ----------
    conn : Connection
        A migrated state database (read-only is fine).
    now : datetime
        Timezone-aware end of the window.
    window_h : float
        Window length (hours, > 0).
    group_duration_s : float
        Data duration of one subband group (``services.ms_chunk_duration_min``
        x 60, seconds), the denominator of the real-time factor.

    Returns
    -------
    Figures
        See the module docstring for each definition.

    Raises
    ------
    ValueError
        ``window_h`` or ``group_duration_s`` not positive, or a naive ``now``.
    """
    if not group_duration_s > 0:
        msg = f"group_duration_s must be > 0 seconds, got {group_duration_s}"
        raise ValueError(msg)
    since, until = _window(now, window_h)
    durations = job_durations(conn, since_iso=since, until_iso=until)
    finished = _finished_counts(conn, since, until)
    stages = {
        kind: _stage(durations.get(kind, []), finished.get(kind, {}))
        for kind in sorted(set(durations) | set(finished))
    }
    blocks = _BLOCKS.execute(conn, {"since": since, "until": until}).fetchone()
    queue = dict.fromkeys(JOB_STATES, 0)
    for (_, state), n in queue_by_kind_state(conn).items():
        queue[state] += n
    pending = _PENDING.execute(conn, {"until": until}).fetchone()
    n_arrived, n_processed, lags, data_age = _ingest(conn, since, until, now)
    groups_converted = stages.get(CONVERT_GROUP)
    n_converted = groups_converted.n_done if groups_converted else 0
    work_s = sum(s.total_s for s in stages.values())
    rms_median, rms_max, n_checked, n_failed_qa = _image_noise(conn, since, until)
    return Figures(
        now=until,
        window_h=float(window_h),
        stages=stages,
        block_success_rate=None if blocks[1] is None else float(blocks[1]),
        n_blocks_recorded=int(blocks[0] or 0),
        real_time_factor=real_time_factor(work_s, n_converted, group_duration_s),
        queue=queue,
        backlog=queue["pending"] + queue["running"],
        backlog_runnable=int(pending[1] or 0),
        oldest_pending_data_time=pending[0],
        ingest_rate_per_h=n_arrived / window_h,
        processed_rate_per_h=n_processed / window_h,
        processed_over_arrived=n_processed / n_arrived if n_arrived else None,
        ingest_lag_median_s=statistics.median(lags) if lags else None,
        ingest_lag_max_s=max(lags) if lags else None,
        data_age_s=data_age,
        failures_by_class=failures_by_class(conn, since_iso=since, until_iso=until),
        calibration=calibration_ages(conn, now=now),
        image_rms_ratio_median=rms_median,
        image_rms_ratio_max=rms_max,
        n_images_checked=n_checked,
        n_images_failed_qa=n_failed_qa,
        ingest_lag_s=ingest_lag_s(pending[0], now),
        n_groups_arrived=n_arrived,
        n_groups_processed=n_processed,
    )
