"""Known-truth tests of the flux systematic measured between overlapping images."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from dsa110_contimg.pipeline.stages.photometry_stage import (
    add_overlap_systematic,
    overlap_excess,
)


def _image_table(
    name: str, true: np.ndarray, scale_err: float, noise: float, rng, kind="image"
) -> Table:
    """One image's rows: every flux off by the image's scale error, plus noise."""
    flux = true * (1 + scale_err) + rng.normal(0.0, noise, true.size)
    table = Table(
        {
            "source_name": np.array([f"S{i:03d}" for i in range(true.size)]),
            "flux_jy": flux,
            "flux_err_jy": np.full(true.size, noise),
            "snr": flux / noise,
            "flags": np.zeros(true.size, dtype=np.int32),
            "image_kind": np.full(true.size, kind),
            "image_path": np.full(true.size, name),
            "flux_sys_jy": np.zeros(true.size),
        }
    )
    table.meta.update(sys_fraction=0.0, residual_excess=0.0)
    return table


def test_overlap_excess_recovers_fraction_and_noise_excess() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    s_a, s_b = rng.uniform(0.05, 5.0, (2, n))
    n_a, n_b = rng.uniform(0.005, 0.02, (2, n))
    f, tau = 0.02, 0.8
    d = rng.normal(0, 1, n) * np.sqrt(
        (1 + tau**2) * (n_a**2 + n_b**2) + f**2 * (s_a**2 + s_b**2)
    )
    got_f, got_tau = overlap_excess(d**2, n_a**2 + n_b**2, s_a**2 + s_b**2)
    assert got_f == pytest.approx(f, rel=0.1)
    assert got_tau == pytest.approx(tau, rel=0.2)
    # pure noise: neither term
    d0 = rng.normal(0, 1, n) * np.sqrt(n_a**2 + n_b**2)
    got_f, got_tau = overlap_excess(d0**2, n_a**2 + n_b**2, s_a**2 + s_b**2)
    assert got_f < 0.003 and got_tau < 0.15


def test_flux_scale_scatter_between_images_enters_the_errors() -> None:
    # Six consecutive images of one strip, each with its own flux-scale error
    # (residual gain errors after calibration drift) of rms 2%; the noise
    # error alone gives pulls of ~20 for the bright sources.
    rng = np.random.default_rng(2)
    true = np.exp(rng.uniform(np.log(0.1), np.log(10.0), 60))
    scale_errors = rng.normal(0.0, 0.02, 6)
    noise = 2e-3
    tables = [
        _image_table(f"img{k}", true, g, noise, rng) for k, g in enumerate(scale_errors)
    ]
    mosaic = _image_table("mosaic", true, np.mean(scale_errors), noise, rng, "mosaic")
    before = np.concatenate([(t["flux_jy"] - true) / t["flux_err_jy"] for t in tables])
    assert np.sqrt(np.mean(before**2)) > 5
    out = add_overlap_systematic([*tables, mosaic])
    images, mosaic_out = out[:-1], out[-1]
    frac = np.array([t["flux_sys_jy"][0] / abs(t["flux_jy"][0]) for t in images])
    np.testing.assert_allclose(frac, frac[0], rtol=0.01)  # one fraction per block
    assert 0.01 < frac[0] < 0.04
    pulls = np.concatenate([(t["flux_jy"] - true) / t["flux_err_jy"] for t in images])
    assert 0.6 < np.sqrt(np.mean(pulls**2)) < 1.5
    # the noise part is kept: err^2 = noise^2 + sys^2
    t = images[0]
    np.testing.assert_allclose(
        t["flux_err_jy"] ** 2 - t["flux_sys_jy"] ** 2, noise**2, rtol=1e-6
    )
    assert mosaic_out["flux_sys_jy"][0] / abs(mosaic_out["flux_jy"][0]) == (
        pytest.approx(frac[0], rel=0.01)
    )


def test_no_overlap_leaves_tables_unchanged() -> None:
    rng = np.random.default_rng(3)
    table = _image_table("img0", np.array([1.0, 2.0]), 0.0, 1e-3, rng)
    (out,) = add_overlap_systematic([table])
    np.testing.assert_array_equal(out["flux_err_jy"], table["flux_err_jy"])
