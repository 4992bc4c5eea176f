"""Tests of the durable job queue with a fake clock, on every queue backend.

The ``q`` fixture is a `state.queue.JobQueue` of each backend (``sqlite``, and
``redis`` on a throwaway redis-server, marker ``scaleout``) on the ``conn``
state database; reads use ``conn`` directly, because the state database is the
job record on both backends.
"""

from __future__ import annotations

import threading
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dsa110_contimg.exceptions import (
    ExternalToolError,
    InputDataError,
    ResourceError,
    StateError,
)
from dsa110_contimg.state import open_db
from dsa110_contimg.state.jobs import (
    CONVERT_GROUP,
    PRIORITY_BACKFILL,
    PRIORITY_LIVE,
    PROCESS_BLOCK,
    UPDATE_VARIABILITY,
    JobSpec,
    backoff_delay_s,
    count_jobs,
    count_jobs_by_kind,
    find_job,
    get_job,
    get_service_state,
    is_retryable,
    list_job_events,
    list_jobs,
    set_service_state,
)

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
W = "host:1:a"
BACKOFF = {"backoff_base_s": 10.0, "backoff_max_s": 60.0}


@pytest.fixture
def conn(state_target):
    with closing(open_db(state_target)) as c:
        yield c


@pytest.fixture
def q(conn, make_queue):
    return make_queue(conn)


def spec(key: str = "2025-01-01T00:00:00", **kw) -> JobSpec:
    kw.setdefault("data_time_iso", key)
    return JobSpec(kind=kw.pop("kind", CONVERT_GROUP), key=key, **kw)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_enqueue_is_idempotent(q, conn) -> None:
    job, created = q.enqueue(spec(payload={"files": ["a"]}), now=T0)
    assert created and job.state == "pending" and job.payload == {"files": ["a"]}
    again, created2 = q.enqueue(spec(payload={"files": ["b"]}), now=at(5))
    assert not created2 and again.id == job.id and again.payload == {"files": ["a"]}
    assert count_jobs(conn)["pending"] == 1
    other_kind, created3 = q.enqueue(spec(kind=PROCESS_BLOCK), now=T0)
    assert created3 and other_kind.id != job.id
    events = list_job_events(conn, job.id)
    assert [(e["from_state"], e["to_state"]) for e in events] == [(None, "pending")]


def test_enqueue_rejects_bad_input(q, conn) -> None:
    with pytest.raises(ValueError, match="kind"):
        q.enqueue(spec(kind="mosaic"), now=T0)
    with pytest.raises(ValueError, match="key"):
        q.enqueue(spec(key=""), now=T0)
    with pytest.raises(ValueError, match="naive"):
        q.enqueue(spec(), now=datetime(2025, 1, 1))


def test_claim_order_live_first_then_oldest_data(q, conn) -> None:
    q.enqueue(spec("b", data_time_iso="2025-01-01T00:05"), now=T0)
    q.enqueue(spec("a", data_time_iso="2025-01-01T00:00"), now=T0)
    q.enqueue(
        spec("live", data_time_iso="2025-01-01T11:59", priority=PRIORITY_LIVE),
        now=T0,
    )
    keys = []
    while (job := q.claim(worker=W, now=T0, lease_s=30)) is not None:
        keys.append(job.key)
        assert job.state == "running" and job.attempts == 1 and job.lease_owner == W
    assert keys == ["live", "a", "b"]
    assert PRIORITY_LIVE < PRIORITY_BACKFILL


def test_claim_filters_kinds(q, conn) -> None:
    q.enqueue(spec("g"), now=T0)
    assert q.claim(worker=W, now=T0, lease_s=30, kinds=[PROCESS_BLOCK]) is None
    assert q.claim(worker=W, now=T0, lease_s=30, kinds=[]) is None
    assert q.claim(worker=W, now=T0, lease_s=30, kinds=[CONVERT_GROUP])


