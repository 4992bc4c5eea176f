"""The capacity model's arithmetic on made-up costs (benchmarks.capacity)."""

from __future__ import annotations

import json

import pytest
from benchmarks import capacity


def _stage(cpu_s: float, rss_mb: float = 1024.0, **info) -> dict:
    return {"wall_s": cpu_s, "cpu_s": cpu_s, "peak_rss_mb": rss_mb, "info": info}


def _points(c0: float, c1: float) -> list[dict]:
    return [
        {
            "value": n,
            "conversion": c0 + c1 * n * (n - 1) / 2,
            "flagging": 1.0,
            "imaging": c0 + c1 * n * (n - 1) / 2,
        }
        for n in (24, 48, 96)
    ]


BENCH = {
    "date": "made-up",
    "size": "made-up",
    "stages": {
        "conversion": _stage(10.0),
        "flagging": _stage(2.0),
        "calibration apply": _stage(1.0),
        "imaging": _stage(50.0, rss_mb=2048.0),
        "primary-beam correction": _stage(3.0),
        "photometry": _stage(4.0, measure_s=2.0, n_measured=10_000),
        "calibration solve": _stage(6.0),
        "mosaic of one hour": _stage(30.0, rss_mb=4096.0),
        "light-curve ingest": _stage(
            5.0, per_epoch_s_median=0.5, n_rows_per_epoch=10_000
        ),
    },
    "scaling": {
        "points": {"antennas": _points(1.0, 0.01)},
        "fits": {
            "antennas": {
                "conversion": {"a": 1.0, "b": 1.0},
                "flagging": {"a": 1.0, "b": 0.0},
                "imaging": {"a": 1.0, "b": 0.5},
            }
        },
    },
}


def test_daily_core_seconds_and_cores():
    workload = capacity.Workload(
        groups_per_day=1000, mosaic_step_min=60, n_sources=10_000
    )
    costs = capacity.stage_costs(BENCH, workload.n_sources)
    daily = capacity.daily_core_seconds(costs, workload)
    # groups: (10+2+1+50+3+4) * 1000; blocks: (6+30+4) * 24; epochs: 0.5 * 1024
    assert daily["imaging"] == pytest.approx(50_000)
    assert daily["mosaic"] == pytest.approx(720)
    assert daily["light-curve ingest"] == pytest.approx(512)
    total = sum(daily.values())
    assert total == pytest.approx(70_000 + 960 + 512)
    assert capacity.cores_needed(total, 0.7) == 2  # 0.827 busy / 0.7 = 1.18
    assert capacity.cores_needed(total, 1.0) == 1
    # a week's backlog in a day: 8 days of work in one: 6.62 busy / 0.7 = 9.45
    assert capacity.backlog_cores(total, 7, 1, 0.7) == 10
    with pytest.raises(ValueError, match="utilisation"):
        capacity.cores_needed(total, 0.0)


def test_photometry_scales_with_sources():
    costs = capacity.stage_costs(BENCH, 100_000)
    assert costs["photometry"].core_s == pytest.approx(
        4 - 2 + 20
    )  # fixed + 10x measure
    assert costs["light-curve ingest"].core_s == pytest.approx(
        5.0
    )  # 0.5 s per 1e4 rows
    assert costs["mosaic"].peak_rss_gb == pytest.approx(4.0)


def test_antenna_scaling_power_and_baselines():
    costs = capacity.stage_costs(BENCH, 10_000)
    power = capacity.scale_to_antennas(costs, BENCH["scaling"], 384, method="power")
    assert power["imaging"].core_s == pytest.approx(50 * 2)  # (384/96)^0.5
    assert power["conversion"].core_s == pytest.approx(10 * 4)
    assert power["flagging"].core_s == pytest.approx(2.0)  # b = 0
    assert power["photometry"].core_s == costs["photometry"].core_s
    lin = capacity.scale_to_antennas(costs, BENCH["scaling"], 192, method="baselines")
    factor = (1 + 0.01 * 192 * 191 / 2) / (1 + 0.01 * 96 * 95 / 2)
    assert lin["imaging"].core_s == pytest.approx(50 * factor)
    with pytest.raises(ValueError, match="method"):
        capacity.scale_to_antennas(costs, BENCH["scaling"], 192, method="cubic")


def test_makespan_and_prediction():
    tasks = [
        {"key": "image-a", "duration_s": 3.0},
        {"key": "image-b", "duration_s": 2.0},
        {"key": "mosaic-x", "duration_s": 1.0, "deps": ["image-a", "image-b"]},
    ]
    assert capacity.makespan(tasks, 1) == pytest.approx(6.0)
    assert capacity.makespan(tasks, 2) == pytest.approx(4.0)  # mosaic waits for a
    assert capacity.makespan(tasks, 3) == pytest.approx(4.0)
    # measured 7 s on one worker: 1 s of client work kept, tasks rescheduled
    assert capacity.predict_wall(tasks, 7.0, 2) == pytest.approx(5.0)
    # or the overhead shrinks with the tasks: 7 * 4 / 6
    assert capacity.predict_wall_scaled(tasks, 7.0, 2) == pytest.approx(7 * 4 / 6)
    with pytest.raises(ValueError, match="cycle"):
        capacity.makespan(
            [
                {"key": "a", "duration_s": 1, "deps": ["b"]},
                {"key": "b", "duration_s": 1, "deps": ["a"]},
            ],
            1,
        )


def test_main_writes_results(tmp_path):
    (tmp_path / "benchmark.json").write_text(json.dumps(BENCH))
    measured = {
        "wall_s": {"dask_1_workers": 7.0, "dask_2_workers": 5.5},
        "speedup_2_vs_1_workers": 1.27,
        "tasks": [
            {"key": "image-a", "duration_s": 3.0},
            {"key": "image-b", "duration_s": 2.0},
            {"key": "mosaic-x", "duration_s": 1.0, "deps": ["image-a", "image-b"]},
        ],
    }
    (tmp_path / "dask_speedup.json").write_text(json.dumps(measured))
    assert capacity.main(["--results", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "capacity.json").read_text())
    assert report["check"]["predicted_wall_s_2"] == pytest.approx(5.0)
    assert report["check"]["relative_error_2"] == pytest.approx(5.0 / 5.5 - 1, abs=1e-3)
    assert "Check against measured" in (tmp_path / "capacity.md").read_text()
