"""The benchmark harness: per-stage measurement, power-law fits, the report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from benchmarks._measure import StageResult, measure, proc_io
from benchmarks._report import markdown, write_report
from benchmarks.suite import (
    GROUP_PATH,
    explanations,
    fit_baselines,
    fit_power_law,
    group_paths,
    profile_accuracy,
    ratios,
    round_key,
)


def allocate_and_write(path: str, mb: int) -> dict[str, int]:
    """Stage used by the test: hold ``mb`` MB, write ``mb`` MB to ``path``."""
    block = np.ones(mb * 2**20, dtype=np.uint8)  # touched: resident
    with open(path, "wb") as fh:
        fh.write(block.tobytes())
        fh.flush()
        os.fsync(fh.fileno())
    return {"sum": int(block.sum())}


def test_measure_reports_memory_io_and_cpu_of_the_stage(tmp_path):
    result = measure(
        "alloc", allocate_and_write, progress=None, path=str(tmp_path / "f"), mb=300
    )
    assert result.info == {"sum": 300 * 2**20}
    assert result.peak_rss_mb >= 300  # the array (plus its bytes copy)
    assert result.wall_s > 0 and result.cpu_s > 0
    if proc_io():  # Linux
        assert 300 <= result.written_mb < 400
        assert 300 <= result.disk_written_mb < 400


def test_each_stage_gets_a_fresh_process(tmp_path):
    # also: a stage's peak is its own, not the (large) parent's it was spawned
    # from, which Linux's ru_maxrss would report
    ballast = np.ones(600 * 2**20, dtype=np.uint8)  # parent resident: 600 MB
    big = measure(
        "big", allocate_and_write, progress=None, path=str(tmp_path / "a"), mb=400
    )
    small = measure(
        "small", allocate_and_write, progress=None, path=str(tmp_path / "b"), mb=20
    )
    assert small.peak_rss_mb < big.peak_rss_mb - 300
    assert small.peak_rss_mb < 400
    del ballast


def test_stage_errors_propagate(tmp_path):
    with pytest.raises(FileNotFoundError):
        measure(
            "bad",
            allocate_and_write,
            progress=None,
            path=str(tmp_path / "no" / "f"),
            mb=1,
        )


def test_power_law_fit_recovers_exponent():
    x = np.array([24.0, 48.0, 96.0])
    fit = fit_power_law(x, 0.5 * x**2.0)
    assert fit["b"] == pytest.approx(2.0, abs=1e-3)
    assert fit["a"] == pytest.approx(0.5, rel=1e-3)
    assert fit["rms_log_residual"] < 1e-6
    with pytest.raises(ValueError, match="two positive points"):
        fit_power_law(np.array([1.0]), np.array([1.0]))


class _Stage:
    def __init__(self, wall, info=None):
        self.wall_s, self.info = wall, info or {}


def test_ratios_and_explanations():
    stages = {
        "conversion (no averaging)": _Stage(10.0, {"ms_mb": 1000.0, "raw_mb": 1000.0}),
        "conversion, pyuvdata read + write_ms": _Stage(40.0),
        "conversion": _Stage(8.0, {"ms_mb": 200.0, "raw_mb": 1000.0}),
        "disk speed": _Stage(1.0, {"write_mb_s": 500.0, "read_mb_s": 1000.0}),
        "imaging": _Stage(60.0),
        "gridding floor (ducc0)": _Stage(1.0, {"gridding_s": 2.0}),
    }
    r = ratios(stages)
    assert r["conversion_vs_pyuvdata"]["ratio"] == 4.0  # pyuvdata 4x slower
    # 8 s vs 1000 MB / 1000 MB/s + 200 MB / 500 MB/s
    assert r["conversion_vs_io_floor"]["ratio"] == pytest.approx(8 / 1.4, abs=0.01)
    assert r["imaging_vs_gridding_floor"]["ratio"] == 30.0
    assert "wsclean_vs_tclean" not in r  # alternative not run: no ratio
    doc = {
        "ratios": r,
        "stages": {
            "conversion": {
                "info": {"ms_mb": 200.0, "raw_mb": 1000.0, "read_s": 5.0},
                "cpu_per_wall": 1.0,
            },
            "imaging": {"info": {"major_iterations": 6}},
        },
        "data": {"image": "4800^2 pixels of 3.0 arcsec"},
    }
    notes = explanations(doc)
    assert len(notes) == 2
    assert "5.7x its I/O floor" in notes[0] and "read 5.0 s" in notes[0]
    assert "6 major cycles" in notes[1]


def test_report_files(tmp_path):
    stage = {
        "wall_s": 2.0,
        "cpu_s": 2.0,
        "cpu_per_wall": 1.0,
        "peak_rss_mb": 100.0,
        "read_mb": 1.0,
        "written_mb": 1.0,
        "disk_read_mb": 0.0,
        "disk_written_mb": 1.0,
        "info": {},
    }
    names = (
        "conversion",
        "flagging",
        "calibration apply",
        "imaging",
        "primary-beam correction",
        "photometry",
    )
    doc = {
        "size": "test",
        "date": "2026-01-01T00:00:00+00:00",
        "machine": {
            "node": "n",
            "cpu": "c",
            "usable_cores": 2,
            "memory_gib": 1,
            "load_average_at_start": [0.0],
        },
        "git": {"commit": "0" * 40, "dirty": False},
        "total_wall_s": 60.0,
        "data": {
            "n_antennas": 1,
            "n_channels": 1,
            "n_times": 1,
            "observed_s": 309.2,
            "chan_average": 1,
            "image": "i",
            "n_photometry_sources": 1,
            "mosaic": "m",
        },
        "stages": {n: stage for n in names},
        "group_path": {
            "stages": list(names),
            "wall_s": 12.0,
            "cpu_s": 12.0,
            "peak_rss_mb": 100.0,
            "real_time_factor": 0.039,
        },
        "ratios": {},
        "explanations": ["because"],
        "scaling": {
            "points": {
                "antennas": [{"value": v, "imaging": v / 10} for v in (24, 48, 96)]
            },
            "fits": {
                "antennas": {"imaging": {"a": 0.1, "b": 1.0, "rms_log_residual": 0.0}}
            },
        },
        "skipped": [],
        "versions": {"python": "3"},
    }
    paths = write_report(doc, tmp_path)
    assert [p.name for p in paths] == [
        "benchmark.json",
        "benchmark.md",
        "benchmark.png",
    ]
    assert json.loads(paths[0].read_text())["group_path"]["real_time_factor"] == 0.039
    text = markdown(doc)
    assert "real-time factor 0.039" in text and "- because" in text
    assert "| antennas | imaging | 1.0 |" in text
    assert Path(paths[2]).stat().st_size > 10_000


def test_levers_side_by_side_and_old_code_from_git(tmp_path):
    """bench_levers: interleaved timing with medians and ratios, the seed's
    module loaded from git (a function the working tree changed), the table."""
    from benchmarks import bench_levers

    old = bench_levers.old_module(
        "src/dsa110_contimg/calibration/_flagging.py", "0911ccd"
    )
    assert hasattr(old, "mad_clip") and not hasattr(old, "nanmedian_along")
    calls = []
    timing, a, b = bench_levers.side_by_side(
        lambda: calls.append("old") or 1,
        lambda: calls.append("new") or 2,
        repeats=3,
    )
    assert calls == ["old", "new"] * 3 and (a, b) == (1, 2)
    assert len(timing["old_wall_s"]) == 3 and timing["ratio_wall"] > 0
    doc = {
        "run": "now",
        "machine": "m",
        "old_ref": "0911ccd",
        "repeats": 3,
        "levers": {"x": {**timing, "check": "same", "size": "s"}},
    }
    bench_levers.write(doc, tmp_path / "levers")
    text = (tmp_path / "levers.md").read_text()
    assert "| x |" in text and "same" in text
    assert (tmp_path / "levers.json").exists()


def test_wsclean_levers_combine_and_compare_with_production(tmp_path):
    """bench_levers' WSClean rows: levers joined by ' + ' merge their overrides
    and flags, an unknown one fails, and each row's ratios and flux changes are
    against the production row's medians."""
    from benchmarks import bench_levers

    overrides, flags = bench_levers.wsclean_lever(
        "-mgain 0.9 + -use-wgridder -wgridder-accuracy 1e-3"
    )
    assert overrides == {"imaging.mgain": 0.9, "imaging.gridder": "wgridder"}
    assert flags == ("-wgridder-accuracy", "1e-3")
    with pytest.raises(SystemExit, match="unknown WSClean lever"):
        bench_levers.wsclean_lever("-mgain 0.9 + -fast")

    def run(wall, cpu, ws, rms, flux, ok=True):
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "wsclean_cpu_s": ws,
            "rms_jy": rms,
            "qa_passed": ok,
            "qa_attempts": 1,
            "n_recovered": 2,
            "n_injected": 2,
            "median_abs_flux_error_pb_ge_0p5": 0.01,
            "max_offset_beams": 0.01,
            "major_iterations": 5,
            "flux_by_source": {"a": flux, "b": 2.0},
        }

    runs = {
        "production": [run(10, 8, 6, 1.0, 1.0), run(12, 10, 8, 1.0, 1.0)],
        "-mgain 0.9": [run(5, 4, 2, 1.1, 1.1), run(7, 6, 4, 1.1, 1.1, ok=False)],
    }
    out = bench_levers.summarise_wsclean(runs)
    fast = out["-mgain 0.9"]
    assert fast["speedup_vs_baseline"] == round(11 / 6, 2)
    assert fast["cpu_ratio_vs_baseline"] == round(9 / 5, 2)
    assert fast["wsclean_cpu_ratio_vs_baseline"] == round(7 / 3, 2)
    assert fast["rms_vs_baseline"] == 1.1
    # source a changed by 10 %, b not: the median of |change| is 5 %
    assert fast["median_abs_flux_change_vs_baseline"] == 0.05
    assert fast["qa_passed"] is False and out["production"]["qa_passed"] is True
    doc = {
        "run": "now",
        "machine": "m",
        "old_ref": "0911ccd",
        "repeats": 2,
        "levers": {},
        "wsclean": out,
        "wsclean_size": 4800,
    }
    bench_levers.write(doc, tmp_path / "ws")
    text = (tmp_path / "ws.md").read_text()
    assert "| -mgain 0.9 | 6.0 |" in text and "FAILED" in text