def test_complete_enqueues_follow_ups_atomically(q, conn) -> None:
    block, _ = q.enqueue(spec("blk", kind=PROCESS_BLOCK), now=T0)
    q.claim(worker=W, now=T0, lease_s=30)
    follow = spec("blk", kind=UPDATE_VARIABILITY, payload={"csv": "p.csv"})
    done = q.complete(
        block.id, worker=W, now=at(3), result={"n": 2}, follow_ups=[follow]
    )
    assert done.state == "done" and done.result == {"n": 2}
    assert done.finished_at is not None and done.lease_owner is None
    var = find_job(conn, UPDATE_VARIABILITY, "blk")
    assert var is not None and var.state == "pending"
    # variability done, then the block is redone: the follow-up is requeued
    q.claim(worker=W, now=at(4), lease_s=30)
    q.complete(var.id, worker=W, now=at(5))
    q.requeue(block.id, now=at(6), reason="late group")
    q.claim(worker=W, now=at(6), lease_s=30, kinds=[PROCESS_BLOCK])
    q.complete(block.id, worker=W, now=at(7), follow_ups=[follow])
    again = get_job(conn, var.id)
    assert again.state == "pending" and again.attempts == 0
    assert "input remade" in list_job_events(conn, var.id)[-1]["reason"]


def test_retryable_error_backs_off_then_fails(q, conn) -> None:
    job, _ = q.enqueue(spec(), now=T0, max_attempts=3)
    err = ExternalToolError("wsclean was killed by signal 9")
    now = T0
    delays = []
    for attempt in range(1, 4):
        claimed = q.claim(worker=W, now=now, lease_s=30)
        assert claimed is not None and claimed.attempts == attempt
        job = q.fail(job.id, err, worker=W, now=now, **BACKOFF)
        if attempt < 3:
            assert job.state == "pending"
            assert job.error_class == "ExternalToolError"
            wait_s = (datetime.fromisoformat(job.not_before_at) - now).total_seconds()
            delays.append(wait_s)
            # not runnable before its backoff
            assert q.claim(worker=W, now=now, lease_s=30) is None
            now += timedelta(seconds=wait_s)
    assert delays == [10.0, 20.0]
    assert (
        job.state == "failed"
        and "none left" in list_job_events(conn, job.id)[-1]["reason"]
    )


def test_non_retryable_error_quarantines_with_reason_and_inputs(q, conn) -> None:
    job, _ = q.enqueue(spec(payload={"files": ["x_sb03.hdf5"]}), now=T0)
    q.claim(worker=W, now=T0, lease_s=30)
    job = q.fail(
        job.id,
        InputDataError("x_sb03.hdf5: truncated"),
        worker=W,
        now=at(1),
        **BACKOFF,
    )
    assert job.state == "quarantined"
    assert job.quarantine_reason == "InputDataError: x_sb03.hdf5: truncated"
    assert job.payload == {"files": ["x_sb03.hdf5"]}
    back = q.requeue(job.id, now=at(2), reason="file re-transferred")
    assert back.state == "pending" and back.attempts == 0
    assert back.quarantine_reason is None and back.error_class is None
    states = [e["to_state"] for e in list_job_events(conn, job.id)]
    assert states == ["pending", "running", "quarantined", "pending"]


def test_retryable_classification() -> None:
    assert is_retryable(ResourceError("disk full"))
    assert is_retryable(OSError(28, "No space left on device"))
    assert not is_retryable(InputDataError("bad"))
    assert is_retryable(RuntimeError("unexpected"))
    assert backoff_delay_s(0, base_s=5, max_s=100) == 0
    assert backoff_delay_s(1, base_s=5, max_s=100) == 5
    assert backoff_delay_s(10, base_s=5, max_s=100) == 100


def test_illegal_transitions_raise_state_error(q, conn) -> None:
    job, _ = q.enqueue(spec(), now=T0)
    with pytest.raises(StateError, match="is pending"):
        q.complete(job.id, worker=W, now=T0)
    with pytest.raises(StateError, match="is pending; only done, failed or quaran"):
        q.requeue(job.id, now=T0, reason="x")
    q.claim(worker=W, now=T0, lease_s=30)
    with pytest.raises(StateError, match="not 'other'"):
        q.complete(job.id, worker="other", now=T0)
    with pytest.raises(StateError, match="no job with id 999"):
        get_job(conn, 999)
    # a failed transition leaves no trace and no open transaction
    assert not conn.in_transaction
    assert get_job(conn, job.id).state == "running"


