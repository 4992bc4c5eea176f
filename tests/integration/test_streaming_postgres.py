"""Acceptance of ``database.url: postgresql://...``: PostgreSQL stopped mid-stream.

The stream (``python -m dsa110_contimg.services``) runs over three
testing-size simulated groups with the fake imager, its state (and its job
queue, ``queue.backend: sqlite`` on the state database) in a throwaway
PostgreSQL server. As soon as the first job runs the server is stopped
(``pg_ctl stop -m fast``: every connection cut), stays down for 10 s and
starts again on the same data directory: the services keep running,
reconnect with backoff, and every job ends ``done`` having been claimed
exactly once (nothing lost, nothing run twice), with whole products, one
``products`` row per product and no duplicate photometry rows.

Leases (the writer claim, job leases) last ``queue.lease_s``: 30 s here (the
default is 120 s), longer than the outage. An outage longer than the lease
ends the claim by design (fencing): the stream stops and its supervisor
restarts it, as after a crash.
"""

from __future__ import annotations

import time
from contextlib import closing
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

from dsa110_contimg.state.db import connect

pytestmark = [pytest.mark.integration, pytest.mark.scaleout]

OUTAGE_S = 10.0
LEASE_S = 30.0  # > OUTAGE_S: the leases outlive the outage


def test_postgres_stopped_for_10s_mid_stream(observation, tmp_path: Path) -> None:  # noqa: F811
    pytest.importorskip("psycopg")
    from tests.servers.postgres import PostgresServer, find_bindir

    if find_bindir() is None:
        pytest.skip("PostgreSQL binaries not installed (apt-get install postgresql)")
    server = PostgresServer().init().start()  # own tmp dir: postgres can enter it
    try:
        url = server.create_database()
        stream = Stream(
            tmp_path / "stream",
            observation.sky_path,
            database={"url": url},
            queue={"lease_s": LEASE_S},
            imaging={"backend": "fake", "fake_sky_path": str(observation.sky_path)},
        )
        deliver(observation.groups[:3], stream.incoming)
        stream.start()
        stream.wait(
            lambda: any(j.state == "running" for j in stream.jobs()),
            "the first job to start",
            timeout_s=60,
        )
        n_done_at_stop = sum(j.state == "done" for j in stream.jobs())
        server.stop("fast")
        stopped_at = time.monotonic()
        time.sleep(OUTAGE_S)
        assert stream.proc.poll() is None, stream.tail()
        server.start()
        stream.wait(lambda: stream.finished(FULL_RUN), "the run to finish", 120)
        stream.stop()
        assert stream.proc.returncode == 0, stream.tail()
        log = stream.out.read_text(errors="replace")
        assert "state db unreachable" in log or "connection lost" in log, log[-3000:]
        jobs = stream.jobs()
        assert len({(j.kind, j.key) for j in jobs}) == len(jobs) == 9
        for job in jobs:
            claims = [e for e in stream.events(job.id) if e["to_state"] == "running"]
            assert len(claims) == 1, (job.kind, job.key, claims)  # never run twice
        assert n_done_at_stop < len(jobs), "the outage came after the run"
        with closing(connect(url, readonly=True)) as conn:
            rows = [tuple(r) for r in conn.execute("SELECT kind, path FROM products")]
        assert rows and len(rows) == len(set(rows)), "duplicate products rows"
        assert_products_complete(stream.base)
        assert_no_debris(stream.base)
        snapshot(stream.base)  # asserts no duplicate photometry rows
        print(
            f"\n{n_done_at_stop} of 9 jobs done when PostgreSQL was stopped; "
            f"run finished {time.monotonic() - stopped_at:.1f} s after the stop "
            f"({OUTAGE_S:g} s outage)"
        )
    finally:
        server.cleanup()
