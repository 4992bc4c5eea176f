"""The execution backend: where the pipeline's CPU work runs.

``execution.backend: local`` (the default) is the process pool of
`dsa110_contimg.pipeline._pool`. ``execution.backend: dask`` submits each
stage's work as a task to a Dask cluster (`distributed.Client`) through
:class:`DaskExecutor`, a `concurrent.futures.Executor`, so callers that use
``loop.run_in_executor`` keep working. :func:`run_stage` is the one call the
orchestrator makes per unit of work; on the Dask backend it gives the task

- the deterministic key ``f"{stage}-{product_id}"`` (ids from
  `dsa110_contimg.products`): a resubmission of a key whose task is running
  (or finished and still held: the ``execution.keep_results`` most recent)
  joins it (a cache hit), it does not run again. Finished work is otherwise
  reused through its products on disk (imaging skips an existing image), so
  the default holds no finished results: a redo with new inputs (a block's
  mosaic after late data, a reconverted group) must run, not be served the
  old result;
- the stage's resources (``execution.resources``: ``CASA=1`` for anything that
  imports casatools, which is not thread-safe, ``IMAGER_SLOTS`` for the
  imager, ``MEMORY_GB``), so a worker runs no more of them than it declares;
- the priority of the job it serves (:func:`job_priority`; live data before
  backfill): Dask runs higher priorities first, the job queue lower first.

A task whose worker dies is rerun on another worker by the scheduler (up to
``distributed.scheduler.allowed-failures`` times); products are published by
rename, so a killed attempt leaves no half-written product.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any

from dsa110_contimg.exceptions import ConfigError

if TYPE_CHECKING:
    from dsa110_contimg.utils.config import ExecutionConfig, PipelineConfig

__all__ = [
    "DaskExecutor",
    "job_priority",
    "make_executor",
    "run_stage",
    "stage_key",
]

log = logging.getLogger(__name__)

_PRIORITY: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "dsa110_job_priority", default=None
)


@contextlib.contextmanager
def job_priority(priority: int) -> Iterator[None]:
    """Submit the work started inside this block with a job's ``priority``.

    Parameters
    ----------
    priority : int
        The job queue's priority (lower runs first: live before backfill).
    """
    token = _PRIORITY.set(priority)
    try:
        yield
    finally:
        _PRIORITY.reset(token)


def stage_key(stage: str, product_id: str) -> str:
    """Return the Dask key of a stage's task on one product."""
    return f"{stage}-{product_id}"


def make_executor(config: PipelineConfig) -> Executor:
    """Return the executor ``config.execution`` names.

    Raises
    ------
    ConfigError
        The Dask backend is chosen but ``distributed`` is not installed or the
        scheduler cannot be reached.
    """
    if config.execution.backend == "dask":
        return DaskExecutor(config.execution)
    from dsa110_contimg.pipeline._pool import make_process_pool

    return make_process_pool(config.services.max_workers)


async def run_stage(
    executor: Executor,
    stage: str,
    product_id: str,
    fn: Callable[..., Any],
    *args: object,
) -> Any:
    """Run ``fn(*args)`` for ``stage`` on ``product_id`` and return its result."""
    submit = getattr(executor, "submit_stage", None)
    if submit is not None:  # DaskExecutor or a wrapper of one
        return await asyncio.wrap_future(submit(stage, product_id, fn, *args))
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, fn, *args)


