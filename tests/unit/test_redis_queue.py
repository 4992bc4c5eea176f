"""Redis Streams mechanics of the ``redis`` queue backend (marker ``scaleout``).

The shared queue semantics run on both backends in test_jobs.py and
test_queue_faults.py; these tests check what only Redis has: stream entries
acknowledged when a job finishes, a dead consumer's entries recovered with
``XAUTOCLAIM``, the dead-letter stream, and a server killed and restarted.
"""

from __future__ import annotations

import time
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dsa110_contimg.exceptions import ExternalToolError
from dsa110_contimg.state import open_db
from dsa110_contimg.state.jobs import CONVERT_GROUP, PRIORITY_BACKFILL, JobSpec, get_job

pytestmark = pytest.mark.scaleout

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def conn(tmp_path: Path):
    with closing(open_db(tmp_path / "state.sqlite3")) as c:
        yield c


def _queue(conn, url: str, prefix: str, **kw):
    from dsa110_contimg.state.redis_queue import RedisJobQueue

    return RedisJobQueue(conn, url=url, prefix=prefix, **kw)


def _spec(key: str) -> JobSpec:
    return JobSpec(CONVERT_GROUP, key, key, {"files": {}})


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_entries_are_held_while_running_and_acked_when_done(conn, redis_server):
    q = _queue(conn, redis_server.url, f"t{uuid.uuid4().hex[:8]}")
    stream = q.stream(CONVERT_GROUP, PRIORITY_BACKFILL)
    job, _ = q.enqueue(_spec("a"), now=T0)
    assert q.client.xlen(stream) == 1
    claimed = q.claim(worker="w1", now=T0, lease_s=30)
    assert claimed is not None and claimed.id == job.id
    pending = q.client.xpending(stream, q.group)
    assert pending["pending"] == 1 and pending["consumers"][0]["name"] == "w1"
    q.heartbeat(job.id, worker="w1", now=at(5), lease_s=30)
    q.complete(job.id, worker="w1", now=at(10))
    assert q.client.xpending(stream, q.group)["pending"] == 0
    assert q.client.xlen(stream) == 0  # acknowledged entries are deleted
    # a retry waits in the delayed set until due, then is delivered again
    b, _ = q.enqueue(_spec("b"), now=at(11))
    q.claim(worker="w1", now=at(11), lease_s=30)
    q.fail(
        b.id,
        ExternalToolError("killed"),
        worker="w1",
        now=at(12),
        backoff_base_s=10,
        backoff_max_s=60,
    )
    assert q.client.zcard(f"{q.prefix}:delayed") == 1
    assert q.claim(worker="w1", now=at(15), lease_s=30) is None
    again = q.claim(worker="w1", now=at(23), lease_s=30)
    assert again is not None and again.id == b.id and again.attempts == 2
    q.close()


def test_dead_consumer_entry_is_recovered_with_xautoclaim(conn, redis_server):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    q = _queue(conn, redis_server.url, prefix, min_idle_s=0.2, reconcile_s=60)
    assert q.claim(worker="w2", now=T0, lease_s=30) is None  # the sweep: not again
    job, _ = q.enqueue(_spec("a"), now=T0)
    stream = q.stream(CONVERT_GROUP, PRIORITY_BACKFILL)
    # a consumer reads the entry and dies before it leases the job
    got = q.client.xreadgroup(q.group, "dead", {stream: ">"}, count=1)
    assert got and got[0][1]
    assert q.claim(worker="w2", now=T0, lease_s=30) is None  # still idle-young
    time.sleep(0.3)
    claimed = q.claim(worker="w2", now=T0, lease_s=30)
    assert claimed is not None and claimed.id == job.id
    owners = {
        c["name"]: c["pending"] for c in q.client.xpending(stream, q.group)["consumers"]
    }
    assert owners == {"w2": 1}
    q.close()


def test_entry_delivered_too_often_goes_to_dead_letter(conn, redis_server):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    q = _queue(conn, redis_server.url, prefix, min_idle_s=0.1, max_deliveries=2)
    job, _ = q.enqueue(_spec("poison"), now=T0, max_attempts=10)
    now = T0
    for worker in ("w1", "w2"):  # each leases the job and dies (no heartbeat)
        assert q.claim(worker=worker, now=now, lease_s=30).id == job.id
        q._entries.clear()  # its process is gone
        time.sleep(0.15)
        now += timedelta(seconds=31)
        assert [j.id for j in q.reclaim_expired(now=now)] == [job.id]
    assert q.claim(worker="w3", now=now, lease_s=30) is None
    final = get_job(conn, job.id)
    assert final.state == "quarantined"
    assert "delivered 3 times" in final.quarantine_reason
    (dead,) = q.dead_letters()
    assert dead["job_id"] == str(job.id)
    stream = q.stream(CONVERT_GROUP, PRIORITY_BACKFILL)
    assert q.client.xpending(stream, q.group)["pending"] == 0
    q.close()