def _stage(name: str, wall: float, **info) -> StageResult:
    return StageResult(name, wall, wall, 100.0 + wall, 0, 0, 0, 0, dict(info))


def test_group_paths_are_the_median_round_of_each_profile():
    walls = {1: 1.0, 2: 3.0, 3: 2.0}  # seconds per stage in each round
    stages = {}
    for k, w in walls.items():
        for name in GROUP_PATH:
            stages[round_key(name, k)] = _stage(name, w)
        for name in GROUP_PATH[3:]:  # the fast profile's own stages: half
            key = round_key(f"{name}, fast profile", k)
            stages[key] = _stage(name, w / 2)
    paths = group_paths(stages, observed_s=30.0, rounds=3)
    assert "reference_units" not in paths["production"]  # no CPU reference ran
    stages["cpu reference"] = _stage("cpu reference", 2.5, reference_s=2.4)
    paths = group_paths(stages, observed_s=30.0, rounds=3)
    assert [r["wall_s"] for r in paths["production"]["rounds"]] == [6.0, 18.0, 12.0]
    assert paths["production"]["wall_s"] == 12.0  # the median, not the mean
    assert paths["production"]["reference_units"] == 5.0  # 12 s / 2.4 s
    assert paths["production"]["real_time_factor"] == 0.4
    assert paths["production"]["peak_rss_mb"] == 103.0
    # fast: shared conversion, flagging, apply + its own halved stages
    assert [r["wall_s"] for r in paths["fast"]["rounds"]] == [4.5, 13.5, 9.0]
    assert paths["fast"]["wall_s"] == 9.0
    assert paths["fast"]["stages"][3] == "imaging, fast profile"
    assert paths["fast"]["stage_median_s"]["imaging, fast profile"] == 1.0
    # a round with a stage missing ends the rounds; a profile with none is left out
    del stages["imaging, fast profile (round 2)"]
    paths = group_paths(stages, observed_s=30.0, rounds=3)
    assert len(paths["fast"]["rounds"]) == 1 and len(paths["production"]["rounds"]) == 3
    del stages["imaging, fast profile"]
    assert set(group_paths(stages, observed_s=30.0, rounds=3)) == {"production"}


