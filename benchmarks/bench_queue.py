"""Job-queue round-trip benchmark on each queue backend (sqlite, redis).

Usage::

    python -m benchmarks.bench_queue [--n-jobs 500] [--redis-url URL] [--out FILE]

For each backend (`state.queue.open_queue`; the state database is a SQLite
file in a temporary directory, as in the embedded default):

- *round trip*: one job at a time, ``enqueue -> claim -> complete``; the
  latency of each trip (ms; median, 95th percentile, max) and trips/s;
- *throughput*: ``n_jobs`` enqueued, then claimed and completed one by one;
  operations/s of each phase.

Without ``--redis-url`` a throwaway ``redis-server`` is started on loopback
(`tests.servers.redis.RedisServer`: AOF on, ``appendfsync everysec``) and
stopped afterwards; the redis backend is skipped when none is installed.
Results go to ``benchmarks/results/queue.json`` and ``queue.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from dsa110_contimg.state import open_db
from dsa110_contimg.state.jobs import CONVERT_GROUP, JobSpec
from dsa110_contimg.state.queue import JobQueue, SqliteJobQueue

__all__ = ["main", "run_backend"]

RESULTS = Path(__file__).resolve().parent / "results"
WORKER = "bench:1:a"
KINDS = (CONVERT_GROUP,)  # one lane, as the services claim


def _spec(i: int, tag: str) -> JobSpec:
    key = f"{tag}-{i:06d}"
    return JobSpec(CONVERT_GROUP, key, "2025-01-01T00:00:00", {"files": {}})


def _round_trips(q: JobQueue, n: int) -> dict[str, float]:
    lat_ms = []
    t_all = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        now = datetime.now(UTC)
        job, _ = q.enqueue(_spec(i, "rt"), now=now)
        got = q.claim(worker=WORKER, now=now, lease_s=60, kinds=KINDS)
        if got is None or got.id != job.id:
            msg = f"round trip {i}: claimed {got} instead of job {job.id}"
            raise RuntimeError(msg)
        q.complete(job.id, worker=WORKER, now=now)
        lat_ms.append(1e3 * (time.perf_counter() - t0))
    total = time.perf_counter() - t_all
    lat_ms.sort()
    return {
        "n": n,
        "median_ms": statistics.median(lat_ms),
        "p95_ms": lat_ms[int(0.95 * (n - 1))],
        "max_ms": lat_ms[-1],
        "trips_per_s": n / total,
    }


def _throughput(q: JobQueue, n: int) -> dict[str, float]:
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    for i in range(n):
        q.enqueue(_spec(i, "tp"), now=now)
    t1 = time.perf_counter()
    done = 0
    while job := q.claim(worker=WORKER, now=now, lease_s=60, kinds=KINDS):
        q.complete(job.id, worker=WORKER, now=now)
        done += 1
    t2 = time.perf_counter()
    if done != n:
        msg = f"throughput: {done} of {n} jobs claimed"
        raise RuntimeError(msg)
    return {
        "n": n,
        "enqueue_per_s": n / (t1 - t0),
        "claim_complete_per_s": n / (t2 - t1),
    }


def run_backend(backend: str, n_jobs: int, redis_url: str | None) -> dict:
    """Measure one backend on a fresh state database; return its figures."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        closing(open_db(Path(tmp) / "state.sqlite3")) as conn,
    ):
        if backend == "sqlite":
            q: JobQueue = SqliteJobQueue(conn)
        else:
            from dsa110_contimg.state.redis_queue import RedisJobQueue

            q = RedisJobQueue(conn, url=str(redis_url), prefix=f"bench{time.time_ns()}")
        try:
            return {
                "backend": backend,
                "round_trip": _round_trips(q, n_jobs),
                "throughput": _throughput(q, n_jobs),
            }
        finally:
            q.close()


def markdown(report: dict) -> str:
    """Render the report as a Markdown table."""
    lines = [
        "# Job-queue round trip (enqueue -> claim -> complete)",
        "",
        f"{report['n_jobs']} jobs per phase; state database: SQLite file (WAL) "
        f"in a tmp dir; redis: {report['redis']}; host: {report['host']}.",
        "",
        "| backend | median ms | p95 ms | max ms | trips/s | enqueue/s "
        "| claim+complete/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["backends"]:
        rt, tp = row["round_trip"], row["throughput"]
        lines.append(
            f"| {row['backend']} | {rt['median_ms']:.2f} | {rt['p95_ms']:.2f} "
            f"| {rt['max_ms']:.2f} | {rt['trips_per_s']:.0f} "
            f"| {tp['enqueue_per_s']:.0f} | {tp['claim_complete_per_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-jobs", type=int, default=500)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "queue.json")
    args = parser.parse_args(argv)
    backends = [run_backend("sqlite", args.n_jobs, None)]
    server = None
    redis_note = "not installed (skipped)"
    url = args.redis_url
    if url is None and shutil.which("redis-server"):
        from tests.servers.redis import RedisServer

        server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-redis-")))
        server.start()
        url = server.url
        redis_note = "throwaway redis-server on loopback, AOF everysec"
    elif url is not None:
        redis_note = url
    try:
        if url is not None:
            backends.append(run_backend("redis", args.n_jobs, url))
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.data_dir, ignore_errors=True)
    report = {
        "n_jobs": args.n_jobs,
        "redis": redis_note,
        "host": f"{platform.node()} ({platform.machine()})",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "backends": backends,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
