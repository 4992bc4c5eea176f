"""Acceptance of ``queue.backend: redis``: redis-server killed mid-stream.

The stream (``python -m dsa110_contimg.services``) runs over three
testing-size simulated groups with the fake imager and its jobs delivered by
Redis Streams from a throwaway redis-server (AOF on). The server is killed
with SIGKILL as soon as the first job runs, stays down for 10 s and restarts
on the same data directory: the services keep running, reconnect with
backoff, and every job ends ``done`` having been claimed exactly once (nothing lost,
nothing run twice), with whole products and no duplicate photometry rows.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.integration.test_streaming import (
    FULL_RUN,
    Stream,
    _cleanup,  # noqa: F401 - autouse fixture: kill leftover streams
    assert_no_debris,
    assert_products_complete,
    deliver,
    observation,  # noqa: F401 - module-scoped fixture
    snapshot,
)
from tests.servers.redis import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.scaleout]

OUTAGE_S = 10.0


def test_redis_killed_for_10s_mid_stream(observation, tmp_path: Path) -> None:  # noqa: F811
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        stream = Stream(
            tmp_path / "stream",
            observation.sky_path,
            queue={"backend": "redis", "redis_url": server.url},
            imaging={"backend": "fake", "fake_sky_path": str(observation.sky_path)},
        )
        deliver(observation.groups[:3], stream.incoming)
        stream.start()
        stream.wait(
            lambda: any(j.state == "running" for j in stream.jobs()),
            "the first job to start",
            timeout_s=60,
        )
        n_done_at_kill = sum(j.state == "done" for j in stream.jobs())
        server.kill()
        killed_at = time.monotonic()
        time.sleep(OUTAGE_S)
        assert stream.proc.poll() is None, stream.tail()
        server.start()
        stream.wait(lambda: stream.finished(FULL_RUN), "the run to finish", 120)
        # an ack lost with the killed server's last AOF second comes back as a
        # held entry of a done job; the sweep acknowledges it from the record
        stream.wait(
            lambda: all(
                s["pending"] == 0
                for s in stream.status()["delivery"]["streams"].values()
            ),
            "every held entry of a finished job acknowledged",
            60,
        )
        stream.stop()
        assert stream.proc.returncode == 0, stream.tail()
        log = stream.out.read_text(errors="replace")
        assert "redis unreachable" in log and "redis reachable again" in log
        jobs = stream.jobs()
        assert len({(j.kind, j.key) for j in jobs}) == len(jobs) == 9
        for job in jobs:
            claims = [e for e in stream.events(job.id) if e["to_state"] == "running"]
            assert len(claims) == 1, (job.kind, job.key, claims)  # never run twice
        assert n_done_at_kill < len(jobs), "the outage came after the run"
        delivery = stream.status()["delivery"]  # dsa110-contimg status --json
        assert delivery["reachable"] and delivery["dead_letters"] == 0
        assert all(s["pending"] == 0 for s in delivery["streams"].values())
        assert_products_complete(stream.base)
        assert_no_debris(stream.base)
        snapshot(stream.base)  # asserts no duplicate photometry rows
        print(
            f"\n{n_done_at_kill} of 9 jobs done when redis-server was killed; "
            f"run finished {time.monotonic() - killed_at:.1f} s after the kill "
            f"({OUTAGE_S:g} s outage)"
        )
    finally:
        server.stop()
