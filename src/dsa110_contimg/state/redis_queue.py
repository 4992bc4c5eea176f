"""The ``redis`` queue backend: delivery through Redis Streams, record in SQL.

Where job state lives
---------------------
The state database stays the record of every job (state, attempts, errors,
payload, lease, events): each change is the same checked transition of
`state.jobs` as on the ``sqlite`` backend, so a job is claimed at most once
(the lease is a database transaction) and ``status``, ``list``, ``requeue``
and ``cancel`` work unchanged. Redis carries delivery: which kinds have
ready work, which worker holds which entry, which retries are due later.

Keys (``<p>`` is ``queue.redis_prefix``)
---------------------------------------
``<p>:jobs:<kind>:<priority>``
    A stream per kind and priority with the consumer group ``<p>:workers``;
    an entry ``{job_id}`` says a job of that kind is ready (the id is the job
    it was added for; the worker leases the database's next job of the kind,
    in the ``sqlite`` order). Workers read with ``XREADGROUP`` (smaller
    priority first; an idle worker blocks on the server, ``BLOCK``, see
    *Waiting* below), keep the entry pending while they run the job
    (``XCLAIM ... JUSTID`` with each heartbeat resets its idle time) and
    ``XACK`` + ``XDEL`` it when the job finishes. Streams are never trimmed,
    so no unacknowledged entry is lost.
``<p>:delayed``
    Sorted set ``<stream>|<job_id>`` scored by the retry's not-before time
    (UNIX seconds); due members move to their stream atomically (Lua).
``<p>:inflight``
    Hash stream entry id -> the job leased against it (for the dead letter).
``<p>:dead``
    Dead-letter stream: an entry delivered more than ``max_deliveries`` times
    without its job finishing is copied here, acknowledged, and its job is
    quarantined in the state database.

Recovery
--------
A consumer that dies leaves its entries pending in the group; another
worker takes them with ``XAUTOCLAIM`` once idle for ``min_idle_s`` (twice the
lease by default: longer than any heartbeat gap of a live worker). The
database decides what the entry means then (run it, retry later, or drop a
duplicate). A job that Redis lost (a write in the last second before a crash
with ``appendfsync everysec``, or one enqueued while Redis was down) is found
by the reconcile sweep (every ``reconcile_s``), which tops each stream's
undelivered entries up to the number of pending jobs due in the database; a
spare entry only costs a no-op read.
While Redis is unreachable, the queue claims nothing and retries with an
exponential backoff (0.1 s doubling to 5 s); enqueues and every transition
still commit in the state database, so nothing is lost and nothing runs
twice.

Waiting
-------
An idle worker does not poll: `RedisJobQueue.waiter` gives a `Waiter` whose
`Waiter.wait` (run in a thread; it never touches the database) blocks in one
``XREADGROUP ... BLOCK`` over every stream of the worker's kinds for at most
``block_s``, so the server hands it the next entry as soon as one is added.
The entry waits in the queue's buffer for the worker's next `claim`, which
leases its job on the database connection's thread. The block is bounded so
that the housekeeping of `claim` (due retries, ``XAUTOCLAIM``, the reconcile
sweep) still runs every ``reconcile_s`` while the worker is idle; heartbeats
and lease renewal run in their own tasks and never wait on it. A server that
goes away during a block breaks the read: the backoff above applies. A
`Waiter.cancel` (the worker woke for another reason) or
`RedisJobQueue.interrupt_waits` (shutdown) gives an entry read meanwhile
back to its stream (a new entry, the old one acknowledged), so no entry sits
with a worker that is not about to claim it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from dsa110_contimg.exceptions import MissingDependencyError, StateError
from dsa110_contimg.state import jobs
from dsa110_contimg.state.db import Connection
from dsa110_contimg.state.jobs import (
    JOB_KINDS,
    PRIORITY_BACKFILL,
    PRIORITY_LIVE,
    Job,
    JobSpec,
)
from dsa110_contimg.state.queue_reads import RecordReads, dead_letter_row

__all__ = ["RedisJobQueue", "Waiter", "delivery_status"]

CANCEL_REASON = "cancelled by an operator (dsa110-contimg cancel)"

log = logging.getLogger(__name__)

_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local sep = string.find(member, '|', 1, true)
  redis.call('ZREM', KEYS[1], member)
  redis.call('XADD', string.sub(member, 1, sep - 1), '*',
             'job_id', string.sub(member, sep + 1))
end
return #due
"""

_BACKOFF_MIN_S = 0.1
_BACKOFF_MAX_S = 5.0


