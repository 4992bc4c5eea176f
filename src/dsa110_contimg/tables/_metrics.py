"""The Prometheus metrics of the pipeline: name, type, labels, help, unit.

One declaration for everything that names a metric: the ``/metrics``
endpoint exports exactly these, the alert rules (``monitoring/alerts.yml``)
and the Grafana dashboards (``monitoring/grafana/*.json``) use only these,
and the in-process alert engine (`dsa110_contimg.services.alerts`) computes
the same values from the state database. Windowed figures (``*_last_hour``)
are gauges computed from the database at each scrape, so Prometheus and the
in-process engine see the same numbers and a restart or retention never looks
like a counter reset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "METRICS",
    "MetricSpec",
    "metric_names",
    "metric_spec",
    "metrics_markdown",
]

MetricType = Literal["gauge", "counter", "histogram"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exported metric.

    Attributes
    ----------
    name : str
        Prometheus name (``dsa110_`` prefix, base unit suffix).
    type : {"gauge", "counter", "histogram"}
        Prometheus metric type.
    labels : tuple of str
        Label names, in order.
    help : str
        The ``# HELP`` text.
    unit : str
        Base unit (``seconds``, ``bytes``, ``ratio``, ``groups``...).
    """

    name: str
    type: MetricType
    labels: tuple[str, ...]
    help: str
    unit: str

    @property
    def series_names(self) -> tuple[str, ...]:
        """Names of the series it exports (a histogram's ``_bucket`` etc.)."""
        if self.type == "histogram":
            return tuple(f"{self.name}{s}" for s in ("_bucket", "_sum", "_count"))
        return (self.name,)


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "dsa110_backlog_groups",
        "gauge",
        (),
        "Subband groups waiting for conversion (convert_group jobs pending or "
        "running).",
        "groups",
    ),
    MetricSpec(
        "dsa110_backlog_blocks",
        "gauge",
        (),
        "Block windows waiting to be processed (process_block jobs pending or "
        "running).",
        "blocks",
    ),
    MetricSpec(
        "dsa110_queue_jobs",
        "gauge",
        ("kind", "state"),
        "Jobs in the durable queue by kind and state.",
        "jobs",
    ),
    MetricSpec(
        "dsa110_groups_arrived_last_hour",
        "gauge",
        (),
        "Subband groups enqueued by the watcher in the last hour.",
        "groups",
    ),
    MetricSpec(
        "dsa110_groups_processed_last_hour",
        "gauge",
        (),
        "Subband groups converted (convert_group done) in the last hour.",
        "groups",
    ),
    MetricSpec(
        "dsa110_jobs_finished_last_hour",
        "gauge",
        ("kind", "state"),
        "Jobs that reached done, failed or quarantined in the last hour.",
        "jobs",
    ),
    MetricSpec(
        "dsa110_job_errors_last_hour",
        "gauge",
        ("kind", "error_class"),
        "Job attempts that raised an error in the last hour, by exception class.",
        "errors",
    ),
    MetricSpec(
        "dsa110_realtime_factor",
        "gauge",
        (),
        "Seconds of work (every job done in the last hour, all stages) per "
        "second of data converted in the last hour; the pipeline falls behind "
        "above dsa110_workers.",
        "ratio",
    ),
    MetricSpec(
        "dsa110_workers",
        "gauge",
        (),
        "Worker processes (services.max_workers): the real-time factor the "
        "pipeline keeps up at.",
        "workers",
    ),
    MetricSpec(
        "dsa110_stage_success_ratio",
        "gauge",
        ("stage",),
        "Jobs finished done / finished (done, failed, quarantined) in the last "
        "hour, by stage (job kind); no sample for a stage that finished none.",
        "ratio",
    ),
    MetricSpec(
        "dsa110_last_arrival_timestamp_seconds",
        "gauge",
        (),
        "Unix time the newest subband group was enqueued.",
        "seconds",
    ),
    MetricSpec(
        "dsa110_observing",
        "gauge",
        (),
        "1 inside an observing window (alerts.observing_windows_utc; always "
        "when none are configured), else 0.",
        "bool",
    ),
    MetricSpec(
        "dsa110_disk_free_bytes",
        "gauge",
        ("path",),
        "Free space of each data filesystem, keyed by its first data directory.",
        "bytes",
    ),
    MetricSpec(
        "dsa110_disk_free_ratio",
        "gauge",
        ("path",),
        "Free fraction (0..1) of each data filesystem.",
        "ratio",
    ),
    MetricSpec(
        "dsa110_intake_paused",
        "gauge",
        (),
        "1 while the free-disk guard pauses intake (below "
        "watcher.min_free_disk_gb), else 0.",
        "bool",
    ),
    MetricSpec(
        "dsa110_calibration_age_seconds",
        "gauge",
        ("dec_strip_deg",),
        "Time since the calibrator transit of the newest solution of each "
        "declination strip that had a solution applied in the last 24 h.",
        "seconds",
    ),
    MetricSpec(
        "dsa110_calibration_valid",
        "gauge",
        ("dec_strip_deg",),
        "1 if now lies inside the validity window of the newest solution of "
        "each declination strip in use, else 0.",
        "bool",
    ),
    MetricSpec(
        "dsa110_stage_duration_seconds",
        "histogram",
        ("stage",),
        "Wall time of finished jobs by stage (job kind).",
        "seconds",
    ),
    MetricSpec(
        "dsa110_image_rms_ratio",
        "gauge",
        (),
        "Median image rms over the thermal expectation of the images made in "
        "the last hour.",
        "ratio",
    ),
    MetricSpec(
        "dsa110_ingest_lag_seconds",
        "gauge",
        (),
        "Age of the oldest pending job's data (now - data_time_iso); 0 when "
        "nothing is pending.",
        "seconds",
    ),
    MetricSpec(
        "dsa110_data_age_seconds",
        "gauge",
        (),
        "Now minus the data time of the newest subband group enqueued.",
        "seconds",
    ),
    MetricSpec(
        "dsa110_intake_held",
        "gauge",
        (),
        "1 while the operator holds intake (intake pause), else 0.",
        "bool",
    ),
    MetricSpec(
        "dsa110_state_db_up",
        "gauge",
        (),
        "1 if the state database could be read at this scrape, else 0 (then "
        "only the host's metrics follow).",
        "bool",
    ),
)

_BY_NAME = {spec.name: spec for spec in METRICS}


def metric_spec(name: str) -> MetricSpec:
    """Return the declaration of ``name``; `KeyError` naming the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        msg = f"metric {name!r} is not declared in dsa110_contimg.tables.METRICS"
        raise KeyError(msg) from None


def metric_names() -> frozenset[str]:
    """Return every series name the metrics export (histogram parts included)."""
    return frozenset(n for spec in METRICS for n in spec.series_names)


def metrics_markdown() -> str:
    """Return the metrics as a Markdown table (metric, type, labels, unit, meaning).

    The README's list of metrics (``<!-- columns: metrics ... -->``).
    """
    lines = ["| metric | type | labels | unit | meaning |", "|---|---|---|---|---|"]
    for m in METRICS:
        labels = ", ".join(f"`{x}`" for x in m.labels) or "-"
        meaning = " ".join(m.help.split()).replace("|", "\\|")
        lines.append(f"| `{m.name}` | {m.type} | {labels} | {m.unit} | {meaning} |")
    return "\n".join(lines) + "\n"
