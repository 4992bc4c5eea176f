"""HDF5 watcher: decide complete subband groups and enqueue their conversion."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from dsa110_contimg.services.hdf5_watcher._scan import GroupDecision, SubbandWatcher
from dsa110_contimg.services.hdf5_watcher._service import (
    WatcherService,
    conversion_spec,
)

if TYPE_CHECKING:
    from dsa110_contimg.services._host import StreamSummary
    from dsa110_contimg.utils.config import PipelineConfig

__all__ = [
    "GroupDecision",
    "SubbandWatcher",
    "WatcherService",
    "conversion_spec",
    "run",
]


def run(
    config: PipelineConfig,
    *,
    stop_event: threading.Event | None = None,
    incoming_dir: Path | None = None,
    catalog_path: Path | None = None,
) -> StreamSummary:
    """Run the hdf5_watcher alone until SIGTERM/SIGINT or ``stop_event``.

    It watches ``incoming_dir`` (default ``paths.incoming_dir``) and enqueues a
    conversion job per complete group. The other services may run in other processes
    (or hosts) on the same state database; a second hdf5_watcher on it is refused
    with a `WriterBusyError` naming the running one's host and pid. Parameters as
    `dsa110_contimg.services.run_services`.
    """
    from dsa110_contimg.services._host import run_services

    return run_services(
        config,
        ("hdf5_watcher",),
        stop_event=stop_event,
        incoming_dir=incoming_dir,
        catalog_path=catalog_path,
    )
