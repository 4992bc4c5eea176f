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
    assert gp["real_time_factor"] == pytest.approx(
        gp["wall_s"] / doc["data"]["observed_s"], rel=0.01
    )
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
