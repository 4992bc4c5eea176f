"""Claim jobs from the durable queue and run them, with leases and heartbeats.

A `JobRunner` owns the process's one writable state-database connection
(the single writer) and is used only from the event loop's thread. Each
*lane* runs one set of job kinds with bounded concurrency; a slot claims a
job, runs the lane's handler while a heartbeat task renews the lease, and
records the outcome through the transitions of `dsa110_contimg.state.jobs`.
On stop, slots claim nothing new; running jobs may finish for the grace
period, after which they are cancelled and released back to ``pending``.
A job whose lease is lost (cancelled by an operator, or reclaimed after it
expired) is stopped at the next heartbeat: its handler is cancelled, so no
later step of it starts, and nothing is recorded for it (its result is
discarded; the queue already belongs to someone else). A pool call already
running finishes in its worker; its result is dropped.

An idle slot waits for work: on a queue with ``waiter`` (the ``redis``
backend) it blocks on the server in a thread of the runner's own (a
``XREADGROUP ... BLOCK`` bounded by the queue's ``block_s``) and claims as
soon as an entry arrives; otherwise (``sqlite``) it polls every
``queue.poll_interval_s``. Either way a `wake` (work enqueued by this
process, shutdown) ends the wait at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dsa110_contimg._optional import require
from dsa110_contimg.exceptions import PipelineError, StateError
from dsa110_contimg.pipeline._execution import job_priority
from dsa110_contimg.state.db import Connection, DatabaseError
from dsa110_contimg.state.jobs import Job, JobSpec
from dsa110_contimg.state.queue import JobQueue, open_queue
from dsa110_contimg.utils.config import QueueConfig
from dsa110_contimg.utils.logging import bind_context

__all__ = [
    "Clock",
    "JobOutcome",
    "JobRunner",
    "make_worker_id",
    "owner_is_gone",
    "utc_now",
]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Return the current UTC time (the services' default clock)."""
    return datetime.now(UTC)


def make_worker_id() -> str:
    """Return this process's lease owner id, ``<host>:<pid>:<random>``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# worker ids of the runners running in this process (several service hosts may)
_LIVE_WORKERS: set[str] = set()


def _drop_result(fut: asyncio.Future[object]) -> None:
    """Retrieve an abandoned wait's outcome (no 'never retrieved' warning)."""
    if not fut.cancelled():
        fut.exception()


def owner_is_gone(owner: str, *, me: str) -> bool:
    """Return whether a lease owner on this host is a process that no longer runs.

    Owners on other hosts are never judged gone here (their leases expire).
    An owner with this process's pid is gone unless one of its runners runs
    now (else it is an earlier incarnation that had our pid).
    """
    psutil = require("psutil", "services")

    host, _, rest = owner.partition(":")
    pid_text, _, token = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit() or owner == me:
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return owner not in _LIVE_WORKERS
    return not psutil.pid_exists(pid)


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """What a handler returns: the job's result and the jobs its output feeds."""

    result: dict[str, object] = field(default_factory=dict)
    follow_ups: tuple[JobSpec, ...] = ()


Handler = Callable[[Job], Awaitable[JobOutcome]]


@dataclass(slots=True)
class _Lane:
    name: str
    kinds: tuple[str, ...]
    handler: Handler
    concurrency: int
    can_claim: Callable[[], bool]


