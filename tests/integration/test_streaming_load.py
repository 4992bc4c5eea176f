"""Reduced load run of the streaming benchmark (slow: opt in with --run-slow).

``benchmarks/bench_streaming.py`` delivers one simulated hour (12 groups) at
12x real time; this runs the same code on 6 short groups delivered every 6 s
and checks that the backlog stays bounded, everything is processed and the
stream process does not grow.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.wsclean, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_streaming.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_streaming", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_reduced_load_bounded_backlog_and_memory(tmp_path) -> None:
    bench = _bench_module()
    result = bench.run_benchmark(
        n_groups=6, speedup=12.0, n_times=6, workdir=tmp_path, progress=lambda m: None
    )
    summary = result.summary
    print(f"\n{summary}")
    assert summary["stream_exit_code"] == 0
    assert summary["jobs_not_done"] == []
    assert summary["jobs_done"]["convert_group"] == 6
    assert summary["final_backlog_jobs"] == 0
    assert summary["max_pending_conversions"] <= 3  # keeps up with delivery
    assert summary["memory_main_mb"]["growth_frac"] < 0.10
    png = bench.plot(result, tmp_path / "streaming.png")
    assert png.stat().st_size > 10_000
