"""Job-queue round-trip benchmark on each queue backend (sqlite, redis).

Usage::

    python -m benchmarks.bench_queue [--n-jobs 500] [--redis-url URL] [--out FILE]

For each backend (`state.queue.open_queue`; the state database is a SQLite
file in a temporary directory, as in the embedded default):

- *round trip*: one job at a time, ``enqueue -> claim -> complete``; the
  latency of each trip (ms; median, 95th percentile, max) and trips/s;
- *throughput*: ``n_jobs`` enqueued, then claimed and completed one by one;
  operations/s of each phase;
- *waiting worker*: a `services._runner.JobRunner` (the services' claim loop,
  lanes as an ``ms_processor``: conversion x2, block x1) idles in a thread on
  its own database connection and queue; another connection enqueues one job
  at a random moment and the time until the runner's handler starts is the
  latency (ms; the cross-process case: no in-process wake-up);
- *idle worker*: the same runner with nothing to do for ``--idle-s`` seconds:
  Redis commands per second (``INFO commandstats``, the benchmark's own
  ``INFO`` calls excluded), the process's CPU time per second, and
  redis-server's CPU time per second.

Without ``--redis-url`` a throwaway ``redis-server`` is started on loopback
(`tests.servers.redis.RedisServer`: AOF on, ``appendfsync everysec``) and
stopped afterwards; the redis backend is skipped when none is installed.
Results go to ``benchmarks/results/queue.json`` and ``queue.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import resource
import shutil
import statistics
import tempfile
import threading
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from dsa110_contimg.state import open_db
from dsa110_contimg.state.jobs import CONVERT_GROUP, PROCESS_BLOCK, JobSpec
from dsa110_contimg.state.queue import JobQueue, SqliteJobQueue, open_queue
from dsa110_contimg.utils.config import QueueConfig

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


class _IdleRunner:
    """A `JobRunner` with an ``ms_processor``'s lanes, in a thread of its own."""

    def __init__(self, db: Path, cfg: QueueConfig) -> None:
        from dsa110_contimg.services._runner import JobOutcome, JobRunner

        self.started: dict[int, float] = {}
        self._got = threading.Condition()
        self._ready = threading.Event()
        self._cfg = cfg
        self._db = db
        self._runner_cls, self._outcome = JobRunner, JobOutcome
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        self._ready.wait(30)

    async def _handle(self, job) -> object:
        with self._got:
            self.started[job.id] = time.perf_counter()
            self._got.notify_all()
        return self._outcome()

    def _main(self) -> None:
        with closing(open_db(self._db)) as conn:
            runner = self._runner_cls(conn, self._cfg, worker_id="bench:idle:a")
            runner.add_lane("convert", [CONVERT_GROUP], self._handle, concurrency=2)
            runner.add_lane("block", [PROCESS_BLOCK], self._handle, concurrency=1)

            async def main() -> None:
                self._loop = asyncio.get_running_loop()
                self._stop = asyncio.Event()
                self._ready.set()
                await runner.run(self._stop, grace_s=5)

            asyncio.run(main())
            runner.queue.close()

    def wait_for(self, job_id: int, timeout_s: float) -> float:
        """Return when the handler of ``job_id`` started (perf_counter, s)."""
        with self._got:
            self._got.wait_for(lambda: job_id in self.started, timeout_s)
        return self.started[job_id]

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


