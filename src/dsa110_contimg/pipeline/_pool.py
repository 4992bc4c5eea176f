"""The process pool that runs the pipeline's CPU work (images, mosaics, calibration).

Its workers are ``spawn``-ed processes that send their log records to the
parent's handlers, ignore SIGINT (the parent coordinates shutdown), get a
CASA-safe argv and site configuration and, on Linux, ask the kernel to kill
them when the parent dies, so a ``kill -9`` of a batch run or a service leaves
no worker behind. The services re-export it (`dsa110_contimg.services._pool`).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

from dsa110_contimg._casa import configure_casa_environment
from dsa110_contimg.utils.logging import init_worker_logging, worker_logging_args

__all__ = ["make_process_pool"]

_PR_SET_PDEATHSIG = 1


def _init_worker(*log_args: object) -> None:
    """Prepare a pool worker: log to the parent, ignore Ctrl-C, die with it.

    A spawned worker inherits the parent's ``sys.argv`` (e.g. ``process
    --config my.yaml``), which casaconfig would misread when CASA is imported;
    the worker needs no argv, so it keeps only the program name, and gets the
    installation's CASA site configuration (`dsa110_contimg._casa`).
    """
    init_worker_logging(*log_args)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.argv = sys.argv[:1]
    configure_casa_environment()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - exotic libc
            return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def make_process_pool(max_workers: int) -> ProcessPoolExecutor:
    """Return the services' default executor: ``max_workers`` spawned processes."""
    return ProcessPoolExecutor(
        max_workers=max_workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=worker_logging_args(),
    )
