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
        from dsa110_contimg.tools._imager_run import set_cancel_check

        sys.argv = sys.argv[:1]
        configure_casa_environment()
        set_cancel_check(task_cancelled)


def task_cancelled() -> bool:
    """True when the Dask task running in this thread was cancelled.

    The scheduler cancels a running task when no client wants it any more
    (its stream stopped or died); the task's thread runs on, so the imager
    polls this (`tools._imager_run.set_cancel_check`).
    """
    from distributed import get_worker
    from distributed.worker import thread_state

    key = getattr(thread_state, "key", None)
    if key is None:
        return False
    try:
        task = get_worker().state.tasks.get(key)
    except ValueError:  # not in a worker
        return False
    return task is None or task.state in ("cancelled", "released", "forgotten")
