"""The ``dead-letters`` command and the replay of a dead-lettered job.

On ``sqlite`` the dead letters are the quarantined jobs; on ``redis`` the
entries of the dead-letter stream (delivered more than ``max_deliveries``
times). ``requeue`` replays one: on Redis it leaves the dead-letter stream and
is delivered exactly once more.
"""

from __future__ import annotations

import json
import time
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsa110_contimg.exceptions import ExternalToolError
from dsa110_contimg.state import open_db
from dsa110_contimg.state.jobs import CONVERT_GROUP, JobSpec, get_job
from dsa110_contimg.state.queue_reads import DEAD_LETTER_FIELDS

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
BACKOFF = {"backoff_base_s": 10.0, "backoff_max_s": 60.0}


def _spec(key: str) -> JobSpec:
    return JobSpec(CONVERT_GROUP, key, key, {"files": {}})


def _poison(q, conn, key: str = "poison") -> int:
    """Make one dead letter on ``q``'s backend; return its job id.

    The job fails once (its last error), then its workers die while it runs:
    on Redis each death is a delivery of its entry (``max_deliveries=2``),
    until the third goes to the dead-letter stream; on SQLite an operator
    quarantines it.
    """
    job, _ = q.enqueue(_spec(key), now=T0, max_attempts=10)
    now = T0
    assert q.claim(worker="w0", now=now, lease_s=30).id == job.id
    q.fail(job.id, ExternalToolError("casa crashed"), worker="w0", now=now, **BACKOFF)
    now += timedelta(seconds=11)
    if q.backend == "sqlite":
        assert q.claim(worker="w1", now=now, lease_s=30).id == job.id
        q.quarantine(job.id, reason="crashes its worker", now=now, worker="w1")
        return job.id
    for worker in ("w1", "w2"):  # each leases the job and dies (no heartbeat)
        assert q.claim(worker=worker, now=now, lease_s=30).id == job.id
        q._entries.clear()  # its process is gone
        time.sleep(0.15)
        now += timedelta(seconds=31)
        assert [j.id for j in q.reclaim_expired(now=now)] == [job.id]
    assert q.claim(worker="w3", now=now, lease_s=30) is None  # dead-lettered
    assert get_job(conn, job.id).state == "quarantined"
    return job.id


@pytest.fixture
def conn(tmp_path: Path):
    with closing(open_db(tmp_path / "state.sqlite3")) as c:
        yield c


def test_dead_lettered_rows_name_the_job_and_its_last_error(conn, make_queue):
    q = make_queue(conn, min_idle_s=0.1, max_deliveries=2)
    job_id = _poison(q, conn)
    q.enqueue(_spec("healthy"), now=T0)  # pending: not a dead letter
    (row,) = q.dead_lettered()
    assert tuple(row) == DEAD_LETTER_FIELDS
    assert (row["job_id"], row["kind"], row["key"]) == (job_id, CONVERT_GROUP, "poison")
    assert row["state"] == "quarantined"
    assert row["last_error"] == "ExternalToolError: casa crashed"
    at = datetime.fromisoformat(str(row["at"]))
    if q.backend == "redis":  # 1 + 2 deliveries of the entry after the retry
        assert row["deliveries"] == 3 and "delivered 3 times" in row["reason"]
        assert row["entry"] and abs(datetime.now(UTC) - at) < timedelta(minutes=1)
    else:  # attempts: the failed one and the quarantined one
        assert row["deliveries"] == 2 and row["reason"] == "crashes its worker"
        assert row["entry"] is None and at == T0 + timedelta(seconds=11)


def test_requeue_replays_a_dead_letter_exactly_once(conn, make_queue):
    q = make_queue(conn, min_idle_s=0.1, max_deliveries=2)
    job_id = _poison(q, conn)
    now = T0 + timedelta(minutes=5)
    back = q.requeue(job_id, now=now, reason="fixed the calibrator")
    assert back.state == "pending"
    assert q.dead_lettered() == []  # it left the dead-letter stream
    again = q.claim(worker="w4", now=now, lease_s=30)
    assert again is not None and again.id == job_id
    assert q.claim(worker="w5", now=now, lease_s=30) is None  # not twice
    q.complete(job_id, worker="w4", now=now)
    assert q.claim(worker="w5", now=now + timedelta(seconds=1), lease_s=30) is None
    assert get_job(conn, job_id).state == "done"
    if q.backend == "redis":
        assert q.dead_letters() == []
        for stream in q._groups:  # nothing held, nothing left to deliver
            assert q.client.xpending(stream, q.group)["pending"] == 0
            assert q.client.xlen(stream) == 0


def test_dead_letters_command_lists_and_requeue_replays(
    tmp_path, make_queue, queue_backend, request
):
    from dsa110_contimg.cli import cli

    db = tmp_path / "cli.sqlite3"
    common = ["--env", "testing", "--set", f"paths.state_db={db}"]
    prefix = f"t{uuid.uuid4().hex[:8]}"
    if queue_backend == "redis":
        url = request.getfixturevalue("redis_server").url
        common += [
            "--set",
            "queue.backend=redis",
            "--set",
            f"queue.redis_url={url}",
            "--set",
            f"queue.redis_prefix={prefix}",
        ]
    with closing(open_db(db)) as conn:
        q = make_queue(conn, min_idle_s=0.1, max_deliveries=2)
        if queue_backend == "redis":
            q.prefix, q.group = prefix, f"{prefix}:workers"
        job_id = _poison(q, conn)
    runner = CliRunner()
    listed = runner.invoke(cli, ["dead-letters", *common, "--json"])
    assert listed.exit_code == 0, listed.output
    report = json.loads(listed.stdout)
    assert report["backend"] == queue_backend
    assert [r["job_id"] for r in report["dead_letters"]] == [job_id]
    assert report["dead_letters"][0]["key"] == "poison"
    text = runner.invoke(cli, ["dead-letters", *common])
    assert text.exit_code == 0, text.output
    assert f"#{job_id} {CONVERT_GROUP} poison (quarantined)" in text.output
    assert "ExternalToolError: casa crashed" in text.output
    assert "dsa110-contimg requeue JOB_ID" in text.output
    replay = runner.invoke(cli, ["requeue", *common, str(job_id)])
    assert replay.exit_code == 0, replay.output
    after = json.loads(runner.invoke(cli, ["dead-letters", *common, "--json"]).stdout)
    assert after["dead_letters"] == []
    with closing(open_db(db)) as conn:
        assert get_job(conn, job_id).state == "pending"
        if queue_backend == "redis":  # one new entry: delivered once
            stream = q.stream(CONVERT_GROUP, get_job(conn, job_id).priority)
            assert q.client.xlen(stream) == 1