def test_profile_accuracy_compares_residual_rms_with_production():
    gates = {
        "n_recovered": 31,
        "n_injected": 31,
        "median_abs_flux_error_pb_ge_0p5": 0.003,
        "max_offset_beams": 0.01,
    }
    stages = {
        "imaging": _stage(
            "i",
            1,
            image_size=[48, 48],
            cell_size="3arcsec",
            residual_rms_jy=2e-3,
            **gates,
        ),
        "imaging, fast profile": _stage(
            "i",
            1,
            image_size=[24, 24],
            cell_size="6arcsec",
            residual_rms_jy=2.1e-3,
            **gates,
        ),
    }
    acc = profile_accuracy(stages)
    assert acc["production"]["residual_rms_ratio"] == 1.0
    assert acc["fast"]["residual_rms_ratio"] == 1.05
    assert acc["fast"]["image"] == "24^2 x 6arcsec"


def test_fit_baselines_recovers_a_fixed_plus_per_baseline_cost():
    n = np.array([24.0, 48.0, 96.0])
    y = 5.0 + 2e-3 * n * (n - 1) / 2
    fit = fit_baselines(n, y, 2000)
    assert fit["fixed_s"] == pytest.approx(5.0, abs=1e-3)
    assert fit["per_baseline_s"] == pytest.approx(2e-3, rel=1e-6)
    assert fit["predicted_2000_antennas_s"] == pytest.approx(
        5.0 + 2e-3 * 2000 * 1999 / 2, rel=1e-6
    )
    # costs that fall with antennas cannot make a negative fixed or per-baseline cost
    fit = fit_baselines(n, np.array([3.0, 2.0, 1.0]), 2000)
    assert fit["fixed_s"] >= 0 and fit["per_baseline_s"] >= 0


