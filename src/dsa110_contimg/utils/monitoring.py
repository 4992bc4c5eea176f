"""Seed path of the health checks and the block metrics store (re-exports).

The health checks live in `dsa110_contimg.services.health` (they look at the
host, WSClean and the state database) and the metrics store in
`dsa110_contimg.state.metrics` (its SQL belongs to the state layer). This module
keeps the seed's imports working::

    from dsa110_contimg.utils.monitoring import HealthChecker, PipelineMetrics

New code imports from the two modules directly.
"""

from dsa110_contimg.services.health import (
    HEALTHY,
    UNHEALTHY,
    WARNING,
    HealthCheck,
    HealthCheckConfig,
    HealthChecker,
    HealthStatus,
)
from dsa110_contimg.state.metrics import PipelineMetrics

__all__ = [
    "HEALTHY",
    "UNHEALTHY",
    "WARNING",
    "HealthCheck",
    "HealthCheckConfig",
    "HealthChecker",
    "HealthStatus",
    "PipelineMetrics",
]
