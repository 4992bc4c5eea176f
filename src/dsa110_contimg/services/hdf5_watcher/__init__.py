"""HDF5 watcher: decide complete subband groups and enqueue their conversion."""

from dsa110_contimg.services.hdf5_watcher._scan import GroupDecision, SubbandWatcher
from dsa110_contimg.services.hdf5_watcher._service import (
    WatcherService,
    conversion_spec,
    run,
)

__all__ = [
    "GroupDecision",
    "SubbandWatcher",
    "WatcherService",
    "conversion_spec",
    "run",
]