def test_report_shows_profiles_warm_worker_and_levers():
    from benchmarks._report import _levers, _profiles
    from benchmarks.suite import WARM_KEY

    stages = {}
    for name in GROUP_PATH:
        stages[name] = _stage(name, 2.0)
    for name in GROUP_PATH[3:]:
        stages[f"{name}, fast profile"] = _stage(name, 1.0)
    warm = {n: 1.0 for n in GROUP_PATH}
    warm.update({f"{n}, fast profile": 0.5 for n in GROUP_PATH[3:]})
    stages[WARM_KEY] = _stage(WARM_KEY, 9.0, warm_s=warm)
    stages["cpu reference"] = _stage(
        "cpu reference", 3.0, reference_s=3.0, fft_s=1.5, sort_s=0.5, elementwise_s=1.0
    )
    gates = {
        "n_recovered": 3,
        "n_injected": 3,
        "median_abs_flux_error_pb_ge_0p5": 0.01,
        "max_offset_beams": 0.01,
    }
    before = "imaging, before issue 19 (mgain 0.8, gain 0.1, niter 5000, w-stacking)"
    stages[before] = _stage(before, 4.0)
    for key, rms in (
        ("imaging", 1e-3),
        ("imaging, fast profile", 1.02e-3),
        (before, 0.99e-3),
    ):
        stages[key].info.update(
            gates, image_size=[8, 8], cell_size="3arcsec", residual_rms_jy=rms
        )
    doc = {
        "stages": {k: v.to_json() for k, v in stages.items()},
        "data": {"observed_s": 60.0, "image": "8^2 pixels of 3 arcsec"},
        "group_paths": group_paths(stages, 60.0, 1),
        "profiles": profile_accuracy(stages),
    }
    assert doc["group_paths"]["production"]["warm_worker"]["wall_s"] == 6.0
    assert doc["group_paths"]["fast"]["warm_worker"]["real_time_factor"] == 0.075
    text = "\n".join(_profiles(doc))
    assert "| production | 8^2 x 3arcsec | 12.0 | 0.2 | 4.0 |" in text
    assert "| 6.00 | 0.1 |" in text  # production's warm worker
    # three warm groups: the median of their group paths, every round listed
    slow = {n: 3 * v for n, v in warm.items()}
    fast_w = {n: 0.5 * v for n, v in warm.items()}
    stages[WARM_KEY] = _stage(
        WARM_KEY, 9.0, warm_s=slow, warm_rounds_s=[slow, warm, fast_w]
    )
    three = group_paths(stages, 60.0, 1)["production"]["warm_worker"]
    assert three["wall_s"] == 6.0 and three["rounds_s"] == [18.0, 6.0, 3.0]
    assert three["stages_s"]["imaging"] == 1.0
    doc["group_paths"] = group_paths(stages, 60.0, 1)
    assert "rounds: production 18.0, 6.00, 3.00" in "\n".join(_profiles(doc))
    from benchmarks._report import _facts, _reference_units

    headline = _reference_units(doc, doc["group_paths"]["production"])
    assert "CPU reference (3.0 s" in headline and "**4.0**" in headline
    only = {"stages": {"cpu reference": doc["stages"]["cpu reference"]}}
    assert "CPU reference: 3.0 s on one core" in _facts(only)
    assert "Warm worker" in text and "imaging 1.00" in text
    levers = "\n".join(_levers(doc))
    assert (
        "| imaging, before issue 19 (mgain 0.8, gain 0.1, niter 5000, w-stacking) "
        "| 4.00" in levers
    )
    assert "| 0.9900 |" in levers and "| 2.00 |" in levers  # rms ratio, time ratio


