"""The service host: run any of the streaming services in one process.

One asyncio loop hosts the chosen services: the hdf5_watcher, the
ms_processor (conversion lane, block planner, block lane, and with it the
start-up clean-up, the product audit, the periodic maintenance of
`services._maintenance` and the alert rules of `services.alerts`, every
``alerts.interval_s``) and the variability_analyzer; CPU work goes to a
process pool (or any executor passed in). The state database is the only
shared state, so a restart after a crash picks up where the queue says, and
the services may run in separate processes, or on separate hosts, on one
database: the host takes the writer claim of only its services
(`state.writer.hold_writer`), so a second instance of a service is refused
and every job is claimed by exactly one runner (`state.jobs.claim_job`).

SIGTERM/SIGINT stop intake and claiming; running jobs may finish for
``queue.shutdown_grace_s``, then they are stopped and released, and the
process exits. A second signal ends the grace period at once.

`run_services` is what each service's ``run(config, *, stop_event)`` and
`dsa110_contimg.services.run_stream` (all of them) call. The services'
own modules never import this one.
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

from dsa110_contimg.pipeline._execution import make_executor
from dsa110_contimg.services._intake import (
    IntakeGate,
    data_directories,
    run_off_loop,
)
from dsa110_contimg.services._pool import (
    ExecutorHolder,
    stop_workers,
)
from dsa110_contimg.services._runner import Clock, JobRunner, utc_now
from dsa110_contimg.state import open_db
from dsa110_contimg.state.writer import (
    DATA_DIRECTORIES_WRITER,
    SERVICE_NAMES,
    cleanup_stale_temporaries,
    hold_writer,
)
from dsa110_contimg.utils.config import PipelineConfig, config_hash

__all__ = [
    "ALL_SERVICES",
    "StreamSummary",
    "host_command",
    "run_services",
    "run_services_async",
]

log = logging.getLogger(__name__)

ALL_SERVICES = SERVICE_NAMES
"""Every streaming service, in pipeline order."""


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """What a run of the services did before it stopped."""

    n_done: int
    n_failed: int
    released_job_ids: tuple[int, ...]
    duration_s: float


def host_command(services: Sequence[str]) -> str:
    """Name a host of ``services`` in its writer claim: ``stream`` for all."""
    if set(services) == set(ALL_SERVICES):
        return "stream"
    return "+".join(s for s in ALL_SERVICES if s in services)


def _check_services(services: Sequence[str]) -> tuple[str, ...]:
    unknown = sorted(set(services) - set(ALL_SERVICES))
    if unknown or not services:
        what = f"unknown services {unknown}" if unknown else "no services"
        msg = f"{what}; choose from {list(ALL_SERVICES)}"
        raise ValueError(msg)
    return tuple(s for s in ALL_SERVICES if s in services)


def _audit(config: PipelineConfig) -> list[tuple[str, str]]:
    """Run the start-up product and light-curve store audits (own connection).

    Returns the blocks requeued, then the light-curve ingests requeued.
    """
    from dsa110_contimg.services._audit import (
        audit_lightcurve_store,
        audit_recent_products,
    )

    with closing(open_db(config.state_target)) as conn:
        blocks = audit_recent_products(conn, now=utc_now())
        ingests = audit_lightcurve_store(
            conn,
            config.variability.store_dir,
            now=utc_now(),
            blocks_redone=[b for b, _ in blocks],
        )
        return blocks + ingests


async def _guard_disk(
    gate: IntakeGate, stop: asyncio.Event, period_s: float, clock: Clock
) -> None:
    """Keep ``gate`` measured when no watcher in this process scans for it."""
    from dsa110_contimg.services.hdf5_watcher._service import IO_TIMEOUT_S

    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), period_s)
        if stop.is_set():
            return
        try:
            disk = await asyncio.wait_for(
                asyncio.shield(run_off_loop(gate.measure)), timeout=IO_TIMEOUT_S
            )
        except TimeoutError:
            log.error("free-disk check is stuck; conversion keeps its last state")
            continue
        except OSError as err:
            log.error("free-disk check failed", extra={"error": str(err)})
            continue
        gate.publish(disk, clock())


async def _start_up(config: PipelineConfig, writer: object) -> None:
    """Clean killed writers' temporaries and audit finished blocks (ms_processor)."""
    from dsa110_contimg.services.hdf5_watcher._service import IO_TIMEOUT_S

    try:  # file-system work off the loop, like every scan
        await asyncio.wait_for(
            asyncio.shield(
                run_off_loop(
                    functools.partial(cleanup_stale_temporaries, before=time.time()),
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
        log.info("product audit done", extra={"n_jobs_requeued": len(redone)})
    except TimeoutError:
        log.error("product audit is stuck; going on without it")


async def run_services_async(
    config: PipelineConfig,
    services: Sequence[str] = ALL_SERVICES,
    *,
    stop: asyncio.Event,
    incoming_dir: Path | None = None,
    catalog_path: Path | None = None,
    executor: Executor | None = None,
    force: asyncio.Event | None = None,
    clock: Clock = utc_now,
) -> StreamSummary:
    """Run ``services`` in the running event loop until ``stop`` is set.

    Parameters
    ----------
    config : PipelineConfig
        Resolved configuration.
    services : sequence of str
        Which of `ALL_SERVICES` to run; the others may run in other
        processes on the same state database.
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
    force : asyncio.Event, optional
        Set to end the shutdown grace period early.
    clock : callable, optional
        Current UTC time.

    Raises
    ------
    WriterBusyError
        Another writer holds a part of this state database's writer claim
        that these services need (a batch ``process``, a stream, or one of
        ``services`` running elsewhere); the message names it.
    ClaimLostError
        The writer claim was taken over while the services ran (they stop).
    ValueError
        ``services`` is empty or names an unknown service.
    """
    from dsa110_contimg.data_ingestion.skymodel import load_catalog
    from dsa110_contimg.services._maintenance import run_maintenance_task
    from dsa110_contimg.services.hdf5_watcher._service import (
        IO_TIMEOUT_S,
        WatcherService,
    )
    from dsa110_contimg.services.ms_processor._service import MsProcessor
    from dsa110_contimg.services.variability_analyzer._service import (
        VariabilityAnalyzer,
    )

    services = _check_services(services)
    t0 = time.perf_counter()
    paths = config.paths
    loop = asyncio.get_running_loop()

    def writer_lost(err: BaseException) -> None:  # renewing thread
        log.error("writer claim lost; stopping", extra={"error": str(err)})
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(stop.set)

    writer_cm = hold_writer(
        config.state_target,
        host_command(services),
        services=services,
        ttl_s=config.queue.lease_s,
        on_lost=writer_lost,
    )
    writer = writer_cm.__enter__()
    try:
        conn = open_db(config.state_target)
    except BaseException as err:
        writer_cm.__exit__(type(err), err, err.__traceback__)
        raise
    holder = ExecutorHolder(
        (lambda: executor) if executor is not None else (lambda: make_executor(config)),
        owned=executor is None,
        # Dask workers are recycled by their own --lifetime
        recycle_after=0
        if config.execution.backend == "dask"
        else config.queue.pool_recycle_jobs,
    )
    processes_data = DATA_DIRECTORIES_WRITER in services
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
        if processes_data:
            await _start_up(config, writer)
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
        side_tasks = []
        if processes_data:
            side_tasks.append(
                asyncio.create_task(run_maintenance_task(config, stop, clock=clock))
            )
            if (
                config.alerts.enabled
            ):  # with the maintenance: one evaluator per database
                from dsa110_contimg.services.alerts import build_engine, run_alerts_task

                engine = build_engine(config)  # a bad rule file stops the start
                side_tasks.append(
                    asyncio.create_task(
                        run_alerts_task(config, stop, clock=clock, engine=engine)
                    )
                )
            catalog_file = catalog_path or paths.catalog_path
            catalog = load_catalog(Path(catalog_file)) if catalog_file else None
            processor = MsProcessor(
                config,
                runner,
                holder,
                catalog=catalog,
                can_convert=lambda: gate.is_open,
            )
            processor.register()
            side_tasks.append(asyncio.create_task(processor.run_planner(stop)))
            if "hdf5_watcher" not in services:  # nobody else measures the disk here
                side_tasks.append(
                    asyncio.create_task(
                        _guard_disk(gate, stop, config.watcher.scan_interval_s, clock)
                    )
                )
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
            "services": list(services),
            "n_done": summary.n_done,
            "n_failed": summary.n_failed,
            "released_job_ids": list(summary.released_job_ids),
            "duration_s": summary.duration_s,
        },
    )
    return summary


def run_services(
    config: PipelineConfig,
    services: Sequence[str] = ALL_SERVICES,
    *,
    stop_event: threading.Event | None = None,
    incoming_dir: Path | None = None,
    catalog_path: Path | None = None,
    executor: Executor | None = None,
    handle_signals: bool = True,
) -> StreamSummary:
    """Run ``services`` until SIGTERM/SIGINT or ``stop_event``.

    Parameters
    ----------
    config : PipelineConfig
        Resolved configuration.
    services : sequence of str
        Which of `ALL_SERVICES` to run (all by default); the others may run
        in other processes on the same state database.
    stop_event : threading.Event, optional
        Set from another thread to stop, like a signal.
    incoming_dir : Path, optional
        Directory to watch; default ``paths.incoming_dir``.
    catalog_path : Path, optional
        Source catalogue; default ``paths.catalog_path``.
    executor : concurrent.futures.Executor, optional
        Where CPU work runs (see `run_services_async`).
    handle_signals : bool
        Install SIGTERM/SIGINT handlers (main thread only).

    Returns
    -------
    StreamSummary

    Raises
    ------
    WriterBusyError
        One of ``services`` (or a whole-pipeline writer) already runs on
        this state database; the message names its host and pid.
    """
    services = _check_services(services)

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
            return await run_services_async(
                config,
                services,
                stop=stop,
                force=force,
                incoming_dir=incoming_dir,
                catalog_path=catalog_path,
                executor=executor,
            )
        finally:
            if bridge is not None:
                bridge.cancel()
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    return asyncio.run(main())