def _import_redis() -> Any:
    try:
        import redis
    except ModuleNotFoundError as err:
        msg = (
            "queue.backend 'redis' needs the redis package (redis-py), which is "
            "not installed; install it with: pip install 'dsa110-contimg[scaleout]'"
        )
        raise MissingDependencyError(msg) from err
    return redis


class RedisUnavailable(Exception):  # noqa: N818 - internal signal, never escapes
    """Redis did not answer; the caller backs off."""


class RedisJobQueue(RecordReads):
    """`state.queue.JobQueue` on Redis Streams, with the record in the database.

    Parameters
    ----------
    conn : Connection
        Writable, migrated state-database connection (the job records).
    url : str
        ``redis://host:port/db`` of the server.
    prefix : str
        Prefix of every key this queue uses.
    max_deliveries : int
        Deliveries of one entry before it goes to the dead-letter stream.
    min_idle_s : float
        ``XAUTOCLAIM`` takes entries idle at least this long (seconds).
    reconcile_s : float
        Period of the sweep that gives pending jobs without an entry one
        (seconds).
    block_s : float, optional
        Longest an idle worker's `Waiter.wait` blocks on the server
        (``XREADGROUP BLOCK``); at most ``reconcile_s``, its default
        (seconds).
    client : redis.Redis, optional
        A client to use instead of one made from ``url`` (tests).
    """

    backend = "redis"

    def __init__(
        self,
        conn: Connection,
        *,
        url: str,
        prefix: str = "dsa110",
        max_deliveries: int = 10,
        min_idle_s: float = 240.0,
        reconcile_s: float = 5.0,
        block_s: float | None = None,
        client: Any = None,
    ) -> None:
        self._redis = _import_redis()
        self.conn = conn
        self.url = url
        self.prefix = prefix
        self.group = f"{prefix}:workers"
        self.max_deliveries = max_deliveries
        self.min_idle_ms = max(1, int(min_idle_s * 1000))
        self.reconcile_s = reconcile_s
        self.client = client or self._redis.Redis.from_url(
            url,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            decode_responses=True,
            health_check_interval=5,
        )
        self.block_s = min(reconcile_s, block_s if block_s is not None else reconcile_s)
        # blocking reads on connections of their own (socket timeout above the
        # block; no silent retry: a broken read is an outage, or an interrupt),
        # so interrupt_waits can break them without touching the rest
        self._block_client = self._redis.Redis.from_url(
            url,
            socket_timeout=self.block_s + 5.0,
            socket_connect_timeout=2.0,
            decode_responses=True,
            retry=self._redis.retry.Retry(self._redis.backoff.NoBackoff(), 0),
        )
        self._lock = threading.Lock()  # the buffer, the waiters
        self._buffer: list[tuple[int, str, str, str]] = []  # (prio, stream, id, job)
        self._waiters: set[Waiter] = set()
        # stream -> waiters that just read it empty (each skips one claim's read)
        self._read_empty: dict[str, int] = {}
        self._promote = self.client.register_script(_PROMOTE)
        self._entries: dict[int, tuple[str, str]] = {}  # own job id -> entry
        self._groups: set[str] = set()
        # XAUTOCLAIM a stream at most this often (not on every claim)
        self._recover_every_s = min(reconcile_s, min_idle_s / 2)
        self._recover_at: dict[str, float] = {}
        # streams seen empty (XLEN 0): nothing in them can be idle for min_idle_s
        # before that long after, so XAUTOCLAIM and the sweep's per-stream
        # reads wait; a quiet stream still gets the full sweep every min_idle_s
        self._min_idle_s = min_idle_s
        self._empty_at: dict[str, float] = {}
        self._full_sweep_at: dict[str, float] = {}
        self._priorities = {PRIORITY_LIVE, PRIORITY_BACKFILL}
        self._down_until = 0.0
        self._down_delay_s = 0.0
        self._next_sync = 0.0
        self.n_outages = 0

    # -- keys -------------------------------------------------------------------
    def stream(self, kind: str, priority: int) -> str:
        """Return the stream key of jobs of ``kind`` at ``priority``."""
        return f"{self.prefix}:jobs:{kind}:{priority}"

    @property
    def dead_letter(self) -> str:
        """Key of the dead-letter stream."""
        return f"{self.prefix}:dead"

    @property
    def _delayed(self) -> str:
        return f"{self.prefix}:delayed"

    @property
    def _prio_key(self) -> str:
        return f"{self.prefix}:priorities"

    # -- connection ---------------------------------------------------------------
    @property
    def available(self) -> bool:
        """Whether the last call reached Redis (or the backoff has passed)."""
        return time.monotonic() >= self._down_until

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run one Redis operation; on a lost connection back off and raise."""
        errors = self._redis.exceptions
        try:
            out = fn()
        except (errors.ConnectionError, errors.TimeoutError) as err:
            self._went_down(err)
            raise RedisUnavailable(str(err)) from err
        self._came_back()
        return out

    def _went_down(self, err: Exception) -> None:
        self._down_delay_s = min(
            _BACKOFF_MAX_S, max(_BACKOFF_MIN_S, 2 * self._down_delay_s)
        )
        self._down_until = time.monotonic() + self._down_delay_s
        if self._down_delay_s == _BACKOFF_MIN_S:
            self.n_outages += 1
        log.warning(
            "redis unreachable, retrying with backoff",
            extra={
                "url": self.url,
                "retry_in_s": self._down_delay_s,
                "error": str(err),
            },
        )

    def _came_back(self) -> None:
        if self._down_delay_s:
            log.info("redis reachable again", extra={"url": self.url})
            self._down_delay_s = 0.0
            self._next_sync = 0.0  # publish what was enqueued meanwhile

    def _try(self, fn: Callable[[], Any]) -> Any:
        """`_call` that swallows any Redis error (the reconcile sweep repairs it).

        Used where the state database has already recorded the change, so a
        lost delivery message costs at most a sweep period, never a job.
        """
        try:
            return self._call(fn)
        except RedisUnavailable:
            return None
        except self._redis.exceptions.RedisError as err:
            self._nogroup(err)
            log.warning("redis command failed", extra={"error": str(err)})
            return None

    def _ensure_group(self, stream: str) -> None:
        if stream in self._groups:
            return
        try:
            self._call(
                lambda: self.client.xgroup_create(
                    stream, self.group, id="0", mkstream=True
                )
            )
        except self._redis.exceptions.ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise
        self._groups.add(stream)

    def _nogroup(self, err: Exception) -> bool:
        if isinstance(err, self._redis.exceptions.ResponseError) and "NOGROUP" in str(
            err
        ):
            self._groups.clear()  # Redis lost its data: make the groups again
            self._next_sync = 0.0
            return True
        return False

    # -- publishing ----------------------------------------------------------------
    def _publish(self, job: Job, *, now: datetime) -> None:
        """Give a pending job a stream entry, or a delayed one when not yet due."""
        if job.state != "pending":
            return
        stream = self.stream(job.kind, job.priority)
        due = datetime.fromisoformat(job.not_before_at).timestamp()

        def publish() -> None:
            self._ensure_group(stream)
            pipe = self.client.pipeline(transaction=True)
            if job.priority not in self._priorities:
                pipe.sadd(self._prio_key, job.priority)
            if due <= now.timestamp():
                pipe.zrem(self._delayed, f"{stream}|{job.id}")
                pipe.xadd(stream, {"job_id": job.id})
            else:
                pipe.zadd(self._delayed, {f"{stream}|{job.id}": due})
            pipe.execute()
            self._priorities.add(job.priority)

        self._try(publish)

    def _done_with(self, job_id: int) -> None:
        """Acknowledge and delete this worker's entry of ``job_id``."""
        entry = self._entries.pop(job_id, None)
        if entry is not None:
            self._try(lambda: self._ack(*entry))

    def _ack(self, stream: str, entry_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(stream, self.group, entry_id)
        pipe.xdel(stream, entry_id)
        pipe.hdel(self._inflight, entry_id)
        pipe.execute()

    # -- sweeps -------------------------------------------------------------------
    def sync(self, *, now: datetime) -> int:
        """Move due retries to their streams; give ready jobs missing entries one.

        For each stream, the entries not yet delivered (``XLEN`` minus the
        group's pending entries) are topped up to the number of pending jobs
        of its kind and priority that are due in the database; consumers with
        nothing pending and idle longer than ``min_idle_s`` are removed.

        Returns
        -------
        int
            Number of entries the sweep added.
        """
        self._call(
            lambda: self._promote(keys=[self._delayed], args=[now.timestamp(), 1000])
        )
        extra = self._call(lambda: self.client.smembers(self._prio_key))
        self._priorities |= {int(p) for p in extra}
        ready: dict[str, list[Job]] = {}
        for job in jobs.list_jobs(self.conn, states=["pending"]):
            if datetime.fromisoformat(job.not_before_at) <= now:
                ready.setdefault(self.stream(job.kind, job.priority), []).append(job)
        n = 0
        streams = sorted(set(ready) | self._groups)
        for stream in streams:
            self._ensure_group(stream)
        pipe = self.client.pipeline(transaction=False)
        for stream in streams:
            pipe.xlen(stream)
        lengths = self._call(pipe.execute)
        for stream, length in zip(streams, lengths, strict=True):
            t = time.monotonic()
            if int(length) == 0:
                self._empty_at[stream] = t
                if stream not in ready and t < self._full_sweep_at.get(stream, 0.0):
                    continue  # nothing held, nothing to deliver: a quiet stream
            self._full_sweep_at[stream] = t + self._min_idle_s
            pipe = self.client.pipeline(transaction=False)
            pipe.xpending(stream, self.group)
            pipe.xinfo_consumers(stream, self.group)
            pending, consumers = self._call(pipe.execute)
            undelivered = int(length) - int(pending["pending"])
            missing = ready.get(stream, [])[max(0, undelivered) :]
            for job in missing:
                self._call(
                    lambda j=job, st=stream: self.client.xadd(st, {"job_id": j.id})
                )
            n += len(missing)
            if int(pending["pending"]):
                self._ack_stale(stream)
            for c in consumers:
                if c["pending"] == 0 and c["idle"] > self.min_idle_ms:
                    self._call(
                        lambda name=c["name"], st=stream: (
                            self.client.xgroup_delconsumer(st, self.group, name)
                        )
                    )
        if n:
            log.info("ready jobs without a stream entry published", extra={"n_jobs": n})
        return n

    def _ack_stale(self, stream: str) -> None:
        """Acknowledge held entries whose job is no longer running.

        An acknowledgement can be lost with Redis (its last second of AOF when
        the server dies): the entry comes back held by its consumer though its
        job is done. The database is the record, so an entry idle for longer
        than two sweeps whose in-flight job is not running is acknowledged (a
        running job's entry has its job id in ``inflight`` and is kept).
        """
        stale = self._call(
            lambda: self.client.xpending_range(
                stream,
                self.group,
                min="-",
                max="+",
                count=100,
                idle=int(2000 * self.reconcile_s),
            )
        )
        for entry in stale:
            entry_id = entry["message_id"]
            job_id = self._call(lambda e=entry_id: self.client.hget(self._inflight, e))
            job = None
            if job_id is not None:
                with contextlib.suppress(StateError):
                    job = jobs.get_job(self.conn, int(job_id))
            if job is None or job.state != "running":
                self._call(lambda e=entry_id: self._ack(stream, e))
                log.info(
                    "stale stream entry acknowledged",
                    extra={"stream": stream, "entry": str(entry_id), "job_id": job_id},
                )

    def _maybe_sync(self, now: datetime) -> None:
        if time.monotonic() < self._next_sync:
            self._call(
                lambda: self._promote(keys=[self._delayed], args=[now.timestamp(), 100])
            )
            return
        self.sync(now=now)
        self._next_sync = time.monotonic() + self.reconcile_s

    # -- claiming -----------------------------------------------------------------
    def _entries_of(
        self, stream: str, worker: str, *, read: bool = True
    ) -> Iterator[tuple[str, bool]]:
        """Yield (entry id, recovered): a dead consumer's entries, then new ones.

        ``read=False`` skips the new ones (a waiter has just read the stream
        empty and the worker waits on it again right after this claim).
        """
        self._ensure_group(stream)
        if not self._recovery_due(stream):
            if read:
                yield from self._new_entries(stream, worker)
            return
        self._recover_at[stream] = time.monotonic() + self._recover_every_s
        _next, claimed, *_ = self._call(  # one at a time: none waits in our PEL
            lambda: self.client.xautoclaim(
                stream, self.group, worker, self.min_idle_ms, "0-0", count=1
            )
        )
        for entry_id, fields in claimed:
            if fields:  # None: deleted while pending
                yield entry_id, True
            else:
                self._try(lambda e=entry_id: self._ack(stream, e))
        if read:
            yield from self._new_entries(stream, worker)

    def _recovery_due(self, stream: str) -> bool:
        """Whether ``XAUTOCLAIM`` of ``stream`` is due (and could find anything)."""
        t = time.monotonic()
        if t < self._empty_at.get(stream, -float("inf")) + self._min_idle_s:
            return False  # every entry came after it was empty: none idle enough
        return t >= self._recover_at.get(stream, 0.0)

    def _new_entries(self, stream: str, worker: str) -> Iterator[tuple[str, bool]]:
        while True:
            got = self._call(
                lambda: self.client.xreadgroup(
                    self.group, worker, {stream: ">"}, count=1
                )
            )
            if not got:
                return
            for entry_id, _fields in got[0][1]:
                yield entry_id, False

    @property
    def _inflight(self) -> str:
        return f"{self.prefix}:inflight"

    def _dead_letter(self, stream: str, entry_id: str, *, now: datetime) -> bool:
        info = self._call(
            lambda: self.client.xpending_range(
                stream, self.group, min=entry_id, max=entry_id, count=1
            )
        )
        deliveries = int(info[0]["times_delivered"]) if info else 0
        if deliveries <= self.max_deliveries:
            return False
        held = self._call(lambda: self.client.hget(self._inflight, entry_id))
        reason = (
            f"redis stream {stream} entry {entry_id} delivered {deliveries} times "
            f"without its job finishing (queue.redis_max_deliveries "
            f"{self.max_deliveries}); the job may crash its worker"
        )
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(
            self.dead_letter,
            {
                "job_id": held or "",
                "kind": self._kind_of(stream),
                "stream": stream,
                "entry": entry_id,
                "deliveries": deliveries,
                "reason": reason,
            },
        )
        pipe.xack(stream, self.group, entry_id)
        pipe.xdel(stream, entry_id)
        pipe.hdel(self._inflight, entry_id)
        self._call(pipe.execute)
        if held:
            job = jobs.get_job(self.conn, int(held))
            if job.state in ("pending", "running"):
                jobs.quarantine_job(self.conn, job.id, reason=reason, now=now)
        log.error(
            "stream entry dead-lettered", extra={"job_id": held, "reason": reason}
        )
        return True

    def _take(
        self,
        stream: str,
        entry_id: str,
        kind: str,
        *,
        recovered: bool,
        worker: str,
        now: datetime,
        lease_s: float,
    ) -> Job | None:
        """Lease the database's next job of ``kind`` against one stream entry."""
        if recovered and self._dead_letter(stream, entry_id, now=now):
            return None
        job = jobs.claim_job(
            self.conn, worker=worker, now=now, lease_s=lease_s, kinds=[kind]
        )
        if job is None:  # a duplicate, or work not yet due (it waits in delayed)
            self._try(lambda: self._ack(stream, entry_id))
            return None
        self._entries[job.id] = (stream, entry_id)

        def hold() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(self._inflight, entry_id, job.id)
            pipe.execute()

        self._try(hold)
        return job

    def claim(
        self,
        *,
        worker: str,
        now: datetime,
        lease_s: float,
        kinds: Sequence[str] | None = None,
    ) -> Job | None:
        """Take the next stream entry of ``kinds`` and lease the job it stands for.

        Streams are read in priority order (live first), each first for
        entries a dead consumer left (``XAUTOCLAIM``), then for new ones
        (``XREADGROUP``). An entry says "a job of this kind is ready"; the
        job leased is the database's next one of that kind
        (`state.jobs.claim_job`: priority, then oldest data), so the order
        is the ``sqlite`` backend's and a job is leased once however many
        entries name it. None while Redis is unreachable (retried with
        backoff).
        """
        if kinds is not None and not kinds:
            return None
        if not self.available:
            return None
        try:
            self._maybe_sync(now)
            wanted = set(kinds if kinds is not None else JOB_KINDS)
            while (got := self._pop_buffered(wanted)) is not None:
                stream, entry_id = got
                job = self._take(
                    stream,
                    entry_id,
                    self._kind_of(stream),
                    recovered=False,
                    worker=worker,
                    now=now,
                    lease_s=lease_s,
                )
                if job is not None:
                    return job
            for priority in sorted(self._priorities):
                for kind in kinds if kinds is not None else JOB_KINDS:
                    stream = self.stream(kind, priority)
                    for entry_id, recovered in self._entries_of(
                        stream, worker, read=not self._just_read_empty(stream)
                    ):
                        job = self._take(
                            stream,
                            entry_id,
                            kind,
                            recovered=recovered,
                            worker=worker,
                            now=now,
                            lease_s=lease_s,
                        )
                        if job is not None:
                            return job
        except RedisUnavailable:
            return None
        except self._redis.exceptions.RedisError as err:  # e.g. NOGROUP after a wipe
            self._nogroup(err)
            log.warning("redis claim failed", extra={"error": str(err)})
            return None
        return None

    # -- waiting --------------------------------------------------------------------
    def waiter(self, *, worker: str, kinds: Sequence[str] | None = None) -> Waiter:
        """Return a `Waiter` that blocks until an entry of ``kinds`` arrives.

        Parameters
        ----------
        worker : str
            Consumer name (the worker id that then calls `claim`).
        kinds : sequence of str, optional
            Job kinds the worker claims; default every kind.
        """
        return Waiter(self, worker, tuple(kinds) if kinds is not None else JOB_KINDS)

    def interrupt_waits(self) -> None:
        """Break every blocking read now (shutdown); entries read go back."""
        with self._lock:
            waiters = list(self._waiters)
            for w in waiters:
                w.cancelled = True
        if waiters:
            self._block_client.connection_pool.disconnect(inuse_connections=True)
        with self._lock:
            buffered, self._buffer = self._buffer, []
        for _prio, stream, entry_id, job_id in buffered:
            self._give_back(stream, entry_id, job_id)

    def _just_read_empty(self, stream: str) -> bool:
        """Whether a waiter has just read ``stream`` empty (and waits again next)."""
        with self._lock:
            n = self._read_empty.get(stream, 0)
            if n:
                self._read_empty[stream] = n - 1
            return n > 0

    def _kind_of(self, stream: str) -> str:
        return stream[len(self.prefix) + len(":jobs:") :].rsplit(":", 1)[0]

    def _pop_buffered(self, kinds: set[str]) -> tuple[str, str] | None:
        """Take the most urgent buffered entry of ``kinds`` (a waiter read it)."""
        with self._lock:
            for i, (_prio, stream, entry_id, _job) in enumerate(self._buffer):
                if self._kind_of(stream) in kinds:
                    del self._buffer[i]
                    return stream, entry_id
        return None

    def _give_back(self, stream: str, entry_id: str, job_id: str) -> None:
        """Put an entry read by a worker that will not claim it back on its stream."""

        def give_back() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.xadd(stream, {"job_id": job_id})
            pipe.xack(stream, self.group, entry_id)
            pipe.xdel(stream, entry_id)
            pipe.execute()

        self._try(give_back)

    # -- transitions ----------------------------------------------------------------
    def enqueue(
        self,
        spec: JobSpec,
        *,
        now: datetime,
        max_attempts: int = 5,
        quarantine_reason: str | None = None,
    ) -> tuple[Job, bool]:
        job, created = jobs.enqueue_job(
            self.conn,
            spec,
            now=now,
            max_attempts=max_attempts,
            quarantine_reason=quarantine_reason,
        )
        if created:
            self._publish(job, now=now)
        return job, created

    def heartbeat(
        self, job_id: int, *, worker: str, now: datetime, lease_s: float
    ) -> Job:
        job = jobs.heartbeat_job(
            self.conn, job_id, worker=worker, now=now, lease_s=lease_s
        )
        entry = self._entries.get(job_id)
        if entry is not None:  # reset the entry's idle time: not a dead consumer
            self._try(
                lambda: self.client.xclaim(
                    entry[0], self.group, worker, 0, [entry[1]], justid=True
                )
            )
        return job

    def complete(
        self,
        job_id: int,
        *,
        worker: str,
        now: datetime,
        result: Mapping[str, object] | None = None,
        follow_ups: Sequence[JobSpec] = (),
        max_attempts: int = 5,
    ) -> Job:
        done = jobs.complete_job(
            self.conn,
            job_id,
            worker=worker,
            now=now,
            result=result,
            follow_ups=follow_ups,
            max_attempts=max_attempts,
        )
        self._done_with(job_id)
        for spec in follow_ups:
            job = jobs.find_job(self.conn, spec.kind, spec.key)
            if job is not None and job.state == "pending":
                self._publish(job, now=now)
        return done

    def fail(
        self,
        job_id: int,
        error: BaseException,
        *,
        worker: str,
        now: datetime,
        backoff_base_s: float,
        backoff_max_s: float,
    ) -> Job:
        after = jobs.record_failure(
            self.conn,
            job_id,
            error,
            worker=worker,
            now=now,
            backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s,
        )
        self._done_with(job_id)
        self._publish(after, now=now)
        return after

    def release(self, job_id: int, *, worker: str, now: datetime, reason: str) -> Job:
        job = jobs.release_job(self.conn, job_id, worker=worker, now=now, reason=reason)
        self._done_with(job_id)
        self._publish(job, now=now)
        return job

    def abandon(self, job_id: int) -> None:
        self._done_with(job_id)

    def quarantine(
        self, job_id: int, *, reason: str, now: datetime, worker: str | None = None
    ) -> Job:
        job = jobs.quarantine_job(
            self.conn, job_id, reason=reason, now=now, worker=worker
        )
        self._done_with(job_id)
        return job

    def requeue(
        self,
        job_id: int,
        *,
        now: datetime,
        reason: str,
        payload: Mapping[str, object] | None = None,
        worker: str | None = None,
    ) -> Job:
        job = jobs.requeue_job(
            self.conn, job_id, now=now, reason=reason, payload=payload, worker=worker
        )
        self._try(lambda: self._forget_dead_letters(job_id))
        self._publish(job, now=now)
        return job

    def _forget_dead_letters(self, job_id: int) -> int:
        """Delete the dead-letter entries of ``job_id`` (it was requeued)."""
        ids = [
            entry_id
            for entry_id, fields in self.client.xrange(self.dead_letter)
            if fields.get("job_id") == str(job_id)
        ]
        if ids:
            self.client.xdel(self.dead_letter, *ids)
        return len(ids)

    def cancel(self, job_id: int, *, now: datetime, reason: str = CANCEL_REASON) -> Job:
        job = jobs.cancel_job(self.conn, job_id, now=now, reason=reason)
        self._done_with(job_id)
        return job

    def reclaim_expired(self, *, now: datetime) -> list[Job]:
        reclaimed = jobs.reclaim_expired_jobs(self.conn, now=now)
        for job in reclaimed:
            self._entries.pop(job.id, None)
            self._publish(job, now=now)
        return reclaimed

    def reclaim_orphaned(
        self, *, now: datetime, is_orphaned: Callable[[str], bool]
    ) -> list[Job]:
        reclaimed = jobs.reclaim_orphaned_jobs(
            self.conn, now=now, is_orphaned=is_orphaned
        )
        for job in reclaimed:
            self._publish(job, now=now)
        return reclaimed

    # -- reads beyond the record (RecordReads) --------------------------------------
    def dead_letters(self) -> list[dict[str, str]]:
        """Return the dead-letter stream's entries (oldest first)."""
        return [fields for _id, fields in self.client.xrange(self.dead_letter)]

    def dead_lettered(self) -> list[dict[str, object]]:
        """Return the dead-letter stream's entries with their jobs, oldest first.

        Rows have `state.queue_reads.DEAD_LETTER_FIELDS`: ``deliveries`` of the
        entry, ``at`` the time it was dead-lettered (the entry id's
        milliseconds), ``entry`` its id in ``<prefix>:dead``; ``kind``, ``key``,
        ``state`` and ``last_error`` come from the job's record. Raises
        `StateError` when Redis does not answer.
        """
        try:
            entries = self._call(lambda: self.client.xrange(self.dead_letter))
        except RedisUnavailable as err:
            msg = (
                f"redis at {self.url} (queue.redis_url) did not answer, so its "
                f"dead-letter stream {self.dead_letter} cannot be read: {err}; "
                "start redis-server or fix queue.redis_url"
            )
            raise StateError(msg) from err
        rows = []
        for entry_id, fields in entries:
            job_id = int(fields["job_id"]) if fields.get("job_id") else None
            job = None
            if job_id is not None:
                with contextlib.suppress(StateError):
                    job = jobs.get_job(self.conn, job_id)
            deliveries = fields.get("deliveries")
            if deliveries is None:  # entries written before the field existed
                found = re.search(r"delivered (\d+) times", fields.get("reason", ""))
                deliveries = found.group(1) if found else 0
            stamp = datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1e3, tz=UTC)
            rows.append(
                dead_letter_row(
                    job,
                    job_id=job_id,
                    kind=fields.get("kind") or self._kind_of(fields.get("stream", "")),
                    deliveries=int(deliveries),
                    at=stamp.isoformat(timespec="milliseconds"),
                    reason=fields.get("reason", ""),
                    entry=entry_id,
                )
            )
        return rows

    def close(self) -> None:
        """Close the Redis connections (pending entries stay in the group)."""
        self.interrupt_waits()
        self._block_client.close()
        self._block_client.connection_pool.disconnect()
        self.client.close()