def test_flux_error_bench_summarises_pulls_per_bin():
    """bench_flux_errors: pull rms per SNR bin, noise-only pulls, flux scale."""
    from astropy.table import Table
    from benchmarks.bench_flux_errors import ESTIMATORS, KINDS, _markdown, _summary

    snr = np.array([15.0, 20.0, 50.0, 60.0, 200.0])
    pulls = np.array([1.0, -1.0, 2.0, 0.0, 0.5])
    noise_pulls = 2.0 * pulls
    rel = np.array([0.01, -0.01, 0.004, 0.0, -0.002])
    summary = _summary([(pulls, noise_pulls, rel, Table({"snr": snr}))])
    assert summary["pulls"]["10-30"] == {"rms": 1.0, "n": 2}
    assert summary["pulls"]["30-100"] == {"rms": pytest.approx(1.414, abs=1e-3), "n": 2}
    assert summary["noise_only"]["10-30"]["rms"] == 2.0
    assert summary["median_rel_snr30"] == pytest.approx(0.0)
    assert summary["median_rel_snr100"] == pytest.approx(-0.002)
    report = {
        "date": "2026-12-02",
        "machine": "test",
        "git": {"commit": "abcdef0123", "dirty": False},
        "seeds": [7],
        "wall_s": 1.0,
        "results": {e: {k: {"7": summary} for k in KINDS} for e in ESTIMATORS},
    }
    text = _markdown(report)
    assert "| dirty_equivalent | mosaic | 7 | 1.00 (2) / 1.41 (2) / 0.50 (1) |" in text
    assert "git abcdef0;" in text
