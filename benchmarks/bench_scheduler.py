"""Scheduler overhead per task on each execution backend (local, dask).

Usage::

    python -m benchmarks.bench_scheduler [--n-tasks 200] [--out FILE]

Each task goes through `dsa110_contimg.pipeline._execution.run_stage`, the
one call the orchestrator makes per unit of work, on

- ``local``: the process pool of ``execution.backend: local``
  (`make_process_pool`, 2 worker processes);
- ``dask``: `DaskExecutor` on a throwaway cluster on loopback (a scheduler
  and 2 one-thread worker processes, `tests.servers.dask.start_cluster`),
  a distinct task key per task (``f"bench-{i}"``).

Two tasks: *trivial* (returns at once) and *10 ms* (sleeps 10 ms). Tasks run
one at a time (submit, wait for the result); a task's **overhead** is its
round trip minus the time the task itself ran (measured inside the worker),
in ms: median and 95th percentile over ``n_tasks``. A batch of ``n_tasks``
submitted at once gives the throughput (tasks/s over both workers). A few
warm-up tasks are run first and not counted (the pool forks lazily). The
dask backend is skipped when ``distributed`` is not installed. Results go to
``benchmarks/results/scheduler.json`` and ``scheduler.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from concurrent.futures import Executor
from datetime import UTC, datetime
from pathlib import Path

from dsa110_contimg.pipeline._execution import run_stage

__all__ = ["TASKS", "main", "markdown", "measure_executor", "run_backend"]

RESULTS = Path(__file__).resolve().parent / "results"
N_WORKERS = 2
N_WARMUP = 5
TASKS = {"trivial": 0.0, "10ms": 0.010}  # task name -> its own duration (s)


def timed_task(duration_s: float) -> float:
    """The benchmark's task: sleep ``duration_s``; return how long it ran (s)."""
    t0 = time.perf_counter()
    if duration_s > 0:
        time.sleep(duration_s)
    return time.perf_counter() - t0


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[round(q * (len(sorted_values) - 1))]


async def _sequential(
    executor: Executor, duration_s: float, n: int, tag: str
) -> dict[str, float]:
    overhead_ms = []
    for i in range(n):
        t0 = time.perf_counter()
        ran = await run_stage(executor, "bench", f"{tag}-{i}", timed_task, duration_s)
        overhead_ms.append(1e3 * (time.perf_counter() - t0 - ran))
    overhead_ms.sort()
    return {
        "n": n,
        "median_ms": statistics.median(overhead_ms),
        "p95_ms": _percentile(overhead_ms, 0.95),
        "max_ms": overhead_ms[-1],
    }


async def _batch(executor: Executor, duration_s: float, n: int, tag: str) -> float:
    t0 = time.perf_counter()
    await asyncio.gather(
        *(
            run_stage(executor, "bench", f"{tag}-{i}", timed_task, duration_s)
            for i in range(n)
        )
    )
    return n / (time.perf_counter() - t0)


def measure_executor(executor: Executor, n_tasks: int, tag: str) -> dict[str, dict]:
    """Per-task overhead (sequential) and batch throughput of each task type."""

    async def run() -> dict[str, dict]:
        await _sequential(executor, 0.0, N_WARMUP, f"{tag}-warm")
        out = {}
        for name, duration_s in TASKS.items():
            row = await _sequential(executor, duration_s, n_tasks, f"{tag}-{name}-s")
            row["batch_tasks_per_s"] = await _batch(
                executor, duration_s, n_tasks, f"{tag}-{name}-b"
            )
            out[name] = row
        return out

    return asyncio.run(run())


def run_backend(backend: str, n_tasks: int) -> dict:
    """Measure one execution backend with ``N_WORKERS`` workers."""
    if backend == "local":
        from dsa110_contimg.pipeline._pool import make_process_pool

        executor = make_process_pool(N_WORKERS)
        try:
            tasks = measure_executor(executor, n_tasks, "local")
        finally:
            executor.shutdown(wait=True)
        return {"backend": "local", "workers": N_WORKERS, "tasks": tasks}
    from tests.servers.dask import start_cluster

    from dsa110_contimg.pipeline._execution import DaskExecutor
    from dsa110_contimg.utils.config import ExecutionConfig

    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        cluster = start_cluster(Path(tmp), n_workers=N_WORKERS)
        try:
            settings = ExecutionConfig(
                backend="dask", scheduler_address=cluster.address
            )
            executor = DaskExecutor(settings)
            try:
                tasks = measure_executor(executor, n_tasks, f"dask{time.time_ns()}")
            finally:
                executor.shutdown(wait=True)
        finally:
            cluster.stop()
    return {"backend": "dask", "workers": N_WORKERS, "tasks": tasks}


def markdown(report: dict) -> str:
    """Render the report as a Markdown table."""
    lines = [
        "# Scheduler overhead per task (run_stage round trip minus task time)",
        "",
        f"{report['n_tasks']} tasks per row, one at a time (overhead) and all at "
        f"once (throughput); {N_WORKERS} workers; host: {report['host']}.",
        "",
        "| backend | task | median ms | p95 ms | max ms | batch tasks/s |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["backends"]:
        for name, t in row["tasks"].items():
            lines.append(
                f"| {row['backend']} | {name} | {t['median_ms']:.2f} "
                f"| {t['p95_ms']:.2f} | {t['max_ms']:.2f} "
                f"| {t['batch_tasks_per_s']:.0f} |"
            )
    if report.get("skipped"):
        lines += ["", f"Skipped: {report['skipped']}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-tasks", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS / "scheduler.json")
    args = parser.parse_args(argv)
    backends = [run_backend("local", args.n_tasks)]
    skipped = None
    try:
        import distributed  # noqa: F401
    except ImportError:
        skipped = "dask ('distributed' not installed)"
    else:
        backends.append(run_backend("dask", args.n_tasks))
    report = {
        "n_tasks": args.n_tasks,
        "host": f"{platform.node()} ({platform.machine()})",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "backends": backends,
        "skipped": skipped,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
