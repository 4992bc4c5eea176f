"""ESE search: known-truth simulation through calibration, the store and analysis."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from dsa110_contimg.lightcurves import LightcurveStore
from dsa110_contimg.simulation._lightcurves import ese_profile, simulate_lightcurves
from dsa110_contimg.utils.config_loader import VariabilityConfig
from dsa110_contimg.variability import (
    EseGrid,
    analyze_store,
    bin_lightcurves,
    ese_model,
    ingest_epoch_table,
    search_ese,
)


@pytest.mark.parametrize("shape", ["lens", "box"])
@pytest.mark.parametrize("depth", [0.2, 0.45])
def test_simulated_ese_profiles_have_their_depth_and_width(
    shape: str, depth: float
) -> None:
    t = np.linspace(-100, 100, 20001)
    gain = ese_profile(t, center_mjd=0.0, duration_days=30.0, depth=depth, shape=shape)
    assert 1 - gain.min() == pytest.approx(depth, abs=0.01)
    below = t[gain < 1 - depth / 2]
    assert below.max() - below.min() == pytest.approx(30.0, rel=0.08)
    assert gain[0] == pytest.approx(1.0, abs=1e-3)
    if shape == "lens":
        assert gain.max() > 1 + 0.2 * depth  # flanking brightenings


def test_injected_dip_is_recovered_exactly_without_noise() -> None:
    t = 60000.0 + np.arange(200.0)
    flux = ese_model(
        t,
        mean_flux_jy=0.5,
        depth=0.35,
        duration_days=30.0,
        center_mjd=60090.0,
        dip_order=4.0,
        asymmetry=0.4,
    )
    binned = bin_lightcurves(np.full(t.size, "S"), t, flux, np.full(t.size, 1e-3))
    grid = EseGrid(durations_days=(20.0, 30.0, 45.0), center_step_frac=0.1)
    result = search_ese(binned, grid=grid)
    assert result["ese_candidate"][0]
    assert result["ese_depth"][0] == pytest.approx(0.35, abs=1e-6)
    assert result["ese_duration_days"][0] == 30.0
    assert result["ese_dip_order"][0] == 4.0
    assert result["ese_asymmetry"][0] == 0.4
    assert abs(result["ese_center_mjd"][0] - 60090.0) <= 0.5


def test_detection_false_positives_and_red_noise_purity(tmp_path: Path) -> None:
    start = time.perf_counter()
    sim = simulate_lightcurves(
        n_stable=2000,
        n_ese=60,
        n_red_noise=150,
        n_epochs=365,
        gain_error_frac=0.05,
        flux_range_jy=(0.01, 2.0),
        variable_flux_range_jy=(0.1, 2.0),
        ese_depths=(0.3, 0.4, 0.5),
        ese_durations_days=(21.0, 30.0, 60.0, 90.0),
        red_noise_powerlaw_frac=0.5,
        rng=np.random.default_rng(2024),
    )
    cfg = VariabilityConfig()
    store = LightcurveStore(tmp_path / "lc")
    for epoch_id, table in sim.epoch_tables():
        ingest_epoch_table(store, table, epoch_id=epoch_id, cfg=cfg)
    ingested = time.perf_counter()
    result = analyze_store(store, cfg, search_all=True)
    analyzed = time.perf_counter()
    truth = sim.truth
    truth.sort("source_name")
    np.testing.assert_array_equal(result["source_name"], truth["source_name"])
    kind = np.asarray(truth["kind"])
    flagged = np.asarray(result["ese_candidate"])
    stable, ese, agn = kind == "stable", kind == "ese", kind == "red_noise"
    target = ese & (truth["snr"] >= 100)
    completeness = flagged[target].mean()
    fp_rate = flagged[stable].mean()
    agn_flagged = flagged[agn].mean()
    print(
        f"\nESE test (2000 stable, {ese.sum()} ESE depth 0.3-0.5 / 21-90 d, "
        f"{agn.sum()} red-noise AGN (half DRW, half power-law); 365 daily "
        "epochs, 5% gain errors): "
        f"completeness (SNR>=100) {100 * completeness:.1f}% of {target.sum()}, "
        f"false positives {flagged[stable].sum()}/{stable.sum()} "
        f"({100 * fp_rate:.2f}%), red-noise AGN flagged {flagged[agn].sum()}/"
        f"{agn.sum()} ({100 * agn_flagged:.1f}%); ingest "
        f"{ingested - start:.1f} s, analysis {analyzed - ingested:.1f} s"
    )
    found = flagged & ese
    depth_err = np.abs(result["ese_depth"][found] - truth["ese_depth"][found])
    center_err = np.abs(
        result["ese_center_mjd"][found] - truth["ese_center_mjd"][found]
    )
    print(
        f"recovered depth error median {np.median(depth_err):.3f}, centre error "
        f"median {np.median(center_err):.1f} d"
    )
    assert completeness >= 0.9
    assert fp_rate <= 0.001
    assert agn_flagged <= 0.05
    assert np.median(center_err) < 5.0
    variable = np.asarray(result["is_variable"])
    assert variable[stable].mean() <= 0.001