def test_server_killed_and_restarted_loses_nothing(conn, tmp_path):
    from tests.servers.redis import RedisServer

    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        q = _queue(conn, server.url, "crash")
        ids = [q.enqueue(_spec(f"g{i}"), now=T0)[0].id for i in range(3)]
        first = q.claim(worker="w1", now=T0, lease_s=300)
        assert first is not None
        time.sleep(1.2)  # appendfsync everysec
        server.kill()
        # Redis down: enqueue still commits, claim waits, no exception
        late, _ = q.enqueue(_spec("late"), now=T0)
        delays = []  # each failed try doubles the wait before the next
        for _ in range(3):
            while not q.available:
                time.sleep(0.02)
            assert q.claim(worker="w1", now=T0, lease_s=300) is None
            delays.append(q._down_delay_s)
        assert delays == [0.2, 0.4, 0.8] and not q.available
        q.complete(first.id, worker="w1", now=at(1))
        server.start()
        seen = [first.id]
        deadline = time.monotonic() + 20
        while len(seen) < 4 and time.monotonic() < deadline:
            job = q.claim(worker="w1", now=at(2), lease_s=300)
            if job is None:
                time.sleep(0.1)
                continue
            seen.append(job.id)
            q.complete(job.id, worker="w1", now=at(3))
        assert sorted(seen) == sorted([*ids, late.id])  # each job exactly once
        assert q.n_outages >= 1
        assert q.claim(worker="w1", now=at(4), lease_s=300) is None
        q.close()
    finally:
        server.stop()


def test_redis_data_wiped_jobs_are_republished_from_the_database(conn, redis_server):
    q = _queue(conn, redis_server.url, f"t{uuid.uuid4().hex[:8]}")
    a, _ = q.enqueue(_spec("a"), now=T0)
    b, _ = q.enqueue(_spec("b"), now=T0)
    assert q.claim(worker="w1", now=T0, lease_s=30).id == a.id
    for key in q.client.scan_iter(f"{q.prefix}:*"):  # as a restart without AOF
        q.client.delete(key)
    q.heartbeat(a.id, worker="w1", now=at(1), lease_s=30)  # NOGROUP: no raise
    q.complete(a.id, worker="w1", now=at(2))
    got = [q.claim(worker="w1", now=at(3), lease_s=30) for _ in range(3)]
    assert [j.id for j in got if j is not None] == [b.id]
    assert get_job(conn, a.id).state == "done"
    q.close()


def test_delivery_status_reports_streams_delayed_and_dead_letters(conn, redis_server):
    from tests.servers.redis import free_port

    from dsa110_contimg.state.redis_queue import delivery_status

    q = _queue(conn, redis_server.url, f"t{uuid.uuid4().hex[:8]}")
    a, _ = q.enqueue(_spec("a"), now=T0)
    q.enqueue(_spec("b"), now=T0)
    q.claim(worker="w1", now=T0, lease_s=30)
    q.fail(
        a.id,
        ExternalToolError("killed"),
        worker="w1",
        now=at(1),
        backoff_base_s=10,
        backoff_max_s=60,
    )
    q.claim(worker="w1", now=at(1), lease_s=30)  # b
    report = delivery_status(redis_server.url, q.prefix)
    stream = q.stream(CONVERT_GROUP, PRIORITY_BACKFILL)
    assert report["reachable"] is True
    assert report["streams"][stream] == {"length": 1, "pending": 1, "consumers": 1}
    assert (report["delayed"], report["dead_letters"]) == (1, 0)
    down = delivery_status(f"redis://127.0.0.1:{free_port()}/0", "x")
    assert down["reachable"] is False and "is redis-server running" in down["error"]
    q.close()