class JobRunner:
    """Run queued jobs of several kinds in one event loop.

    Parameters
    ----------
    conn : Connection
        Writable, migrated connection, used only from the loop's thread.
    cfg : QueueConfig
        The ``queue`` section (leases, retries, polling).
    worker_id : str, optional
        Lease owner name; default `make_worker_id`.
    clock : callable, optional
        Returns the current UTC time.
    queue : JobQueue, optional
        The queue backend; default `state.queue.open_queue` of ``cfg``
        (``queue.backend``) on ``conn``.
    """

    def __init__(
        self,
        conn: Connection,
        cfg: QueueConfig,
        *,
        worker_id: str | None = None,
        clock: Clock = utc_now,
        queue: JobQueue | None = None,
    ) -> None:
        self.conn = conn
        self.queue = queue if queue is not None else open_queue(cfg, conn)
        self.cfg = cfg
        self.worker_id = worker_id or make_worker_id()
        self.clock = clock
        self._lanes: list[_Lane] = []
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._lease_lost: set[int] = set()
        self.n_done = 0
        self.n_failed = 0

    # -- producers ------------------------------------------------------------
    def enqueue(
        self, spec: JobSpec, *, quarantine_reason: str | None = None
    ) -> tuple[Job, bool]:
        """Enqueue ``spec`` once (see `JobQueue.enqueue`) and wake idle slots."""
        job, created = self.queue.enqueue(
            spec,
            now=self.clock(),
            max_attempts=self.cfg.max_attempts,
            quarantine_reason=quarantine_reason,
        )
        if created:
            log.info(
                "job enqueued",
                extra={
                    "job_id": job.id,
                    "kind": job.kind,
                    "key": job.key,
                    "state": job.state,
                },
            )
            self.wake()
        return job, created

    def wake(self) -> None:
        """Let idle slots look for work now instead of at their next poll."""
        self._wake.set()
        self._wake.clear()

    def add_lane(
        self,
        name: str,
        kinds: Sequence[str],
        handler: Handler,
        *,
        concurrency: int,
        can_claim: Callable[[], bool] | None = None,
    ) -> None:
        """Run jobs of ``kinds`` with ``handler``, at most ``concurrency`` at once."""
        if concurrency < 1:
            msg = f"lane {name}: concurrency must be >= 1, got {concurrency}"
            raise ValueError(msg)
        self._lanes.append(
            _Lane(name, tuple(kinds), handler, concurrency, can_claim or (lambda: True))
        )

    @property
    def n_running(self) -> int:
        """Number of jobs this runner is executing now."""
        return len(self._running)

    # -- main loop ------------------------------------------------------------
    async def run(
        self,
        stop: asyncio.Event,
        *,
        grace_s: float,
        force: asyncio.Event | None = None,
    ) -> list[int]:
        """Run every lane until ``stop`` is set, then drain.

        Parameters
        ----------
        stop : asyncio.Event
            Set to stop claiming jobs.
        grace_s : float
            How long running jobs may still take after ``stop`` (seconds).
        force : asyncio.Event, optional
            Set to end the grace period early (a second signal).

        Returns
        -------
        list of int
            Ids of the jobs released because they outlived the grace period.
        """
        _LIVE_WORKERS.add(self.worker_id)
        try:
            return await self._run(stop, grace_s=grace_s, force=force)
        finally:
            _LIVE_WORKERS.discard(self.worker_id)

    async def _run(
        self, stop: asyncio.Event, *, grace_s: float, force: asyncio.Event | None
    ) -> list[int]:
        recovered = self.queue.reclaim_orphaned(
            now=self.clock(),
            is_orphaned=lambda owner: owner_is_gone(owner, me=self.worker_id),
        )
        for job in recovered:
            log.warning(
                "job of a dead worker reclaimed",
                extra={"job_id": job.id, "kind": job.kind, "key": job.key},
            )
        n_slots = sum(lane.concurrency for lane in self._lanes)
        self._wait_pool = ThreadPoolExecutor(
            max_workers=max(1, n_slots), thread_name_prefix="queue-wait"
        )
        slots = [
            asyncio.create_task(self._slot(lane, stop), name=f"{lane.name}-{i}")
            for lane in self._lanes
            for i in range(lane.concurrency)
        ]
        housekeeping = asyncio.create_task(self._reclaim_loop(stop))
        try:
            return await self._until_stopped(stop, slots, housekeeping, grace_s, force)
        finally:
            self._wait_pool.shutdown(wait=False, cancel_futures=True)

    async def _until_stopped(
        self,
        stop: asyncio.Event,
        slots: list[asyncio.Task[None]],
        housekeeping: asyncio.Task[None],
        grace_s: float,
        force: asyncio.Event | None,
    ) -> list[int]:
        await stop.wait()
        self.wake()
        interrupt = getattr(self.queue, "interrupt_waits", None)
        if interrupt is not None:  # blocked reads end now, not after block_s
            interrupt()
        released: list[int] = []
        if self._running:
            log.info(
                "stopping: waiting for running jobs",
                extra={"n_running": len(self._running), "grace_s": grace_s},
            )
            pending = await self._drain(grace_s, force)
            for task in pending:
                task.cancel()
            released = [jid for jid, t in list(self._running.items()) if t in pending]
            if pending:
                await asyncio.wait(pending)
        for task in [*slots, housekeeping]:
            task.cancel()
        await asyncio.gather(*slots, housekeeping, return_exceptions=True)
        return released

    async def _drain(
        self, grace_s: float, force: asyncio.Event | None
    ) -> set[asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        forced = asyncio.ensure_future(force.wait()) if force is not None else None
        try:
            while loop.time() < deadline:
                waiting: list[asyncio.Future[object]] = [
                    t for t in self._running.values() if not t.done()
                ]
                if not waiting:
                    break
                if forced is not None:
                    if forced.done():
                        break
                    waiting.append(forced)
                await asyncio.wait(
                    waiting,
                    timeout=max(0.0, deadline - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
        finally:
            if forced is not None:
                forced.cancel()
        return {t for t in self._running.values() if not t.done()}

    async def _idle(self, lane: _Lane, stop: asyncio.Event, *, claimable: bool) -> None:
        """Wait until the slot should claim again (work, a wake, or its poll)."""
        make_waiter = getattr(self.queue, "waiter", None)
        if make_waiter is None or not claimable:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.cfg.poll_interval_s)
            return
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            waiter = make_waiter(worker=self.worker_id, kinds=lane.kinds)
            blocked = loop.run_in_executor(self._wait_pool, waiter.wait)
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait(
                    {blocked, woken}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                woken.cancel()
            if not blocked.done():
                waiter.cancel()  # what it reads now goes back to its stream
                blocked.add_done_callback(_drop_result)
                return
            if blocked.exception() is not None or blocked.result():
                return

    async def _slot(self, lane: _Lane, stop: asyncio.Event) -> None:
        while not stop.is_set():
            job = None
            if lane.can_claim():
                try:
                    job = self.queue.claim(
                        worker=self.worker_id,
                        now=self.clock(),
                        lease_s=self.cfg.lease_s,
                        kinds=lane.kinds,
                    )
                except DatabaseError as err:  # e.g. locked beyond the busy timeout
                    log.error(
                        "claim failed", extra={"lane": lane.name, "error": str(err)}
                    )
            if job is None:
                await self._idle(lane, stop, claimable=lane.can_claim())
                continue
            task = asyncio.create_task(self._execute(job, lane.handler))
            self._running[job.id] = task
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.done():  # the slot itself was cancelled: let it drain
                    await asyncio.wait([task])
                    raise
            finally:
                self._running.pop(job.id, None)

    async def _reclaim_loop(self, stop: asyncio.Event) -> None:
        period_s = max(0.5, self.cfg.lease_s / 4)
        while not stop.is_set():
            try:
                expired = self.queue.reclaim_expired(now=self.clock())
            except DatabaseError as err:
                log.error("reclaim failed", extra={"error": str(err)})
                expired = []
            for job in expired:
                log.warning(
                    "job lease expired, reclaimed",
                    extra={"job_id": job.id, "kind": job.kind, "state": job.state},
                )
                self.wake()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period_s)

    async def _heartbeat(self, job: Job, work: asyncio.Future[JobOutcome]) -> None:
        while True:
            await asyncio.sleep(self.cfg.heartbeat_interval_s)
            try:
                self.queue.heartbeat(
                    job.id,
                    worker=self.worker_id,
                    now=self.clock(),
                    lease_s=self.cfg.lease_s,
                )
            except StateError as err:
                log.error(
                    "lease lost: job stopped, its output discarded",
                    extra={"job_id": job.id, "error": str(err)},
                )
                self._lease_lost.add(job.id)
                work.cancel()
                return
            except DatabaseError as err:  # try again at the next beat
                log.error("heartbeat failed", extra={"error": str(err)})

    async def _execute(self, job: Job, handler: Handler) -> None:
        fields = {"job_id": job.id, "stage": job.kind, "key": job.key}
        # the job's priority travels with its work to the execution backend
        with bind_context(**fields), job_priority(job.priority):
            log.info("job start", extra={"attempt": job.attempts})
            work = asyncio.ensure_future(handler(job))
            beat = asyncio.create_task(self._heartbeat(job, work))
            try:
                outcome = await work
            except asyncio.CancelledError:
                beat.cancel()
                lost = job.id in self._lease_lost
                self._lease_lost.discard(job.id)
                me = asyncio.current_task()
                if lost and (me is None or not me.cancelling()):
                    self.queue.abandon(job.id)
                    return  # the lease is gone: no result, no release
                self._release(job, "stopped by shutdown after the grace period")
                raise
            except Exception as err:  # routed by class: retry, fail or quarantine
                beat.cancel()
                self._fail(job, err)
            else:
                beat.cancel()
                self._complete(job, outcome)

    def _complete(self, job: Job, outcome: JobOutcome) -> None:
        try:
            self.queue.complete(
                job.id,
                worker=self.worker_id,
                now=self.clock(),
                result=outcome.result,
                follow_ups=outcome.follow_ups,
                max_attempts=self.cfg.max_attempts,
            )
        except (StateError, DatabaseError) as err:  # lease lost: it will rerun
            log.error("job result discarded", extra={"error": str(err)})
            return
        self.n_done += 1
        log.info("job done", extra={"n_follow_ups": len(outcome.follow_ups)})
        if outcome.follow_ups:
            self.wake()

    def _fail(self, job: Job, err: Exception) -> None:
        if not isinstance(err, PipelineError | OSError):
            log.error("unexpected error in job", exc_info=err)
        try:
            after = self.queue.fail(
                job.id,
                err,
                worker=self.worker_id,
                now=self.clock(),
                backoff_base_s=self.cfg.backoff_base_s,
                backoff_max_s=self.cfg.backoff_max_s,
            )
        except (StateError, DatabaseError) as state_err:
            log.error("job failure discarded", extra={"error": str(state_err)})
            return
        self.n_failed += after.state != "pending"
        level = logging.WARNING if after.state == "pending" else logging.ERROR
        log.log(
            level,
            "job failed",
            extra={
                "state": after.state,
                "error_class": type(err).__name__,
                "error": str(err)[:500],
                "not_before_at": after.not_before_at,
            },
        )

    def _release(self, job: Job, reason: str) -> None:
        try:
            self.queue.release(
                job.id,
                worker=self.worker_id,
                now=self.clock(),
                reason=reason,
            )
            log.warning("job released", extra={"reason": reason})
        except (StateError, DatabaseError) as err:  # its lease will expire
            log.error("job release failed", extra={"error": str(err)})
