"""Streaming services: hdf5_watcher, ms_processor, variability_analyzer.

They share a durable job queue in the state database
(`dsa110_contimg.state.jobs`) and run together in one process (`run_stream`,
the ``dsa110-contimg stream`` command, or ``python -m dsa110_contimg.services``)
or apart, in processes of their own on one database (each package's
``run(config, *, stop_event)``, or ``stream --service NAME``); one host
(`run_services`) runs any set of them.
"""

from dsa110_contimg.services._host import run_services, run_services_async
from dsa110_contimg.services._stream import (
    ALL_SERVICES,
    StreamSummary,
    cleanup_stale_temporaries,
    run_stream,
    run_stream_async,
)

__all__ = [
    "ALL_SERVICES",
    "StreamSummary",
    "cleanup_stale_temporaries",
    "run_services",
    "run_services_async",
    "run_stream",
    "run_stream_async",
]
