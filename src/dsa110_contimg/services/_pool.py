"""The executor that runs the services' CPU work, and its failure handling.

The default is a local process pool (``spawn`` context,
`dsa110_contimg.pipeline._pool.make_process_pool`, re-exported here). Its
workers send their log records to the service's handlers, ignore
SIGINT (the service coordinates shutdown) and, on Linux, ask the kernel to
kill them when the service process dies, so a ``kill -9`` of the service
leaves no worker behind. Any `concurrent.futures.Executor` can be passed
instead, e.g. ``dask.distributed.Client(...).get_executor()``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from dsa110_contimg._optional import require
from dsa110_contimg.pipeline._pool import make_process_pool

__all__ = ["ExecutorHolder", "CapturingExecutor", "make_process_pool", "stop_workers"]

log = logging.getLogger(__name__)


def stop_workers(timeout_s: float = 3.0) -> int:
    """Terminate this process's pool workers and their children (e.g. WSClean).

    Returns
    -------
    int
        Number of processes stopped.
    """
    psutil = require("psutil", "services")

    me = psutil.Process()
    victims = []
    for child in me.children(recursive=False):
        try:
            if "spawn_main" not in " ".join(child.cmdline()):
                continue  # e.g. multiprocessing's resource tracker
            victims += [*child.children(recursive=True), child]
        except psutil.Error:
            continue
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(victims, timeout=timeout_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    if victims:
        log.info("pool workers stopped", extra={"n_processes": len(victims)})
    return len(victims)


class ExecutorHolder:
    """Lend the current executor to jobs; replace a pool that broke or aged.

    Each job holds a `lease` on one executor for its whole run, so a block's
    later calls (the mosaic after the images) go to the same pool. After
    ``recycle_after`` leases the next job gets a fresh pool, and the old one
    is shut down once its last job returns: worker processes are replaced
    regularly, which bounds the memory that long runs leak in libraries
    (Python 3.11's ``max_tasks_per_child`` can deadlock, cpython#115634).

    Parameters
    ----------
    factory : callable
        Makes a new executor.
    owned : bool
        Whether this holder shuts executors down and may replace them (False
        for one passed in by the caller).
    recycle_after : int
        Leases per pool before a fresh one is made; 0 = never.
    """

    def __init__(
        self,
        factory: Callable[[], Executor],
        *,
        owned: bool = True,
        recycle_after: int = 0,
    ) -> None:
        self._factory = factory
        self._owned = owned
        self._recycle_after = recycle_after if owned else 0
        self._executor: Executor | None = None
        self._n_leases = 0
        self._users: dict[int, int] = {}
        self._retiring: dict[int, Executor] = {}
        self._lock = threading.Lock()

    def get(self) -> Executor:
        """Return the current executor, making it on first use."""
        with self._lock:
            return self._current()

    def _current(self) -> Executor:
        if self._executor is None:
            self._executor = self._factory()
            self._n_leases = 0
        return self._executor

    @contextmanager
    def lease(self) -> Iterator[Executor]:
        """Lend the current executor for one job."""
        with self._lock:
            executor = self._current()
            key = id(executor)
            self._users[key] = self._users.get(key, 0) + 1
            self._n_leases += 1
            if self._recycle_after and self._n_leases >= self._recycle_after:
                self._retire(executor)
        try:
            yield executor
        finally:
            with self._lock:
                self._users[key] -= 1
                idle = self._users[key] == 0
                if idle:
                    del self._users[key]
                old = self._retiring.pop(key, None) if idle else None
            if old is not None:
                old.shutdown(wait=False)
                log.info("worker pool retired")

    def _retire(self, executor: Executor) -> None:
        """Stop lending ``executor``; shut it down when its last job returns."""
        if self._executor is executor:
            self._executor = None
        self._retiring[id(executor)] = executor

    def replace_if_broken(self, error: BaseException) -> bool:
        """Discard the pool when ``error`` says it broke; return whether it did."""
        if not isinstance(error, BrokenProcessPool) or not self._owned:
            return False
        with self._lock:
            old, self._executor = self._executor, None
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        log.warning("process pool broke; a new one will be started")
        return True

    def close(self, *, wait: bool = True) -> None:
        """Shut down the executors this holder owns."""
        with self._lock:
            old = [e for e in (self._executor, *self._retiring.values()) if e]
            self._executor = None
            self._retiring.clear()
        if self._owned:
            for executor in old:
                executor.shutdown(wait=wait, cancel_futures=True)


class CapturingExecutor(Executor):
    """Pass work to another executor and keep each call's exception.

    `PipelineOrchestrator.process_block` reports a failing MS as a message;
    the block job needs the exception itself (its class says whether a retry
    can help), so the block's calls go through this wrapper, keyed by their
    first argument (the MS path).
    """

    def __init__(self, inner: Executor) -> None:
        self._inner = inner
        self.errors: dict[str, BaseException] = {}

    def submit(self, fn, /, *args, **kwargs) -> Future:
        """Submit to the wrapped executor, recording the exception on failure."""
        return self._recorded(self._inner.submit(fn, *args, **kwargs), fn, args)

    def submit_stage(self, stage: str, product_id: str, fn, /, *args) -> Future:
        """Submit a stage's task (keyed on a Dask backend), recording failures."""
        inner = getattr(self._inner, "submit_stage", None)
        if inner is None:
            future = self._inner.submit(fn, *args)
        else:
            future = inner(stage, product_id, fn, *args)
        return self._recorded(future, fn, args)

    def _recorded(self, future: Future, fn, args: tuple) -> Future:
        key = str(args[0]) if args else repr(fn)

        def record(done: Future) -> None:
            if not done.cancelled() and done.exception() is not None:
                self.errors[key] = done.exception()

        future.add_done_callback(record)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Do nothing: the wrapped executor belongs to someone else."""
