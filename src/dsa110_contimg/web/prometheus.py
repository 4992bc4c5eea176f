"""The Prometheus exposition of ``/metrics`` (prometheus-client).

One `PipelineCollector` per app, in the app's own ``CollectorRegistry``,
reads the state database (read-only) at each scrape; every figure comes from
`state.figures`. Metric names (all prefixed ``dsa110_``):

==========================================  =====================================
``stage_duration_seconds`` (histogram)      durations by ``stage`` (every done job kept)
``queue_jobs`` (gauge)                      jobs by ``kind`` and ``state``
``backlog_jobs`` (gauge)                    jobs pending or running
``failures_total`` (counter)                failure events by ``kind``, ``error_class``
``success_ratio`` (gauge)                   per ``stage`` over the window
``real_time_factor`` (gauge)                work seconds per data second (window)
``ingest_rate_per_hour`` (gauge)            groups queued per hour (window)
``processed_rate_per_hour`` (gauge)         groups converted per hour (window)
``processed_over_arrived_ratio`` (gauge)    their ratio (window)
``ingest_lag_seconds`` (gauge)              median queue delay after the data time
``data_age_seconds`` (gauge)                now minus the newest group's data time
``disk_free_bytes`` (gauge)                 free space by data ``directory``
``calibration_age_hours`` (gauge)           newest solution's age by ``dec_strip``
``calibration_valid`` (gauge)               1 if that solution is valid now
``image_rms_over_thermal_ratio`` (gauge)    ``quantile`` 0.5 / 1 over the window
``intake_open`` (gauge)                     1 open, 0 paused (disk or operator)
``state_db_up`` (gauge)                     1 if the state database could be read
==========================================  =====================================

The windowed gauges use ``web.figures_window_h``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from dsa110_contimg.state.db import DatabaseError
from dsa110_contimg.state.figures import (
    compute_figures,
    duration_histogram,
    failure_totals,
)
from dsa110_contimg.web.api.pipeline import intake_status
from dsa110_contimg.web.context import AppContext, data_directories
from dsa110_contimg.web.errors import UnavailableError

__all__ = ["DURATION_BUCKETS_S", "PipelineCollector", "build_registry", "exposition"]

log = logging.getLogger(__name__)

DURATION_BUCKETS_S = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Upper bounds of the stage-duration histogram (seconds)."""

_P = "dsa110_"


def _free_bytes(path: Path) -> float | None:
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return float(shutil.disk_usage(probe).free)
    except OSError:
        return None


class PipelineCollector(Collector):
    """Collect the pipeline's figures from the state database at each scrape."""

    def __init__(self, context: AppContext) -> None:
        self.context = context

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family (a missing database yields ``state_db_up 0``)."""
        ctx = self.context
        up = GaugeMetricFamily(_P + "state_db_up", "1 if the state database was read")
        disk = GaugeMetricFamily(
            _P + "disk_free_bytes",
            "Free space of a data directory",
            labels=["directory"],
        )
        for directory in data_directories(ctx.config):
            free = _free_bytes(directory)
            if free is not None:
                disk.add_metric([str(directory)], free)
        yield disk
        try:
            with ctx.read() as conn:
                families = list(self._from_db(conn))
        except (UnavailableError, DatabaseError) as err:
            log.warning("metrics: state database unreadable", extra={"error": str(err)})
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families

    def _from_db(self, conn) -> Iterator[Metric]:
        ctx = self.context
        hist = HistogramMetricFamily(
            _P + "stage_duration_seconds",
            "Duration of jobs finished done, by stage (job kind)",
            labels=["stage"],
        )
        for kind, (counts, n, total) in sorted(
            duration_histogram(conn, DURATION_BUCKETS_S).items()
        ):
            buckets = [
                (f"{b:g}", c) for b, c in zip(DURATION_BUCKETS_S, counts, strict=True)
            ]
            hist.add_metric([kind], [*buckets, ("+Inf", n)], total)
        yield hist
        failures = CounterMetricFamily(
            _P + "failures",
            "Failure events of jobs, by kind and error class",
            labels=["kind", "error_class"],
        )
        for (kind, cls), n in sorted(failure_totals(conn).items()):
            failures.add_metric([kind, cls], n)
        yield failures
        figures = compute_figures(
            conn,
            now=ctx.clock(),
            window_h=ctx.config.web.figures_window_h,
            group_duration_s=ctx.config.services.ms_chunk_duration_min * 60.0,
        )
        queue = GaugeMetricFamily(
            _P + "queue_jobs", "Jobs by kind and state", labels=["kind", "state"]
        )
        for kind, states in conn_counts(conn).items():
            for state, n in states.items():
                queue.add_metric([kind, state], n)
        yield queue
        yield _gauge("backlog_jobs", "Jobs pending or running", figures.backlog)
        success = GaugeMetricFamily(
            _P + "success_ratio",
            "Jobs done / finished over the window",
            labels=["stage"],
        )
        for stage, values in figures.stages.items():
            if values.success_rate is not None:
                success.add_metric([stage], values.success_rate)
        yield success
        for name, doc, value in (
            (
                "real_time_factor",
                "Work seconds per data second",
                figures.real_time_factor,
            ),
            (
                "ingest_rate_per_hour",
                "Groups queued per hour",
                figures.ingest_rate_per_h,
            ),
            (
                "processed_rate_per_hour",
                "Groups converted per hour",
                figures.processed_rate_per_h,
            ),
            (
                "processed_over_arrived_ratio",
                "Groups converted / queued over the window",
                figures.processed_over_arrived,
            ),
            (
                "ingest_lag_seconds",
                "Median delay from a group's data time to its queueing",
                figures.ingest_lag_median_s,
            ),
            ("data_age_seconds", "Now minus the newest data time", figures.data_age_s),
        ):
            if value is not None:
                yield _gauge(name, doc, value)
        age = GaugeMetricFamily(
            _P + "calibration_age_hours",
            "Age of the newest calibration solution, by strip",
            labels=["dec_strip"],
        )
        valid = GaugeMetricFamily(
            _P + "calibration_valid",
            "1 if the strip's newest solution is valid now",
            labels=["dec_strip"],
        )
        for strip in figures.calibration:
            label = f"{strip.dec_strip_deg:+.2f}"
            age.add_metric([label], strip.age_h)
            valid.add_metric([label], 1.0 if strip.valid_now else 0.0)
        yield age
        yield valid
        rms = GaugeMetricFamily(
            _P + "image_rms_over_thermal_ratio",
            "Image rms / thermal rms over the window",
            labels=["quantile"],
        )
        if figures.image_rms_ratio_median is not None:
            rms.add_metric(["0.5"], figures.image_rms_ratio_median)
            rms.add_metric(["1"], figures.image_rms_ratio_max or 0.0)
        yield rms
        yield _gauge(
            "intake_open",
            "1 intake open, 0 paused",
            1.0 if intake_status(conn)["open"] else 0.0,
        )


def conn_counts(conn) -> dict[str, dict[str, int]]:
    """Return ``{kind: {state: n}}`` (`state.jobs.count_jobs_by_kind`)."""
    from dsa110_contimg.state.jobs import count_jobs_by_kind

    return count_jobs_by_kind(conn)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(_P + name, doc, value=float(value))


def build_registry(context: AppContext) -> CollectorRegistry:
    """Return a new registry holding one `PipelineCollector` (none shared)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(context))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """Return the registry in the Prometheus text format."""
    return generate_latest(registry)