def test_jobs_changed_behind_the_queue_get_entries_from_the_sweep(conn, redis_server):
    """Operators and the planner write the database directly (cancel, requeue)."""
    from dsa110_contimg.state import jobs

    q = _queue(conn, redis_server.url, f"t{uuid.uuid4().hex[:8]}", reconcile_s=0)
    x, _ = q.enqueue(_spec("x"), now=T0)  # has an entry
    y, _ = jobs.enqueue_job(conn, _spec("y"), now=T0)  # has none yet
    jobs.cancel_job(conn, x.id, now=at(1))  # dsa110-contimg cancel
    got = q.claim(worker="w1", now=at(2), lease_s=30)  # x's entry serves y
    assert got is not None and got.id == y.id
    q.complete(y.id, worker="w1", now=at(3))
    jobs.requeue_job(conn, x.id, now=at(4), reason="operator")  # requeue
    again = q.claim(worker="w1", now=at(5), lease_s=30)
    assert again is not None and again.id == x.id
    q.complete(x.id, worker="w1", now=at(6))
    assert q.claim(worker="w1", now=at(7), lease_s=30) is None
    stream = q.stream(CONVERT_GROUP, PRIORITY_BACKFILL)
    assert q.client.xpending(stream, q.group)["pending"] == 0
    q.close()