class Waiter:
    """One idle worker's wait for work on the server (`RedisJobQueue.waiter`).

    `wait` runs in a thread of its own (it blocks); `cancel` comes from the
    worker's event loop. Never touches the state database.
    """

    def __init__(self, queue: RedisJobQueue, worker: str, kinds: Sequence[str]):
        self.queue = queue
        self.worker = worker
        self.kinds = tuple(kinds)
        self.cancelled = False

    def cancel(self) -> None:
        """The worker no longer waits: an entry read from now on goes back.

        Entries read before this call are in the buffer; the worker's next
        `RedisJobQueue.claim` takes them.
        """
        with self.queue._lock:
            self.cancelled = True

    def wait(self) -> bool:
        """Block until an entry of the kinds arrives, for at most ``block_s``.

        Returns
        -------
        bool
            Whether the worker should `claim` now: an entry is buffered, the
            housekeeping of `claim` (reconcile sweep) is due, or Redis was
            unreachable (the backoff has been waited out and `claim` retries).
        """
        q = self.queue
        errors = q._redis.exceptions
        if not q.available:  # sleep out the backoff, not a busy loop
            time.sleep(min(q.block_s, max(0.0, q._down_until - time.monotonic())))
            return True
        streams = [
            q.stream(kind, priority)
            for priority in sorted(q._priorities)
            for kind in self.kinds
        ]
        with q._lock:
            if self.cancelled:
                return False
            q._waiters.add(self)
        try:
            for stream in streams:
                q._ensure_group(stream)
            got = q._block_client.xreadgroup(
                q.group,
                self.worker,
                dict.fromkeys(streams, ">"),
                count=1,
                block=max(1, int(q.block_s * 1000)),
            )
        except RedisUnavailable:
            return True
        except (errors.RedisError, OSError, ValueError) as err:
            if self.cancelled:  # interrupt_waits closed the socket under the read
                return False
            if isinstance(err, errors.ConnectionError | errors.TimeoutError | OSError):
                q._went_down(err)
            elif isinstance(err, errors.RedisError):  # NOGROUP after a wipe
                q._nogroup(err)
            else:
                raise
            return True
        finally:
            with q._lock:
                q._waiters.discard(self)
        q._came_back()
        entries = sorted(
            (streams.index(stream), stream, entry_id, fields.get("job_id", ""))
            for stream, items in (got or [])
            for entry_id, fields in items
        )
        keep: list[tuple[int, str, str, str]] = []
        due = False
        with q._lock:
            if entries and not self.cancelled:
                keep = entries[:1]  # the most urgent; the rest go back at once
                q._buffer.extend(keep)
            elif not entries and not self.cancelled:
                # the housekeeping of claim is due (the sweep, or XAUTOCLAIM of a
                # stream): that claim need not read the streams just found empty
                due = time.monotonic() >= q._next_sync or any(
                    q._recovery_due(s) for s in streams
                )
                for stream in streams if due else ():
                    q._read_empty[stream] = q._read_empty.get(stream, 0) + 1
        for _i, stream, entry_id, job_id in entries[len(keep) :]:
            q._give_back(stream, entry_id, job_id)
        return bool(keep) or due


