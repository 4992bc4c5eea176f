"""The figures the alert rules test, and the metric samples made from them.

`collect_figures` reads the state database (`state.alert_inputs`), measures
the data filesystems and tells whether an observing window is open;
`metric_samples` turns the figures into the samples of the metrics declared
in ``dsa110_contimg.tables.METRICS`` (what ``/metrics`` exports), so the
in-process engine and Prometheus judge the same numbers.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from dsa110_contimg.services._intake import (
    data_directories,
    filesystems,
    nearest_existing,
)
from dsa110_contimg.state.alert_inputs import AlertInputs, read_alert_inputs
from dsa110_contimg.state.db import Connection
from dsa110_contimg.tables import metric_spec
from dsa110_contimg.utils.config import PipelineConfig
from dsa110_contimg.utils.config._alerts import parse_window_utc

__all__ = [
    "GROWTH_WINDOW_S",
    "DiskFigure",
    "Figures",
    "Sample",
    "collect_figures",
    "collect_host_samples",
    "is_observing",
    "measure_disks",
    "metric_samples",
    "strip_label",
]

GROWTH_WINDOW_S = 900.0
"""Look-back of "backlog growing" (the rules' ``delta(...[15m])``), seconds."""

Sample = tuple[dict[str, str], float]
DiskUsage = Callable[[Path], tuple[int, int, int]]


@dataclass(frozen=True, slots=True)
class DiskFigure:
    """Free and total bytes of one data filesystem."""

    free_bytes: int
    total_bytes: int

    @property
    def free_ratio(self) -> float:
        """Free fraction (0..1); 0 for a filesystem that reports no size."""
        return self.free_bytes / self.total_bytes if self.total_bytes else 0.0


@dataclass(frozen=True, slots=True)
class Figures:
    """Everything one evaluation of the rules looks at."""

    inputs: AlertInputs
    disks: dict[str, DiskFigure] = field(default_factory=dict)
    is_observing: bool = True

    @property
    def now(self) -> datetime:
        """Time of the evaluation (UTC)."""
        return self.inputs.now


def measure_disks(
    paths: Sequence[Path], *, disk_usage: DiskUsage = shutil.disk_usage
) -> dict[str, DiskFigure]:
    """Measure each filesystem once, keyed by its first directory in ``paths``.

    Grouped as the free-disk guard groups them (`services._intake.filesystems`).
    """
    out: dict[str, DiskFigure] = {}
    for first in filesystems(paths):
        try:
            usage = disk_usage(nearest_existing(Path(first).absolute()))
        except OSError:
            continue
        out[first] = DiskFigure(int(usage[2]), int(usage[0]))
    return out


def is_observing(windows: Sequence[str], now: datetime) -> bool:
    """Whether ``now`` (UTC) lies in one of the daily ``HH:MM-HH:MM`` windows.

    No windows means always observing.
    """
    if not windows:
        return True
    minute = now.hour * 60 + now.minute
    for window in windows:
        start, end = parse_window_utc(window)
        if start < end:
            inside = start <= minute < end
        else:  # wraps past midnight
            inside = minute >= start or minute < end
        if inside:
            return True
    return False


def collect_figures(
    config: PipelineConfig,
    conn: Connection,
    *,
    now: datetime,
    disk_usage: DiskUsage = shutil.disk_usage,
) -> Figures:
    """Compute the figures of the rules at ``now``.

    Parameters
    ----------
    config : PipelineConfig
        ``services`` (group duration, workers), ``alerts`` (observing
        windows) and the data paths.
    conn : Connection
        State database (read-only is fine).
    now : datetime
        Time of the evaluation (timezone-aware).
    disk_usage : callable, optional
        ``shutil.disk_usage``-like probe (replaced in tests).
    """
    from datetime import timedelta

    inputs = read_alert_inputs(
        conn,
        now=now,
        group_duration_s=config.services.ms_chunk_duration_min * 60.0,
        n_workers=config.services.max_workers,
        growth_window=timedelta(seconds=GROWTH_WINDOW_S),
    )
    disks = measure_disks(data_directories(config), disk_usage=disk_usage)
    observing = is_observing(config.alerts.observing_windows_utc, now)
    return Figures(inputs, disks, observing)


def metric_samples(figures: Figures) -> dict[str, list[Sample]]:
    """Return the gauge samples of `figures`, by metric name.

    Every name and label set is one of ``tables.METRICS`` (checked here); a
    figure that is undefined (no data converted, no arrival yet) has no
    sample. The stage-duration histogram (`state.figures.duration_histogram`)
    is built by the exporter (`web.prometheus`) and is not among these.
    """
    i = figures.inputs
    out: dict[str, list[Sample]] = {
        "dsa110_backlog_groups": [({}, float(i.backlog_groups))],
        "dsa110_backlog_blocks": [({}, float(i.backlog_blocks))],
        "dsa110_queue_jobs": [
            ({"kind": k, "state": s}, float(n)) for (k, s), n in i.queue_jobs.items()
        ],
        "dsa110_groups_arrived_last_hour": [({}, float(i.groups_arrived_last_hour))],
        "dsa110_groups_processed_last_hour": [
            ({}, float(i.groups_processed_last_hour))
        ],
        "dsa110_jobs_finished_last_hour": [
            ({"kind": k, "state": s}, float(n))
            for (k, s), n in i.jobs_finished_last_hour.items()
        ],
        "dsa110_job_errors_last_hour": [
            ({"kind": k, "error_class": c}, float(n))
            for (k, c), n in i.job_errors_last_hour.items()
        ],
        "dsa110_realtime_factor": []
        if i.realtime_factor is None
        else [({}, i.realtime_factor)],
        "dsa110_last_arrival_timestamp_seconds": []
        if i.last_arrival_at is None
        else [({}, i.last_arrival_at.timestamp())],
        "dsa110_intake_paused": [({}, 1.0 if i.intake_paused else 0.0)],
        "dsa110_calibration_age_seconds": [
            ({"dec_strip_deg": strip_label(dec)}, age)
            for dec, age in sorted(i.calibration_age_s.items())
        ],
        "dsa110_image_rms_ratio": []
        if i.image_rms_ratio is None
        else [({}, i.image_rms_ratio)],
        "dsa110_ingest_lag_seconds": [({}, i.ingest_lag_s)],
        "dsa110_stage_success_ratio": [
            ({"stage": k}, v) for k, v in sorted(i.stage_success_ratio.items())
        ],
        "dsa110_calibration_valid": [
            ({"dec_strip_deg": strip_label(dec)}, 1.0 if ok else 0.0)
            for dec, ok in sorted(i.calibration_valid.items())
        ],
        "dsa110_data_age_seconds": [] if i.data_age_s is None else [({}, i.data_age_s)],
        "dsa110_intake_held": [({}, 1.0 if i.intake_held else 0.0)],
        "dsa110_state_db_up": [({}, 1.0)],
        **_host_samples(figures.disks, figures.is_observing, i.n_workers),
    }
    _check_labels(out)
    return out


def _host_samples(
    disks: dict[str, DiskFigure], observing: bool, n_workers: int
) -> dict[str, list[Sample]]:
    return {
        "dsa110_observing": [({}, 1.0 if observing else 0.0)],
        "dsa110_disk_free_bytes": [
            ({"path": p}, float(d.free_bytes)) for p, d in disks.items()
        ],
        "dsa110_disk_free_ratio": [
            ({"path": p}, d.free_ratio) for p, d in disks.items()
        ],
        "dsa110_workers": [({}, float(max(1, n_workers)))],
    }


def collect_host_samples(
    config: PipelineConfig,
    *,
    now: datetime,
    disk_usage: DiskUsage = shutil.disk_usage,
) -> dict[str, list[Sample]]:
    """Return the samples that need no database (disk, observing, workers).

    What ``/metrics`` still exports when the state database is unreadable.
    """
    out = _host_samples(
        measure_disks(data_directories(config), disk_usage=disk_usage),
        is_observing(config.alerts.observing_windows_utc, now),
        config.services.max_workers,
    )
    _check_labels(out)
    return out


def _check_labels(out: dict[str, list[Sample]]) -> None:
    for name, samples in out.items():
        spec = metric_spec(name)
        for labels, _ in samples:
            if tuple(labels) != spec.labels:
                msg = f"metric {name}: labels {tuple(labels)} != declared {spec.labels}"
                raise ValueError(msg)


def strip_label(dec_deg: float) -> str:
    """Return the ``dec_strip_deg`` label value of a strip (two decimals)."""
    return f"{dec_deg:.2f}"
