"""The queue round-trip benchmark runs on each backend and checks what it claims."""

from __future__ import annotations

import pytest
from benchmarks.bench_queue import markdown, run_backend


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("redis", marks=pytest.mark.scaleout)]
)
def test_round_trip_benchmark_small(backend, request) -> None:
    url = request.getfixturevalue("redis_server").url if backend == "redis" else None
    row = run_backend(backend, 20, url, n_wait=3, idle_s=0.5)
    assert row["backend"] == backend
    assert row["round_trip"]["n"] == row["throughput"]["n"] == 20
    rt = row["round_trip"]
    assert 0 < rt["median_ms"] <= rt["p95_ms"] <= rt["max_ms"]
    assert rt["trips_per_s"] > 0 and row["throughput"]["claim_complete_per_s"] > 0
    wait = row["waiting_worker"]
    assert wait["n"] == 3 and 0 < wait["median_ms"] <= wait["max_ms"]
    assert wait["process_cpu_ms_per_s"] >= 0
    assert ("redis_calls_per_s" in wait) == (backend == "redis")
    text = markdown({"n_jobs": 20, "redis": "x", "host": "h", "backends": [row]})
    assert f"| {backend} |" in text and "Waiting worker" in text
