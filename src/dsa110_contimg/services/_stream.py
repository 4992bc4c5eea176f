"""Run the streaming services together in one process.

One asyncio loop hosts the hdf5_watcher, the ms_processor (conversion lane,
block planner, block lane), the variability_analyzer and the periodic
maintenance (retention, database checkpoint; `services._maintenance`) and the
alert rules (`services.alerts`, every ``alerts.interval_s``); CPU work
goes to a process pool (or any executor passed in). The state database is the only
shared state, so a restart after a crash picks up where the queue says.
SIGTERM/SIGINT stop intake and claiming; running jobs may finish for
``queue.shutdown_grace_s``, then they are stopped and released, and the
process exits. A second signal ends the grace period at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from dsa110_contimg.services._intake import (
    IntakeGate,
    data_directories,
    run_off_loop,
)
from dsa110_contimg.services._pool import (
    ExecutorHolder,
    make_process_pool,
    stop_workers,
)
from dsa110_contimg.services._runner import Clock, JobRunner, utc_now
from dsa110_contimg.state import open_db
from dsa110_contimg.state.writer import cleanup_stale_temporaries, hold_writer
from dsa110_contimg.utils.config import PipelineConfig, config_hash

__all__ = [
    "ALL_SERVICES",
    "StreamSummary",
    "cleanup_stale_temporaries",
    "run_stream",
    "run_stream_async",
]

log = logging.getLogger(__name__)

ALL_SERVICES = ("hdf5_watcher", "ms_processor", "variability_analyzer")


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """What a stream run did before it stopped."""

    n_done: int
    n_failed: int
    released_job_ids: tuple[int, ...]
    duration_s: float


def _audit(config: PipelineConfig) -> list[tuple[str, str]]:
    """Run the start-up product audit on a connection of its own thread."""
    from dsa110_contimg.services._audit import audit_recent_products

    with closing(open_db(Path(config.paths.state_db))) as conn:
        return audit_recent_products(conn, now=utc_now())


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

    Parameters
    ----------
    config : PipelineConfig
        Resolved configuration.
    stop : asyncio.Event
        Set to stop (what the signal handlers do).
    incoming_dir : Path, optional
        Directory the watcher watches; default ``paths.incoming_dir``.
    catalog_path : Path, optional
        Source catalogue for photometry; default ``paths.catalog_path``.
    executor : concurrent.futures.Executor, optional
        Where CPU work runs; default a process pool of
        ``services.max_workers`` (e.g. ``Client(...).get_executor()`` from
        dask.distributed to scale out).
    services : sequence of str
        Which of `ALL_SERVICES` to run.
    force : asyncio.Event, optional
        Set to end the shutdown grace period early.
    clock : callable, optional
        Current UTC time.

    Raises
    ------
    WriterBusyError
        Another writer (a stream, ``process``, ``batch``...) holds this
        state database's writer claim; the message names it.
    """
    from dsa110_contimg.data_ingestion.skymodel import load_catalog
    from dsa110_contimg.services._maintenance import run_maintenance_task
    from dsa110_contimg.services.hdf5_watcher import WatcherService
    from dsa110_contimg.services.hdf5_watcher._service import IO_TIMEOUT_S
    from dsa110_contimg.services.ms_processor import MsProcessor
    from dsa110_contimg.services.variability_analyzer import VariabilityAnalyzer

    unknown = sorted(set(services) - set(ALL_SERVICES))
    if unknown:
        msg = f"unknown services {unknown}; choose from {list(ALL_SERVICES)}"
        raise ValueError(msg)
    t0 = time.perf_counter()
    paths = config.paths
    loop = asyncio.get_running_loop()

    def writer_lost(err: BaseException) -> None:  # renewing thread
        log.error("writer claim lost; stopping", extra={"error": str(err)})
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(stop.set)

    writer_cm = hold_writer(
        Path(paths.state_db), "stream", ttl_s=config.queue.lease_s, on_lost=writer_lost
    )
    writer = writer_cm.__enter__()
    try:
        conn = open_db(Path(paths.state_db))
    except BaseException as err:
        writer_cm.__exit__(type(err), err, err.__traceback__)
        raise
    holder = ExecutorHolder(
        (lambda: executor)
        if executor is not None
        else (lambda: make_process_pool(config.services.max_workers)),
        owned=executor is None,
        recycle_after=config.queue.pool_recycle_jobs,
    )
    released: list[int] = []
    try:
        log.info(
            "stream start",
            extra={
                "services": list(services),
                "environment": config.environment,
                "config_hash": config_hash(config),
                "config": config.model_dump(mode="json"),
            },
        )
        try:  # file-system work off the loop, like every scan
            await asyncio.wait_for(
                asyncio.shield(
                    run_off_loop(
                        functools.partial(
                            cleanup_stale_temporaries, before=time.time()
                        ),
                        config,
                        writer,
                    )
                ),
                timeout=IO_TIMEOUT_S,
            )
        except TimeoutError:
            log.error("stale-temporary clean-up is stuck; going on without it")
        try:  # finished blocks whose products were damaged meanwhile
            redone = await asyncio.wait_for(
                asyncio.shield(run_off_loop(_audit, config)), timeout=IO_TIMEOUT_S
            )
            log.info("product audit done", extra={"n_blocks_requeued": len(redone)})
        except TimeoutError:
            log.error("product audit is stuck; going on without it")
        runner = JobRunner(conn, config.queue, clock=clock)
        gate = IntakeGate(
            conn,
            data_directories(config, incoming_dir),
            min_free_disk_gb=config.watcher.min_free_disk_gb,
        )
        try:  # off the loop: a hung mount must not block start-up signals
            disk = await asyncio.wait_for(
                asyncio.shield(run_off_loop(gate.measure)), timeout=IO_TIMEOUT_S
            )
            gate.publish(disk, clock())
        except TimeoutError:
            log.error("free-disk check is stuck; intake starts open")
        catalog_file = catalog_path or paths.catalog_path
        catalog = load_catalog(Path(catalog_file)) if catalog_file else None
        side_tasks = [
            asyncio.create_task(run_maintenance_task(config, stop, clock=clock))
        ]
        if config.alerts.enabled:
            from dsa110_contimg.services.alerts import build_engine, run_alerts_task

            engine = build_engine(config)  # a bad rule file stops the start
            side_tasks.append(
                asyncio.create_task(
                    run_alerts_task(config, stop, clock=clock, engine=engine)
                )
            )
        if "ms_processor" in services:
            processor = MsProcessor(
                config,
                runner,
                holder,
                catalog=catalog,
                can_convert=lambda: gate.is_open,
            )
            processor.register()
            side_tasks.append(asyncio.create_task(processor.run_planner(stop)))
        if "variability_analyzer" in services:
            VariabilityAnalyzer(config, runner, holder).register()
        if "hdf5_watcher" in services:
            watcher = WatcherService(config, runner, gate, incoming_dir=incoming_dir)
            side_tasks.append(asyncio.create_task(watcher.run(stop)))
        released = await runner.run(
            stop, grace_s=config.queue.shutdown_grace_s, force=force
        )
        for task in side_tasks:
            task.cancel()
        await asyncio.gather(*side_tasks, return_exceptions=True)
        summary = StreamSummary(
            runner.n_done,
            runner.n_failed,
            tuple(released),
            round(time.perf_counter() - t0, 3),
        )
    finally:
        if released and executor is None:
            stop_workers()  # the released jobs' work is still running there
        holder.close(wait=not released)
        conn.close()
        writer_cm.__exit__(*sys.exc_info())  # release the writer claim
    log.info(
        "stream stopped",
        extra={
            "n_done": summary.n_done,
            "n_failed": summary.n_failed,
            "released_job_ids": list(summary.released_job_ids),
            "duration_s": summary.duration_s,
        },
    )
    return summary


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
        Where CPU work runs (see `run_stream_async`).
    services : sequence of str
        Which services to run; all by default.
    handle_signals : bool
        Install SIGTERM/SIGINT handlers (main thread only).

    Returns
    -------
    StreamSummary
    """

    async def main() -> StreamSummary:
        loop = asyncio.get_running_loop()
        stop, force = asyncio.Event(), asyncio.Event()

        def on_signal(name: str) -> None:
            if stop.is_set():
                log.warning("second signal: stopping now", extra={"signal": name})
                force.set()
                return
            log.info("stop requested", extra={"signal": name})
            stop.set()

        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_signal, sig.name)
        bridge = None
        if stop_event is not None:

            async def watch_event() -> None:
                while not stop_event.is_set():
                    await asyncio.sleep(0.2)
                on_signal("stop_event")

            bridge = asyncio.create_task(watch_event())
        try:
            return await run_stream_async(
                config,
                stop=stop,
                force=force,
                incoming_dir=incoming_dir,
                catalog_path=catalog_path,
                executor=executor,
                services=services,
            )
        finally:
            if bridge is not None:
                bridge.cancel()
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    return asyncio.run(main())
