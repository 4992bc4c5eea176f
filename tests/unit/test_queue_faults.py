"""Queue and process faults of issue 15: no job runs twice, no orphan workers.

The queue tests run on every queue backend (fixture ``make_queue``: sqlite,
and redis on a throwaway server, marker ``scaleout``); the operator's cancel
goes to the state database directly, as ``dsa110-contimg cancel`` does.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest

from dsa110_contimg.exceptions import StateError
from dsa110_contimg.services._runner import JobOutcome, JobRunner
from dsa110_contimg.state import open_db
from dsa110_contimg.state.jobs import (
    CONVERT_GROUP,
    JobSpec,
    cancel_job,
    get_job,
    list_job_events,
)
from dsa110_contimg.utils.config_loader import QueueConfig

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def conn(state_target):
    with closing(open_db(state_target)) as c:
        yield c


@pytest.fixture
def q(conn, make_queue):
    return make_queue(conn)


def _spec(key: str = "2025-01-01T00:00:00") -> JobSpec:
    return JobSpec(CONVERT_GROUP, key, key, {"files": {}})


def test_requeue_of_pending_or_running_job_is_refused(q, conn) -> None:
    job, _ = q.enqueue(_spec(), now=T0)
    with pytest.raises(StateError, match="is pending"):
        q.requeue(job.id, now=T0, reason="operator")
    claimed = q.claim(worker="h:1:a", now=T0, lease_s=60)
    assert claimed is not None and claimed.state == "running"
    with pytest.raises(StateError, match=r"is running \(leased to h:1:a\).*cancel"):
        q.requeue(job.id, now=T0, reason="operator")
    after = get_job(conn, job.id)
    assert (after.state, after.attempts, after.lease_owner) == ("running", 1, "h:1:a")
    cancelled = q.cancel(job.id, now=T0 + timedelta(seconds=1))
    assert cancelled.state == "quarantined" and cancelled.lease_owner is None
    again = q.requeue(job.id, now=T0 + timedelta(seconds=2), reason="redo")
    assert again.state == "pending" and again.attempts == 0
    done_id = claim_and_finish(q)
    with pytest.raises(StateError, match="nothing to cancel"):
        q.cancel(done_id, now=T0)


def claim_and_finish(q) -> int:
    job = q.claim(worker="h:1:b", now=T0 + timedelta(seconds=3), lease_s=60)
    assert job is not None
    q.complete(job.id, worker="h:1:b", now=T0 + timedelta(seconds=4))
    return job.id


def test_worker_that_loses_its_lease_stops_and_discards_output(
    tmp_path, make_queue
) -> None:
    """A job cancelled by an operator mid-run: the worker stops, no result lands."""
    db = tmp_path / "state.sqlite3"
    cfg = QueueConfig(lease_s=5.0, heartbeat_interval_s=0.05, poll_interval_s=0.05)
    steps: list[str] = []

    async def main() -> None:
        with closing(open_db(db)) as conn:
            runner = JobRunner(conn, cfg, queue=make_queue(conn))
            started = asyncio.Event()

            async def handler(job) -> JobOutcome:
                steps.append("first half")
                started.set()
                await asyncio.sleep(1.0)  # the operator cancels during this
                steps.append("second half")
                return JobOutcome(result={"ms_path": "x"})

            runner.add_lane("convert", [CONVERT_GROUP], handler, concurrency=1)
            job, _ = runner.enqueue(_spec())
            stop = asyncio.Event()
            task = asyncio.create_task(runner.run(stop, grace_s=1.0))
            await asyncio.wait_for(started.wait(), 5)
            with closing(open_db(db)) as other:  # an operator's connection
                cancel_job(other, job.id, now=datetime.now(UTC))
            await asyncio.sleep(1.5)
            stop.set()
            await asyncio.wait_for(task, 10)
            final = get_job(conn, job.id)
            assert final.state == "quarantined" and final.result is None
            events = [e["to_state"] for e in list_job_events(conn, job.id)]
            assert events == ["pending", "running", "quarantined"]

    asyncio.run(main())
    assert steps == ["first half"]  # the second half never ran


def test_job_of_a_worker_that_stops_beating_runs_once_elsewhere(
    tmp_path, make_queue
) -> None:
    """Worker A hangs (no more heartbeats): its lease expires, B runs the job."""
    db = tmp_path / "state.sqlite3"
    cfg = QueueConfig(lease_s=1.0, heartbeat_interval_s=0.2, poll_interval_s=0.05)
    calls: list[str] = []

    async def main() -> None:
        with closing(open_db(db)) as conn_a, closing(open_db(db)) as conn_b:
            a = JobRunner(conn_a, cfg, queue=make_queue(conn_a))
            b = JobRunner(conn_b, cfg, queue=make_queue(conn_b))
            hang = asyncio.Event()

            async def hung(job) -> JobOutcome:
                calls.append("a")
                await hang.wait()  # never set: A is wedged
                return JobOutcome(result={"by": "a"})

            async def works(job) -> JobOutcome:
                calls.append("b")
                return JobOutcome(result={"by": "b"})

            a.add_lane("convert", [CONVERT_GROUP], hung, concurrency=1)
            b.add_lane("convert", [CONVERT_GROUP], works, concurrency=1)
            job, _ = a.enqueue(_spec())
            a.queue.heartbeat = lambda *args, **kw: None  # A's beats stop
            stops = asyncio.Event(), asyncio.Event()
            run_a = asyncio.create_task(a.run(stops[0], grace_s=0.0))
            for _ in range(100):
                await asyncio.sleep(0.02)
                if calls:
                    break
            run_b = asyncio.create_task(b.run(stops[1], grace_s=0.0))
            for _ in range(300):
                await asyncio.sleep(0.02)
                if get_job(conn_b, job.id).state == "done":
                    break
            for stop in stops:
                stop.set()
            await asyncio.wait_for(asyncio.gather(run_a, run_b), 10)
            final = get_job(conn_b, job.id)
            assert final.state == "done" and final.result == {"by": "b"}
            events = [e["to_state"] for e in list_job_events(conn_b, job.id)]
            assert events == ["pending", "running", "pending", "running", "done"]

    asyncio.run(main())
    assert calls == ["a", "b"]  # A started it, B finished it, nobody else ran it


_CHILD = r"""
import time
from dsa110_contimg.pipeline.orchestrator import PipelineOrchestrator
from dsa110_contimg.utils.config_loader import load_pipeline_config
config = load_pipeline_config(environment="testing", env={})
pool = PipelineOrchestrator(config, catalog=None)._get_executor()
pool.submit(time.sleep, 60).running() or time.sleep(2)
print(" ".join(str(p) for p in pool._processes), flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux")
def test_batch_pool_workers_die_with_their_parent(tmp_path) -> None:
    """kill -9 of a batch ``process`` (its orchestrator's pool) leaves no worker.

    Run in ``tmp_path``: the testing environment's relative paths (its state
    database among them) land there, never in the checkout.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        line = proc.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert pids, "the pool started no worker"
        assert all(_alive(p) for p in pids)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids), "a pool worker outlived its parent"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
