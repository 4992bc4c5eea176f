"""The Dask worker plugin of the pipeline (imported only by the Dask backend)."""

from __future__ import annotations

import sys

from distributed import WorkerPlugin

__all__ = ["CasaWorkerSetup"]


class CasaWorkerSetup(WorkerPlugin):
    """Give each Dask worker a CASA-safe argv and the site's CASA configuration.

    The same preparation the local process pool gives its processes
    (`dsa110_contimg.pipeline._pool`).
    """

    name = "dsa110-casa-setup"

    def setup(self, worker: object) -> None:  # noqa: ARG002 - plugin protocol
        """Prepare the worker process before it runs a task."""
        from dsa110_contimg._casa import configure_casa_environment

        sys.argv = sys.argv[:1]
        configure_casa_environment()