def delivery_status(url: str, prefix: str) -> dict[str, object]:
    """Return what Redis holds for a queue (the ``status`` command's ``delivery``).

    Parameters
    ----------
    url : str
        ``redis://`` URL of the server.
    prefix : str
        ``queue.redis_prefix``.

    Returns
    -------
    dict
        ``backend`` ("redis"), ``url``, ``reachable``; when reachable also
        ``streams`` (per stream: ``length`` entries, ``pending`` entries held by
        workers, ``consumers``), ``delayed`` (retries not yet due) and
        ``dead_letters`` (entries in ``<prefix>:dead``); else ``error``.
    """
    redis = _import_redis()
    client = redis.Redis.from_url(
        url, socket_timeout=2.0, socket_connect_timeout=2.0, decode_responses=True
    )
    group = f"{prefix}:workers"
    out: dict[str, object] = {"backend": "redis", "url": url}
    try:
        streams = {}
        for key in sorted(client.scan_iter(f"{prefix}:jobs:*", _type="stream")):
            info = client.xpending(key, group) if client.exists(key) else {}
            streams[key] = {
                "length": int(client.xlen(key)),
                "pending": int(info.get("pending", 0)) if info else 0,
                "consumers": len(info.get("consumers") or []) if info else 0,
            }
        out.update(
            reachable=True,
            streams=streams,
            delayed=int(client.zcard(f"{prefix}:delayed")),
            dead_letters=int(client.xlen(f"{prefix}:dead")),
        )
    except redis.exceptions.ResponseError as err:  # NOGROUP: no worker started yet
        out.update(reachable=True, streams={}, error=str(err))
    except redis.exceptions.RedisError as err:
        out.update(reachable=False, error=f"{err}; is redis-server running at {url}?")
    finally:
        client.close()
    return out
