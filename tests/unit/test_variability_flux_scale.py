"""Relative flux calibration: injected per-epoch scale errors are removed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from dsa110_contimg.exceptions import DataQualityWarning, InputDataError
from dsa110_contimg.lightcurves import LightcurveStore
from dsa110_contimg.simulation._lightcurves import simulate_lightcurves
from dsa110_contimg.utils.config_loader import VariabilityConfig
from dsa110_contimg.variability import (
    apply_flux_scale,
    calibrate_epoch,
    estimate_flux_scale,
    ingest_epoch_table,
    ingest_photometry_csv,
)


def test_estimate_rejects_variables() -> None:
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.1, 2.0, 200)
    flux = 0.93 * ref * (1 + 0.005 * rng.standard_normal(200))
    flux[:15] *= rng.uniform(1.3, 3.0, 15)  # flaring sources
    flux[15:20] *= 0.6  # sources in a dip
    result = estimate_flux_scale(flux, ref)
    assert result.scale == pytest.approx(0.93, abs=3 * result.scale_err)
    assert result.scale_err == pytest.approx(
        1.2533 * 0.93 * 0.005 / np.sqrt(180), rel=0.3
    )
    assert not result.used[:20].any()
    corr, corr_err = apply_flux_scale(
        flux, np.full(200, 0.001), result, systematic_floor_frac=0.01
    )
    np.testing.assert_allclose(corr[30:40], flux[30:40] / result.scale)
    assert np.all(corr_err > 0.01 * corr)
    few = estimate_flux_scale(flux[25:30], ref[25:30], min_n_ref=10)
    assert np.isnan(few.scale)


def test_first_epoch_anchors_and_too_few_references_warn() -> None:
    table = Table(
        {
            "source_name": ["a", "b", "c"],
            "flux_jy": [1.0, 2.0, 3.0],
            "flux_err_jy": [0.01, 0.01, 0.01],
        }
    )
    empty = Table(
        {
            "source_name": np.zeros(0, str),
            "n_epochs": np.zeros(0, int),
            "weighted_mean_flux_jy": np.zeros(0),
            "eta": np.zeros(0),
            "v": np.zeros(0),
        }
    )
    out, scale = calibrate_epoch(table, empty, min_n_ref=2)
    assert scale.is_anchor and scale.scale == 1.0
    np.testing.assert_allclose(out["flux_corr_jy"], table["flux_jy"])
    history = Table(
        {
            "source_name": ["a", "b", "c"],
            "n_epochs": [5, 5, 5],
            "weighted_mean_flux_jy": [1.0, 2.0, 3.0],
            "eta": [1.0, 1.0, 50.0],
            "v": [0.01, 0.01, 0.3],
        }
    )
    with pytest.warns(DataQualityWarning, match="usable reference"):
        out, scale = calibrate_epoch(table, history, min_n_ref=3)
    assert np.isnan(scale.scale) and np.all(np.isnan(out["flux_corr_jy"]))


def test_relative_precision_with_five_percent_scale_errors(tmp_path: Path) -> None:
    sim = simulate_lightcurves(
        n_stable=1500,
        n_red_noise=60,
        n_flares=20,
        n_epochs=60,
        gain_error_frac=0.05,
        flux_range_jy=(0.02, 2.0),
        variable_flux_range_jy=(0.05, 2.0),
        rng=np.random.default_rng(11),
    )
    cfg = VariabilityConfig()
    store = LightcurveStore(tmp_path / "lc")
    results = [
        ingest_epoch_table(store, table, epoch_id=epoch_id, cfg=cfg)
        for epoch_id, table in sim.epoch_tables()
    ]
    gains = np.asarray(sim.epochs["gain_scale"])
    scales = np.array([r.scale for r in results])
    scale_errs = np.array([r.scale_err for r in results])
    relative = scales / (gains / gains[0]) - 1.0
    pulls = relative[1:] / scale_errs[1:]
    truth = sim.truth
    bright = truth[(truth["kind"] == "stable") & (truth["snr"] > 100)]
    rows = store.lightcurves(bright["source_name"])
    names, inv = np.unique(np.asarray(rows["source_name"]), return_inverse=True)

    def scatter(column: str) -> float:
        f = np.asarray(rows[column])
        n = np.bincount(inv)
        mean = np.bincount(inv, f) / n
        sd = np.sqrt(np.bincount(inv, (f - mean[inv]) ** 2) / (n - 1))
        return float(np.median(sd / mean))

    thermal = float(np.median(1.0 / bright["snr"]))
    raw, corrected = scatter("flux_jy"), scatter("flux_corr_jy")
    print(
        f"\nstable SNR>100 sources ({names.size}): median rms/mean {100 * raw:.2f}% "
        f"raw, {100 * corrected:.2f}% calibrated (thermal alone {100 * thermal:.2f}%); "
        f"scale error rms {100 * np.std(relative[1:]):.3f}% "
        f"(quoted median {100 * np.median(scale_errs[1:]):.3f}%, pull rms "
        f"{np.std(pulls):.2f}); median references "
        f"{np.median([r.n_ref_used for r in results]):.0f}"
    )
    assert results[0].is_anchor
    assert corrected <= 0.01
    assert raw > 0.03
    assert np.std(relative[1:]) < 0.002


def test_ingest_csv_malformed_and_duplicate(tmp_path: Path) -> None:
    store = LightcurveStore(tmp_path / "lc")
    path = tmp_path / "phot.csv"
    path.write_text(
        "source_name,mjd,flux_jy,flux_err_jy,flags,image_path\n"
        "A,60000.5,1.0,0.01,0,m1.fits\n"
        "B,60000.5,oops,0.01,0,m1.fits\n"
        "C,60000.5,2.0\n"
        ",60000.5,1.0,0.01,0,m1.fits\n"
        "D,60000.5,3.0,0.01,,m1.fits\n"
    )
    with pytest.warns(
        DataQualityWarning, match=r"skipped 3 malformed row\(s\) \(lines 3, 4, 5\)"
    ):
        result = ingest_photometry_csv(store, path, epoch_id="E1")
    assert result.n_rows == 2 and result.is_anchor
    with pytest.warns(DataQualityWarning), pytest.raises(InputDataError, match="E1"):
        ingest_photometry_csv(store, path, epoch_id="E1")
    assert store.n_rows() == 2
    with pytest.raises(InputDataError, match="lacks column"):
        bad = tmp_path / "bad.csv"
        bad.write_text("name,mjd\nA,1\n")
        ingest_photometry_csv(store, bad, epoch_id="E2")