def test_held_entry_of_a_finished_job_is_acknowledged_by_the_sweep(conn, redis_server):
    """An ack lost with Redis (its last AOF second) is made good from the record."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    q = _queue(conn, redis_server.url, prefix, reconcile_s=0.05, min_idle_s=60)
    stream = q.stream(CONVERT_GROUP, PRIORITY_BACKFILL)
    done, _ = q.enqueue(_spec("a"), now=T0)
    running, _ = q.enqueue(_spec("b"), now=T0)
    assert q.claim(worker="w1", now=T0, lease_s=30).id == done.id
    assert q.claim(worker="w1", now=T0, lease_s=30).id == running.id
    q.complete(done.id, worker="w1", now=at(1))
    # the server comes back with the done job's entry still held (ack lost)
    entry = q.client.xadd(stream, {"job_id": done.id})
    q.client.xreadgroup(q.group, "w1", {stream: ">"}, count=1)
    q.client.hset(f"{prefix}:inflight", entry, done.id)
    assert q.client.xpending(stream, q.group)["pending"] == 2
    time.sleep(0.2)  # idle for longer than two sweeps
    q.sync(now=at(2))
    pending = q.client.xpending_range(stream, q.group, min="-", max="+", count=10)
    assert [p["message_id"] for p in pending] != [entry]
    assert len(pending) == 1  # the running job's entry is kept
    assert q.client.hget(f"{prefix}:inflight", pending[0]["message_id"]) == str(
        running.id
    )
    q.close()


def _calls(client, command: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))


def _in_thread(fn):
    import threading

    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


def test_idle_worker_blocks_on_the_server_until_an_entry_arrives(conn, redis_server):
    q = _queue(conn, redis_server.url, f"t{uuid.uuid4().hex[:8]}", reconcile_s=5)
    assert q.claim(worker="w1", now=T0, lease_s=30) is None  # sweep done: 5 s
    reads0 = _calls(q.client, "xreadgroup")
    thread, out = _in_thread(q.waiter(worker="w1", kinds=[CONVERT_GROUP]).wait)
    time.sleep(0.5)
    assert thread.is_alive()  # waiting on the server, not returned to poll
    t0 = time.monotonic()
    job, _ = q.enqueue(_spec("a"), now=T0)
    thread.join(2.0)
    assert not thread.is_alive() and out == [True]
    assert time.monotonic() - t0 < 1.0  # delivered at once, not after block_s
    assert _calls(q.client, "xreadgroup") - reads0 == 1  # one blocking read
    claimed = q.claim(worker="w1", now=T0, lease_s=30)  # the buffered entry
    assert claimed is not None and claimed.id == job.id
    stream = q.stream(CONVERT_GROUP, PRIORITY_BACKFILL)
    assert q.client.xpending(stream, q.group)["consumers"][0]["name"] == "w1"
    q.complete(job.id, worker="w1", now=at(1))
    assert q.client.xlen(stream) == 0
    q.close()


def test_block_is_bounded_so_housekeeping_runs(conn, redis_server):
    q = _queue(conn, redis_server.url, f"t{uuid.uuid4().hex[:8]}", reconcile_s=0.3)
    assert q.block_s == 0.3
    t0 = time.monotonic()
    # nothing arrives: the wait ends after block_s and asks for a claim (sweep due)
    assert q.waiter(worker="w1").wait() is True
    assert 0.25 < time.monotonic() - t0 < 2.0
    q.close()


def test_cancelled_wait_gives_its_entry_back_to_the_stream(conn, redis_server):
    q = _queue(conn, redis_server.url, f"t{uuid.uuid4().hex[:8]}", reconcile_s=5)
    q.claim(worker="w1", now=T0, lease_s=30)
    waiter = q.waiter(worker="w1", kinds=[CONVERT_GROUP])
    thread, out = _in_thread(waiter.wait)
    time.sleep(0.3)
    waiter.cancel()  # the worker woke for something else meanwhile
    job, _ = q.enqueue(_spec("a"), now=T0)
    thread.join(2.0)
    assert out == [False]
    stream = q.stream(CONVERT_GROUP, PRIORITY_BACKFILL)
    assert q.client.xpending(stream, q.group)["pending"] == 0  # not held by w1
    assert q.client.xlen(stream) == 1
    other = _queue(conn, redis_server.url, q.prefix, reconcile_s=5)
    claimed = other.claim(worker="w2", now=T0, lease_s=30)
    assert claimed is not None and claimed.id == job.id
    other.close()
    q.close()


def test_interrupt_waits_ends_a_block_at_once(conn, redis_server):
    q = _queue(conn, redis_server.url, f"t{uuid.uuid4().hex[:8]}", reconcile_s=5)
    thread, out = _in_thread(q.waiter(worker="w1").wait)
    time.sleep(0.3)
    t0 = time.monotonic()
    q.interrupt_waits()
    thread.join(2.0)
    assert out == [False] and time.monotonic() - t0 < 1.0
    assert q.available and q.n_outages == 0  # an interrupt is not an outage
    q.close()


def test_server_restarted_during_a_block_reconnects_with_backoff(conn, tmp_path):
    from tests.servers.redis import RedisServer

    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        q = _queue(conn, server.url, "blockcrash", reconcile_s=5)
        q.claim(worker="w1", now=T0, lease_s=30)
        thread, out = _in_thread(q.waiter(worker="w1").wait)
        time.sleep(0.3)
        server.kill()
        thread.join(3.0)
        assert out == [True]  # the broken read asks for a claim, which backs off
        assert not q.available and q.n_outages == 1
        assert q.claim(worker="w1", now=T0, lease_s=30) is None
        late, _ = q.enqueue(_spec("late"), now=T0)  # recorded while Redis is down
        server.start()
        got = None
        deadline = time.monotonic() + 20
        while got is None and time.monotonic() < deadline:
            q.waiter(worker="w1").wait()  # sleeps out the backoff, then reads
            got = q.claim(worker="w1", now=T0, lease_s=30)
        assert got is not None and got.id == late.id
        q.close()
    finally:
        server.stop()


def test_runner_on_redis_claims_work_from_another_process_at_once(
    tmp_path, redis_server
):
    """No in-process wake: only the server's delivery ends the idle wait."""
    import asyncio

    from dsa110_contimg.services._runner import JobOutcome, JobRunner
    from dsa110_contimg.utils.config import QueueConfig

    db = tmp_path / "state.sqlite3"
    cfg = QueueConfig(
        backend="redis",
        redis_url=redis_server.url,
        redis_prefix=f"t{uuid.uuid4().hex[:8]}",
        poll_interval_s=60,  # a poll would take a minute
    )
    started: dict[int, float] = {}

    async def handle(job):
        started[job.id] = time.monotonic()
        return JobOutcome()

    async def main() -> tuple[float, float]:
        with closing(open_db(db)) as own, closing(open_db(db)) as other:
            runner = JobRunner(own, cfg, worker_id="host:1:a")
            runner.add_lane("convert", [CONVERT_GROUP], handle, concurrency=2)
            stop = asyncio.Event()
            task = asyncio.create_task(runner.run(stop, grace_s=5))
            await asyncio.sleep(0.5)
            producer = _queue(other, redis_server.url, cfg.redis_prefix)
            t0 = time.monotonic()
            job, _ = producer.enqueue(_spec("a"), now=datetime.now(UTC))
            while job.id not in started and time.monotonic() - t0 < 10:
                await asyncio.sleep(0.01)
            latency = started.get(job.id, float("inf")) - t0
            t1 = time.monotonic()
            stop.set()
            await task
            stopped_in = time.monotonic() - t1
            producer.close()
            runner.queue.close()
            return latency, stopped_in

    latency, stopped_in = asyncio.run(main())
    assert latency < 1.0  # not poll_interval_s
    assert stopped_in < 2.0  # the blocked reads were interrupted (block_s 5)
