"""Run the streaming services together in one process.

One asyncio loop hosts the hdf5_watcher, the ms_processor (conversion lane,
block planner, block lane), the variability_analyzer and the periodic
maintenance (retention, database checkpoint; `services._maintenance`); CPU work
goes to a process pool (or any executor passed in). The state database is the only
shared state, so a restart after a crash picks up where the queue says.
SIGTERM/SIGINT stop intake and claiming; running jobs may finish for
``queue.shutdown_grace_s``, then they are stopped and released, and the
process exits. A second signal ends the grace period at once.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from dsa110_contimg._optional import require
from dsa110_contimg.pipeline.exceptions import StateError
from dsa110_contimg.services._intake import IntakeGate, run_off_loop
from dsa110_contimg.services._pool import (
    ExecutorHolder,
    make_process_pool,
    stop_workers,
)
from dsa110_contimg.services._runner import Clock, JobRunner, utc_now
from dsa110_contimg.state import open_db
from dsa110_contimg.utils.config_loader import PipelineConfig, config_hash
from dsa110_contimg.utils.storage import temporary_writer_pid

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


class _StreamLock:
    """One stream per state database: an exclusive ``flock`` on a lock file."""

    def __init__(self, state_db: Path) -> None:
        self.path = Path(f"{state_db}.stream.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            msg = (
                f"another stream (pid {holder}) is using {self.path.stem}; stop it "
                "first, or give this one its own paths.state_db"
            )
            raise StateError(msg) from err
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _pid_alive(pid: int) -> bool:
    psutil = require("psutil", "services")

    return pid != os.getpid() and psutil.pid_exists(pid)


def _audit(config: PipelineConfig) -> list[tuple[str, str]]:
    """Run the start-up product audit on a connection of its own thread."""
    from dsa110_contimg.services._audit import audit_recent_products

    with closing(open_db(Path(config.paths.state_db))) as conn:
        return audit_recent_products(conn, now=utc_now())


def cleanup_stale_temporaries(config: PipelineConfig) -> list[Path]:
    """Remove temporary products left by killed processes.

    Conversion and imaging write under names tagged with the writer's pid
    (``.<ms>.tmp-<pid>``, ``.tmp-<prefix>-<pid>``) and rename on success; a
    temporary whose writer no longer runs is debris. Untagged temporaries
    (``.<name>.tmp``, older versions) are removed too: the caller holds the
    stream lock, so no block of this database is writing one. Unique
    temporaries (``.<name>.tmp-<pid>-<random>``, `utils.storage.temporary_path`)
    are removed when their writer no longer runs.
    """
    paths = config.paths
    removed = []
    rules = (
        (Path(paths.images_dir), ".tmp-*", re.compile(r"-(\d+)$")),
        (Path(paths.ms_stage1_dir), ".*.tmp-*", re.compile(r"\.tmp-(\d+)$")),
    )
    for directory, pattern, pid_re in rules:
        for path in directory.glob(pattern):
            match = pid_re.search(path.name)
            if match is None or _pid_alive(int(match[1])):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    product_dirs = (
        paths.products_dir,
        paths.mosaics_dir,
        paths.images_dir,
        paths.cal_tables_dir,
    )
    for directory in product_dirs:
        for path in Path(directory).glob(".*.tmp"):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
        # unique temporaries (utils.storage.temporary_path) of dead writers
        for path in Path(directory).glob(".*.tmp-*"):
            pid = temporary_writer_pid(path)
            if pid is None or _pid_alive(pid):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.warning(
            "stale temporaries removed",
            extra={"n_removed": len(removed), "paths": [str(p) for p in removed]},
        )
    return removed


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
    StateError
        Another stream holds this state database.
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
    lock = _StreamLock(Path(paths.state_db))
    lock.acquire()
    try:
        conn = open_db(Path(paths.state_db))
    except BaseException:
        lock.release()
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
                asyncio.shield(run_off_loop(cleanup_stale_temporaries, config)),
                timeout=IO_TIMEOUT_S,
            )
        except TimeoutError:
            log.error("stale-temporary clean-up is stuck; going on without it")
        try:  # finished blocks whose products were damaged meanwhile
            await asyncio.wait_for(
                asyncio.shield(run_off_loop(_audit, config)), timeout=IO_TIMEOUT_S
            )
        except TimeoutError:
            log.error("product audit is stuck; going on without it")
        runner = JobRunner(conn, config.queue, clock=clock)
        gate = IntakeGate(
            conn,
            [
                Path(incoming_dir or paths.incoming_dir),
                Path(paths.ms_stage1_dir),
                Path(paths.images_dir),
                Path(paths.products_dir),
            ],
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
        lock.release()
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
