"""The Prometheus exposition of ``/metrics`` (prometheus-client).

One `PipelineCollector` per app, in the app's own ``CollectorRegistry``,
reads the state database (read-only) at each scrape and exports exactly the
metrics declared in ``dsa110_contimg.tables.METRICS`` (names, types, labels),
the ones ``monitoring/alerts.yml`` and the Grafana dashboards use. The gauges
are the in-process alert engine's figures (`services.alerts.collect_figures`
and `metric_samples`, from `state.figures`), so Prometheus and the engine
judge the same numbers; the stage-duration histogram is
`state.figures.duration_histogram`. An unreadable database exports
``dsa110_state_db_up 0`` and the host's metrics (disk, observing, workers).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from dsa110_contimg.services.alerts import (
    collect_figures,
    collect_host_samples,
    metric_samples,
)
from dsa110_contimg.state.db import DatabaseError
from dsa110_contimg.state.figures import duration_histogram
from dsa110_contimg.tables import METRICS, metric_spec
from dsa110_contimg.web.context import AppContext
from dsa110_contimg.web.errors import UnavailableError

__all__ = ["DURATION_BUCKETS_S", "PipelineCollector", "build_registry", "exposition"]

log = logging.getLogger(__name__)

DURATION_BUCKETS_S = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Upper bounds of the stage-duration histogram (seconds)."""


def _gauge(name: str, samples: list[tuple[dict[str, str], float]]) -> Metric:
    spec = metric_spec(name)
    family = GaugeMetricFamily(name, spec.help, labels=list(spec.labels))
    for labels, value in samples:
        family.add_metric([labels[k] for k in spec.labels], float(value))
    return family


class PipelineCollector(Collector):
    """Collect the declared metrics from the state database at each scrape."""

    def __init__(self, context: AppContext) -> None:
        self.context = context

    def collect(self) -> Iterator[Metric]:
        """Yield every family of ``tables.METRICS`` (in declaration order)."""
        ctx = self.context
        now = ctx.clock()
        try:
            with ctx.read() as conn:
                samples = metric_samples(collect_figures(ctx.config, conn, now=now))
                histogram = duration_histogram(conn, DURATION_BUCKETS_S)
        except (UnavailableError, DatabaseError) as err:
            log.warning("metrics: state database unreadable", extra={"error": str(err)})
            samples = {**collect_host_samples(ctx.config, now=now)}
            samples["dsa110_state_db_up"] = [({}, 0.0)]
            histogram = None
        for spec in METRICS:
            if spec.type == "histogram":
                if histogram is not None:
                    yield _histogram(spec.name, histogram)
            elif spec.name in samples:
                yield _gauge(spec.name, samples[spec.name])


def _histogram(name: str, data: dict[str, tuple[list[int], int, float]]) -> Metric:
    spec = metric_spec(name)
    family = HistogramMetricFamily(name, spec.help, labels=list(spec.labels))
    for kind, (counts, n, total) in sorted(data.items()):
        buckets = [
            (f"{b:g}", c) for b, c in zip(DURATION_BUCKETS_S, counts, strict=True)
        ]
        family.add_metric([kind], [*buckets, ("+Inf", n)], total)
    return family


def build_registry(context: AppContext) -> CollectorRegistry:
    """Return a new registry holding one `PipelineCollector` (none shared)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(context))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """Return the registry in the Prometheus text format."""
    return generate_latest(registry)
