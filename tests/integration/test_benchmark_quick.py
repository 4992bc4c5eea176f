"""``python -m benchmarks --quick`` runs every stage and writes its report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.casa, pytest.mark.wsclean]


def test_quick_benchmark_end_to_end(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--skip",
            "scaling",
            "--rounds",
            "2",
            "--out",
            str(out),
            "--cache",
            str(tmp_path / "cache"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "benchmark.json").read_text())
    expected = {
        "disk speed",
        "cpu reference",
        "simulate main group",
        "conversion (no averaging)",
        "conversion, pyuvdata read + write_ms",
        "conversion",
        "flagging",
        "calibration solve",
        "calibration apply",
        "imaging",
        "primary-beam correction",
        "photometry",
        "light-curve ingest",
        "imaging, WSClean matched",
        "imaging, tclean matched",
        "gridding floor (ducc0)",
        "synthesise hour of images",
        "mosaic of one hour",
        "mosaic, reproject_and_coadd",
    }
    assert expected <= set(doc["stages"])
    for stage in doc["stages"].values():
        assert stage["wall_s"] > 0 and stage["peak_rss_mb"] > 50
    # the stages did real work
    assert doc["stages"]["photometry"]["info"]["n_measured"] >= 900
    assert doc["stages"]["imaging"]["info"]["major_iterations"] >= 1
    assert doc["stages"]["conversion"]["info"]["ms_mb"] > 0.5
    assert doc["stages"]["mosaic of one hour"]["info"]["median_abs_flux_error"] < 0.03
    gp = doc["group_path"]
    # wall_s and observed_s are rounded to 0.1 s, the factor to 0.001
    observed = doc["data"]["observed_s"]
    assert gp["real_time_factor"] == pytest.approx(
        gp["wall_s"] / observed,
        abs=0.05 / observed + 0.05 * gp["wall_s"] / observed**2 + 0.0005 + 1e-9,
    )
    # both profiles' group paths, every round, the median; the fast profile
    # images the same field in half the pixels per side
    paths = doc["group_paths"]
    assert set(paths) == {"production", "fast"}
    for profile, path in paths.items():
        walls = [r["wall_s"] for r in path["rounds"]]
        assert len(walls) == 2 and path["wall_s"] == pytest.approx(
            sum(walls) / 2, abs=0.06
        ), profile
        assert path["stages"][:3] == ["conversion", "flagging", "calibration apply"]
    assert paths["production"] == gp
    reference = doc["stages"]["cpu reference"]["info"]["reference_s"]
    # units are rounded to 0.1 from the unrounded median; wall_s to 0.1 s
    assert gp["reference_units"] == pytest.approx(
        gp["wall_s"] / reference, abs=0.05 + 0.05 / reference + 1e-3
    )
    assert "CPU reference:" in (out / "benchmark.md").read_text()
    assert paths["fast"]["stages"][3] == "imaging, fast profile"
    assert "imaging (round 2)" in doc["stages"]
    assert "photometry, fast profile (round 2)" in doc["stages"]
    fast = doc["stages"]["imaging, fast profile"]["info"]
    assert fast["image_size"] == [384, 384] and fast["cell_size"] == "24arcsec"
    profiles = doc["profiles"]
    assert profiles["production"]["residual_rms_ratio"] == 1.0
    assert profiles["fast"]["n_recovered"] >= 1
    assert 0.5 < profiles["fast"]["residual_rms_ratio"] < 2.0
    # both photometry estimators measured against the truth (issue 13)
    for profile in ("production", "fast"):
        pulls = profiles[profile]["pulls"]
        assert set(pulls) == {"restored", "dirty_equivalent"}, profile
        for bins in pulls.values():
            assert sum(n for _, n in bins["full"].values()) >= 1, (profile, bins)
        assert profiles[profile]["dirty_equivalent"]["n_recovered"] >= 1
    assert "per photometry estimator" in (out / "benchmark.md").read_text()
    # the same stages in one warm process (a streaming worker's cost per
    # group) are cheaper than six fresh processes
    for profile, path in paths.items():
        warm = path["warm_worker"]
        assert set(warm["stages_s"]) == set(path["stages"]), profile
        assert 0 < warm["wall_s"] < path["wall_s"], profile
    # production imaging beside itself without each issue-19 lever
    for key in (
        "imaging, without the gridder lever (w-stacking)",
        "imaging, without the major-cycle lever (mgain 0.8)",
        "imaging, without the minor-loop lever (gain 0.1, niter 5000)",
        "imaging, before issue 19 (mgain 0.8, gain 0.1, niter 5000, w-stacking)",
    ):
        assert doc["stages"][key]["info"]["residual_rms_jy"] > 0, key
    text = (out / "benchmark.md").read_text()
    assert "Profiles: production and `fast`" in text
    assert "Imaging levers, same calibrated MS" in text and "Warm worker" in text
    assert set(doc["ratios"]) >= {
        "conversion_vs_pyuvdata",
        "wsclean_vs_tclean",
        "mosaic_vs_reproject_and_coadd",
        "conversion_vs_io_floor",
        "imaging_vs_gridding_floor",
    }
    assert doc["git"]["commit"] and doc["versions"]["ducc0"] != "not installed"
    assert doc["skipped"] == ["scaling"]
    text = (out / "benchmark.md").read_text()
    assert "real-time factor" in text and "Side by side" in text
    assert (out / "benchmark.png").stat().st_size > 10_000