class DaskExecutor(Executor):
    """A `concurrent.futures.Executor` on a Dask cluster with stage keys.

    Parameters
    ----------
    settings : ExecutionConfig
        The ``execution`` section: scheduler address, resources per stage,
        retries, results held for cache hits.
    client : distributed.Client, optional
        A client to use instead of connecting to ``settings.scheduler_address``
        (closed by :meth:`shutdown` only when this executor made it).
    """

    def __init__(self, settings: ExecutionConfig, client: Any = None) -> None:
        try:
            import distributed
        except ImportError as err:
            msg = (
                "execution.backend is 'dask' but the 'distributed' package is not "
                "installed: pip install 'dsa110-contimg[scaleout]'"
            )
            raise ConfigError(msg) from err
        self.settings = settings
        self._owns_client = client is None
        if client is None:
            try:
                client = distributed.Client(
                    settings.scheduler_address,
                    timeout=settings.connect_timeout_s,
                    set_as_default=False,
                )
            except (OSError, TimeoutError) as err:
                msg = (
                    "cannot reach the Dask scheduler at execution.scheduler_address "
                    f"{settings.scheduler_address!r}: {err}; start it "
                    "(scripts/cluster_start.sh) or fix the address"
                )
                raise ConfigError(msg) from err
        self.client = client
        self._lock = threading.Lock()
        self._held: OrderedDict[str, Any] = OrderedDict()  # key -> dask Future
        self._waiting: dict[str, int] = {}  # key -> results not yet handed over
        self._released: set[str] = set()  # finished keys let go of (a redo runs anew)
        self._shutdown = False
        from dsa110_contimg.pipeline._dask_worker import CasaWorkerSetup

        client.register_plugin(CasaWorkerSetup(), name=CasaWorkerSetup.name)

    # -- submission -------------------------------------------------------------
    def submit_stage(
        self, stage: str, product_id: str, fn: Callable[..., Any], *args: object
    ) -> Future:
        """Submit ``fn(*args)`` as the task ``"<stage>-<product_id>"``.

        A task of that key that is running or finished (and still held) is
        joined instead of run again; one that failed is submitted anew.
        """
        return self._submit(
            stage_key(stage, product_id),
            fn,
            args,
            self.settings.resources.get(stage, {}),
        )

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Submit a call with no stage: keyed by its function and arguments."""
        from dask.base import tokenize

        if kwargs:
            args = (*args, kwargs)
            call = _CallWithKwargs(fn)
        else:
            call = fn
        name = getattr(fn, "__name__", "call")
        return self._submit(f"{name}-{tokenize(fn, *args)}", call, args, {})

    def _submit(
        self,
        key: str,
        fn: Callable[..., Any],
        args: tuple[object, ...],
        resources: dict[str, float],
    ) -> Future:
        if self._shutdown:
            msg = "cannot schedule new futures after shutdown"
            raise RuntimeError(msg)
        priority = _PRIORITY.get()
        with self._lock:  # `_handed_over` releases and records under the lock
            redo = key in self._released and key not in self._held
        if redo:
            self._await_forgotten(key)
        with self._lock:
            self._released.discard(key)
            held = self._held.get(key)
            if held is not None and held.status in ("error", "cancelled", "lost"):
                self._held.pop(key)
                held.release()
                held = None
            if held is None:
                held = self.client.submit(
                    fn,
                    *args,
                    key=key,
                    pure=False,
                    resources=resources or None,
                    priority=0 if priority is None else -priority,
                    retries=self.settings.retries,
                )
                log.debug("task submitted", extra={"key": key})
            else:
                log.info("task resubmitted, joined", extra={"key": key})
            self._held[key] = held
            self._held.move_to_end(key)
            self._waiting[key] = self._waiting.get(key, 0) + 1
        return _as_concurrent(held, lambda: self._handed_over(key))

    def _handed_over(self, key: str) -> None:
        """Count a result handed to its waiter; release what is no longer needed."""
        with self._lock:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]
            done = [
                k for k, f in self._held.items() if f.done() and k not in self._waiting
            ]
            for old in done[: max(0, len(done) - self.settings.keep_results)]:
                self._held.pop(old).release()
                self._released.add(old)

    def _await_forgotten(self, key: str, timeout_s: float = 10.0) -> None:
        """Wait until the scheduler has forgotten a released key.

        Releasing a finished future is asynchronous: a task submitted again
        under the same key before the client and the scheduler drop it would
        be answered with the old result (the client answers a key it still
        holds itself), and a redo (late data, a reconverted group) must run
        anew.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if key not in self.client.futures and not self.client.run_on_scheduler(
                _scheduler_knows, key
            ):
                return
            time.sleep(0.02)
        log.warning("scheduler still holds a released task", extra={"key": key})

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Release held results; close the client if this executor made it."""
        self._shutdown = True
        with self._lock:
            held = list(self._held.values())
            self._held.clear()
        if cancel_futures:
            self.client.cancel([f for f in held if not f.done()])
        elif wait:
            for future in held:
                with contextlib.suppress(Exception):  # its waiter has the error
                    future.result()
        for future in held:
            future.release()
        if self._owns_client:
            self.client.close()


def _scheduler_knows(key: str, dask_scheduler: Any = None) -> bool:
    """Return whether the scheduler still has task ``key`` (runs on the scheduler)."""
    return key in dask_scheduler.tasks


class _CallWithKwargs:
    """Call ``fn(*args, **kwargs)`` where the kwargs travel as the last argument."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        *positional, kwargs = args
        return self.fn(*positional, **kwargs)


def _as_concurrent(future: Any, then: Callable[[], None]) -> Future:
    """Return a `concurrent.futures.Future` that follows a Dask future.

    ``then`` runs once the result (or error) has been handed over.
    """
    out: Future = Future()
    out.set_running_or_notify_cancel()

    def follow(done: Any) -> None:  # runs in the client's callback thread
        try:
            out.set_result(done.result())
        except BaseException as err:  # noqa: BLE001 - handed to the waiter
            out.set_exception(err)
        then()

    future.add_done_callback(follow)
    return out
