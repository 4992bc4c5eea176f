"""The scheduler-overhead benchmark runs on each execution backend."""

from __future__ import annotations

import pytest
from benchmarks.bench_scheduler import N_WORKERS, TASKS, markdown, run_backend


@pytest.mark.parametrize(
    "backend", ["local", pytest.param("dask", marks=pytest.mark.scaleout)]
)
def test_scheduler_benchmark_small(backend) -> None:
    if backend == "dask":
        pytest.importorskip("distributed")
    row = run_backend(backend, 8)
    assert row["backend"] == backend and row["workers"] == N_WORKERS
    assert row["tasks"].keys() == TASKS.keys()
    for name, t in row["tasks"].items():
        assert t["n"] == 8
        assert 0 < t["median_ms"] <= t["p95_ms"] <= t["max_ms"], name
        assert t["batch_tasks_per_s"] > 0
    # 10 ms tasks on two workers: at most 200 a second, whatever the overhead
    assert row["tasks"]["10ms"]["batch_tasks_per_s"] <= N_WORKERS / 0.010 * 1.02
    text = markdown({"n_tasks": 8, "host": "h", "backends": [row]})
    assert f"| {backend} | 10ms |" in text
