"""Queue and process faults of issue 15: no job runs twice, no orphan workers."""

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
    claim_job,
    enqueue_job,
    get_job,
    list_job_events,
    requeue_job,
)
from dsa110_contimg.utils.config_loader import QueueConfig

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def conn(state_target):
    with closing(open_db(state_target)) as c:
        yield c


def _spec(key: str = "2025-01-01T00:00:00") -> JobSpec:
    return JobSpec(CONVERT_GROUP, key, key, {"files": {}})


def test_requeue_of_pending_or_running_job_is_refused(conn) -> None:
    job, _ = enqueue_job(conn, _spec(), now=T0)
    with pytest.raises(StateError, match="is pending"):
        requeue_job(conn, job.id, now=T0, reason="operator")
    claimed = claim_job(conn, worker="h:1:a", now=T0, lease_s=60)
    assert claimed is not None and claimed.state == "running"
    with pytest.raises(StateError, match=r"is running \(leased to h:1:a\).*cancel"):
        requeue_job(conn, job.id, now=T0, reason="operator")
    after = get_job(conn, job.id)
    assert (after.state, after.attempts, after.lease_owner) == ("running", 1, "h:1:a")
    cancelled = cancel_job(conn, job.id, now=T0 + timedelta(seconds=1))
    assert cancelled.state == "quarantined" and cancelled.lease_owner is None
    again = requeue_job(conn, job.id, now=T0 + timedelta(seconds=2), reason="redo")
    assert again.state == "pending" and again.attempts == 0
    done_id = claim_and_finish(conn)
    with pytest.raises(StateError, match="nothing to cancel"):
        cancel_job(conn, done_id, now=T0)


def claim_and_finish(conn) -> int:
    from dsa110_contimg.state.jobs import complete_job

    job = claim_job(conn, worker="h:1:b", now=T0 + timedelta(seconds=3), lease_s=60)
    assert job is not None
    complete_job(conn, job.id, worker="h:1:b", now=T0 + timedelta(seconds=4))
    return job.id


def test_worker_that_loses_its_lease_stops_and_discards_output(tmp_path) -> None:
    """A job cancelled by an operator mid-run: the worker stops, no result lands."""
    db = tmp_path / "state.sqlite3"
    cfg = QueueConfig(lease_s=5.0, heartbeat_interval_s=0.05, poll_interval_s=0.05)
    steps: list[str] = []

    async def main() -> None:
        with closing(open_db(db)) as conn:
            runner = JobRunner(conn, cfg)
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
    """kill -9 of a batch ``process`` (its orchestrator's pool) leaves no worker."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True, env=env
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