def test_heartbeat_and_lease_expiry(q, conn) -> None:
    job, _ = q.enqueue(spec(), now=T0, max_attempts=2)
    q.claim(worker=W, now=T0, lease_s=30)
    q.heartbeat(job.id, worker=W, now=at(20), lease_s=30)
    assert q.reclaim_expired(now=at(45)) == []  # renewed until 50 s
    (back,) = q.reclaim_expired(now=at(51))
    assert back.state == "pending" and back.lease_owner is None
    with pytest.raises(StateError, match="reclaimed"):
        q.heartbeat(job.id, worker=W, now=at(52), lease_s=30)
    # a job that keeps killing its worker ends failed, not in an endless loop
    q.claim(worker="w2", now=at(60), lease_s=30)
    (dead,) = q.reclaim_expired(now=at(100))
    assert dead.state == "failed" and dead.error_class == "LeaseLost"


def test_reclaim_orphans_at_startup(q, conn) -> None:
    a, _ = q.enqueue(spec("a"), now=T0)
    b, _ = q.enqueue(spec("b"), now=T0)
    q.claim(worker="host:111:dead", now=T0, lease_s=300)
    q.claim(worker="host:222:alive", now=T0, lease_s=300)
    back = q.reclaim_orphaned(
        now=at(1), is_orphaned=lambda owner: owner.endswith("dead")
    )
    assert [j.key for j in back] == ["a"]
    assert get_job(conn, b.id).state == "running"


def test_release_does_not_count_attempt(q, conn) -> None:
    job, _ = q.enqueue(spec(), now=T0)
    q.claim(worker=W, now=T0, lease_s=30)
    released = q.release(job.id, worker=W, now=at(1), reason="shutdown")
    assert released.state == "pending" and released.attempts == 0
    assert q.claim(worker=W, now=at(1), lease_s=30).attempts == 1


def test_quarantine_directly_and_from_pending(q, conn) -> None:
    job, created = q.enqueue(
        spec("q"), now=T0, quarantine_reason="sb05 missing after 600 s"
    )
    assert created and job.state == "quarantined"
    assert job.quarantine_reason == "sb05 missing after 600 s"
    other, _ = q.enqueue(spec("p"), now=T0)
    assert q.quarantine(other.id, reason="operator", now=T0).state == ("quarantined")
    assert [j.key for j in list_jobs(conn, states=["quarantined"])] == ["q", "p"]
    assert count_jobs_by_kind(conn)[CONVERT_GROUP]["quarantined"] == 2


def test_service_state_roundtrip(conn) -> None:
    set_service_state(conn, "intake", {"paused": True, "reason": "disk"}, now=T0)
    set_service_state(conn, "intake", {"paused": False}, now=at(1))
    state = get_service_state(conn)
    assert state["intake"]["paused"] is False
    assert state["intake"]["updated_at"].startswith("2025-01-01T12:00:01")


def test_concurrent_claims_never_share_a_job(tmp_path: Path, make_queue) -> None:
    path = tmp_path / "state.sqlite3"
    with closing(open_db(path)) as c:
        q = make_queue(c)
        for i in range(40):
            q.enqueue(spec(f"g{i:02d}"), now=T0)
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        with closing(open_db(path)) as c:
            mine = make_queue(c)
            while (job := mine.claim(worker=name, now=T0, lease_s=30)) is not None:
                with lock:
                    claimed.append(job.key)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == [f"g{i:02d}" for i in range(40)]


def test_transition_inside_open_transaction_is_refused(q, conn) -> None:
    conn.execute("BEGIN")
    with pytest.raises(ValueError, match="open transaction"):
        q.enqueue(spec(), now=T0)
    conn.rollback()


def test_job_events_are_immutable_history(q, conn) -> None:
    job, _ = q.enqueue(spec(), now=T0)
    q.claim(worker=W, now=at(1), lease_s=30)
    q.complete(job.id, worker=W, now=at(2))
    events = list_job_events(conn, job.id)
    assert [e["created_at"][11:19] for e in events] == [
        "12:00:00",
        "12:00:01",
        "12:00:02",
    ]
    assert all(e["kind"] == CONVERT_GROUP for e in events)
    assert job.to_dict()["payload_json"] == {}
