"""eta and V: running sums in the store equal direct computation (Mooley+ 2016)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from dsa110_contimg.lightcurves import LightcurveStore
from dsa110_contimg.variability import (
    lightcurve_metrics,
    max_two_epoch_metrics,
    metrics_from_sums,
    two_epoch_metrics,
    variability_metrics,
)


def test_direct_metrics_known_values() -> None:
    eta, v = variability_metrics([1.0, 1.2, 0.8], [0.1, 0.1, 0.1])
    assert eta == pytest.approx(4.0)
    assert v == pytest.approx(0.2)
    vs, m = two_epoch_metrics(1.2, 0.1, 0.8, 0.1)
    assert float(vs) == pytest.approx(0.4 / np.sqrt(0.02))
    assert float(m) == pytest.approx(0.4)
    vs, m = max_two_epoch_metrics([1.0, 1.1, 0.7, 1.0], [0.1] * 4)
    assert vs == pytest.approx(0.4 / np.sqrt(0.02))
    assert m == pytest.approx(2 * 0.4 / 1.8)
    assert np.isnan(variability_metrics([1.0], [0.1])[0])


def _random_epoch(k: int, rng: np.random.Generator) -> Table:
    n = 200
    names = np.array([f"S{i:03d}" for i in range(n)])
    present = rng.uniform(size=n) < 0.8  # sources come and go
    mean = np.linspace(0.01, 5.0, n)
    err = mean * rng.uniform(0.001, 0.1, n)
    flux = mean * (1 + 0.1 * rng.standard_normal(n)) + err * rng.standard_normal(n)
    flags = np.where(rng.uniform(size=n) < 0.05, 1, 0).astype(np.int32)
    return Table(
        {
            "source_name": names[present],
            "mjd": np.full(present.sum(), 60000.0 + k),
            "flux_jy": flux[present],
            "flux_err_jy": err[present],
            "flags": flags[present],
            "image_path": np.full(present.sum(), f"img{k}.fits"),
        }
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_equals_direct_for_random_subsets(
    tmp_path: Path, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    store = LightcurveStore(tmp_path / f"lc{seed}")
    epochs = {f"E{k:03d}": _random_epoch(k, rng) for k in range(40)}
    subset = rng.choice(sorted(epochs), size=25, replace=False)
    for epoch_id in subset:
        store.ingest_epoch(epoch_id, epochs[epoch_id])
    # Re-process some epochs with new values and delete others.
    for epoch_id in subset[:5]:
        store.ingest_epoch(
            epoch_id, _random_epoch(int(epoch_id[1:]), rng), replace=True
        )
    for epoch_id in subset[5:9]:
        store.delete_epoch(epoch_id)
    incremental = metrics_from_sums(LightcurveStore(store.root).summary())
    rows = store.sql("SELECT * FROM measurements")
    usable = (np.asarray(rows["flags"]) & 3) == 0
    direct = lightcurve_metrics(
        rows["source_name"][usable],
        rows["flux_corr_jy"][usable],
        rows["flux_corr_err_jy"][usable],
    )
    np.testing.assert_array_equal(incremental["source_name"], direct["source_name"])
    np.testing.assert_array_equal(incremental["n_epochs"], direct["n_epochs"])
    max_err = 0.0
    for name in rng.choice(np.asarray(direct["source_name"]), 50, replace=False):
        lc = store.lightcurve(name)
        ok = (np.asarray(lc["flags"]) & 3) == 0
        eta, v = variability_metrics(lc["flux_corr_jy"][ok], lc["flux_corr_err_jy"][ok])
        row = int(np.searchsorted(incremental["source_name"], name))
        assert incremental["eta"][row] == pytest.approx(eta, rel=1e-6)
        assert incremental["v"][row] == pytest.approx(v, rel=1e-6)
        max_err = max(
            max_err,
            abs(incremental["eta"][row] / eta - 1),
            abs(incremental["v"][row] / v - 1),
        )
    print(f"\nincremental vs direct eta/V, max relative difference: {max_err:.2e}")
