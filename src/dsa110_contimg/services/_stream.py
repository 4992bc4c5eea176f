"""Run the streaming services together in one process: ``stream``.

`run_stream` is the seed's entry point: every service (or the ``services``
chosen) hosted by `dsa110_contimg.services._host.run_services`, which holds
their writer claims; see that module for what runs where. A stream of every
service holds the whole pipeline's writer claim, so it is refused while any
of its services (or a batch writer) runs elsewhere on the same database.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path

from dsa110_contimg.services._host import (
    ALL_SERVICES,
    StreamSummary,
    run_services,
    run_services_async,
)
from dsa110_contimg.services._runner import Clock, utc_now
from dsa110_contimg.state.writer import cleanup_stale_temporaries
from dsa110_contimg.utils.config import PipelineConfig

__all__ = [
    "ALL_SERVICES",
    "StreamSummary",
    "cleanup_stale_temporaries",
    "run_stream",
    "run_stream_async",
]


async def run_stream_async(
    config: PipelineConfig,
    *,
    stop: asyncio.Event,
    incoming_dir: Path | None = None,
    catalog_path: Path | None = None,
    executor: Executor | None = None,
    services: Sequence[str] = ALL_SERVICES,
    force: asyncio.Event | None = None,
    clock: Clock = utc_now,
) -> StreamSummary:
    """Run ``services`` in the running event loop until ``stop`` is set.

    The parameters are those of `run_services_async`.

    Raises
    ------
    WriterBusyError
        Another writer (a stream, ``process``, ``batch``, one of
        ``services`` in another process...) holds the part of this state
        database's writer claim that ``services`` need; the message names it.
    """
    return await run_services_async(
        config,
        services,
        stop=stop,
        incoming_dir=incoming_dir,
        catalog_path=catalog_path,
        executor=executor,
        force=force,
        clock=clock,
    )


def run_stream(
    config: PipelineConfig,
    *,
    incoming_dir: Path | None = None,
    catalog_path: Path | None = None,
    stop_event: threading.Event | None = None,
    executor: Executor | None = None,
    services: Sequence[str] = ALL_SERVICES,
    handle_signals: bool = True,
) -> StreamSummary:
    """Run the streaming services until SIGTERM/SIGINT or ``stop_event``.

    Parameters
    ----------
    config : PipelineConfig
        Resolved configuration.
    incoming_dir : Path, optional
        Directory to watch; default ``paths.incoming_dir``.
    catalog_path : Path, optional
        Source catalogue; default ``paths.catalog_path``.
    stop_event : threading.Event, optional
        Set from another thread to stop, like a signal.
    executor : concurrent.futures.Executor, optional
        Where CPU work runs (see `run_services_async`).
    services : sequence of str
        Which services to run; all by default.
    handle_signals : bool
        Install SIGTERM/SIGINT handlers (main thread only).

    Returns
    -------
    StreamSummary
    """
    return run_services(
        config,
        services,
        stop_event=stop_event,
        incoming_dir=incoming_dir,
        catalog_path=catalog_path,
        executor=executor,
        handle_signals=handle_signals,
    )