def _server_cpu_s(client) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _calls(client) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def _waiting_worker(
    db: Path, cfg: QueueConfig, n: int, idle_s: float, redis_url: str | None
) -> dict[str, float]:
    """Round trips to a runner that waits for work, then its idle cost."""
    with closing(open_db(db)) as conn:
        q = open_queue(cfg, conn)
        runner = _IdleRunner(db, cfg)
        try:
            time.sleep(1.0)  # the runner is up and idle
            rng = random.Random(1)
            lat_ms = []
            for i in range(n):
                time.sleep(rng.uniform(0.0, cfg.poll_interval_s))
                t0 = time.perf_counter()
                job, _ = q.enqueue(_spec(i, "wait"), now=datetime.now(UTC))
                lat_ms.append(1e3 * (runner.wait_for(job.id, 30.0) - t0))
            time.sleep(1.0)
            idle: dict[str, float] = {"idle_s": idle_s}
            client = None
            if redis_url is not None:
                import redis

                client = redis.Redis.from_url(redis_url, decode_responses=True)
                calls0, srv0 = _calls(client), _server_cpu_s(client)
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            time.sleep(idle_s)
            wall = time.perf_counter() - t0
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            idle["process_cpu_ms_per_s"] = (
                1e3
                * (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime)
                / wall
            )
            if client is not None:
                idle["redis_calls_per_s"] = (_calls(client) - calls0) / wall
                idle["redis_server_cpu_ms_per_s"] = (
                    1e3 * (_server_cpu_s(client) - srv0) / wall
                )
                client.close()
        finally:
            runner.stop()
            q.close()
    lat_ms.sort()
    return {
        "n": n,
        "poll_interval_s": cfg.poll_interval_s,
        "median_ms": statistics.median(lat_ms),
        "p95_ms": lat_ms[int(0.95 * (n - 1))],
        "max_ms": lat_ms[-1],
        **idle,
    }


def run_backend(
    backend: str,
    n_jobs: int,
    redis_url: str | None,
    *,
    n_wait: int = 20,
    idle_s: float = 20.0,
) -> dict:
    """Measure one backend on a fresh state database; return its figures."""
    prefix = f"bench{time.time_ns()}"
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "state.sqlite3"
        with closing(open_db(db)) as conn:
            if backend == "sqlite":
                q: JobQueue = SqliteJobQueue(conn)
            else:
                from dsa110_contimg.state.redis_queue import RedisJobQueue

                q = RedisJobQueue(conn, url=str(redis_url), prefix=prefix)
            try:
                out = {
                    "backend": backend,
                    "round_trip": _round_trips(q, n_jobs),
                    "throughput": _throughput(q, n_jobs),
                }
            finally:
                q.close()
        if n_wait:
            cfg = QueueConfig(
                backend=backend,
                redis_url=str(redis_url or "redis://127.0.0.1:6379/0"),
                redis_prefix=prefix + "w",
            )
            out["waiting_worker"] = _waiting_worker(
                db, cfg, n_wait, idle_s, redis_url if backend == "redis" else None
            )
        return out


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
    waits = [r for r in report["backends"] if "waiting_worker" in r]
    if waits:
        lines += [
            "",
            "## Waiting worker (enqueue -> an idle runner's handler starts)",
            "",
            "A `JobRunner` (lanes convert x2, block x1) in a thread on its own "
            "connection; jobs enqueued from another connection at random moments; "
            "idle cost over the idle period.",
            "",
            "| backend | median ms | p95 ms | max ms | idle redis calls/s "
            "| idle process CPU ms/s | idle redis-server CPU ms/s |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in waits:
            w = row["waiting_worker"]
            calls = w.get("redis_calls_per_s")
            srv = w.get("redis_server_cpu_ms_per_s")
            lines.append(
                f"| {row['backend']} | {w['median_ms']:.1f} | {w['p95_ms']:.1f} "
                f"| {w['max_ms']:.1f} | {'-' if calls is None else f'{calls:.1f}'} "
                f"| {w['process_cpu_ms_per_s']:.2f} "
                f"| {'-' if srv is None else f'{srv:.2f}'} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-jobs", type=int, default=500)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument(
        "--n-wait", type=int, default=20, help="round trips to a waiting runner"
    )
    parser.add_argument(
        "--idle-s", type=float, default=20.0, help="idle period measured (s)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "queue.json")
    args = parser.parse_args(argv)
    kw = {"n_wait": args.n_wait, "idle_s": args.idle_s}
    backends = [run_backend("sqlite", args.n_jobs, None, **kw)]
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
            backends.append(run_backend("redis", args.n_jobs, url, **kw))
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
