"""Streaming services: hdf5_watcher, ms_processor, variability_analyzer.

They share a durable job queue in the state database
(`dsa110_contimg.state.jobs`) and normally run together in one process
(`run_stream`, the ``dsa110-contimg stream`` command, or
``python -m dsa110_contimg.services``).
"""

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
    "run_stream",
    "run_stream_async",
]
