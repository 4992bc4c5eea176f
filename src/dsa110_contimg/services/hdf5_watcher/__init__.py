"""HDF5 watcher: decide complete subband groups and enqueue their conversion."""

from __future__ import annotations

from dsa110_contimg.services._entry import service_entry
from dsa110_contimg.services.hdf5_watcher._scan import GroupDecision, SubbandWatcher
from dsa110_contimg.services.hdf5_watcher._service import (
    WatcherService,
    conversion_spec,
)

__all__ = [
    "GroupDecision",
    "SubbandWatcher",
    "WatcherService",
    "conversion_spec",
    "run",
]


run = service_entry(
    "hdf5_watcher",
    """Run the hdf5_watcher alone until SIGTERM/SIGINT or ``stop_event``.

    It watches ``incoming_dir`` (default ``paths.incoming_dir``) and enqueues a
    conversion job per complete group.""",
    __name__,
)
