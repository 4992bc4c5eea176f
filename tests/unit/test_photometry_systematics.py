"""Known-truth tests of the flux systematic measured between overlapping images."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from dsa110_contimg.pipeline.stages.photometry_stage import add_overlap_systematic


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


def test_beam_scaled_fraction_is_recovered_and_propagated_to_the_mosaic() -> None:
    # Two overlapping images; each measurement has an independent error of
    # f / pb of its flux (an error in the beam's gain), f = 1%. The pair fit
    # must recover f, the image pulls must be ~1 at every primary beam, and
    # the mosaic (their weighted mean) must get the error of a mean, not the
    # images' error.
    rng = np.random.default_rng(1)
    n_src, f, noise = 3000, 0.01, 2e-3
    true = np.exp(rng.uniform(np.log(0.1), np.log(10.0), n_src))
    pb = rng.uniform(0.25, 1.0, (2, n_src))
    tables, measured = [], []
    for k in range(2):
        err_noise = noise / pb[k]
        flux = true * (1 + f / pb[k] * rng.normal(0, 1, n_src))
        flux += rng.normal(0, 1, n_src) * err_noise
        table = _image_table(f"img{k}", true, 0.0, noise, rng)
        table["flux_jy"] = flux
        table["flux_err_jy"] = err_noise
        table["snr"] = flux / err_noise
        table["pb"] = pb[k]
        tables.append(table)
        measured.append(flux)
    w = pb**2 / noise**2
    mean = np.sum(w * np.array(measured), axis=0) / np.sum(w, axis=0)
    mosaic = _image_table("mosaic", true, 0.0, noise, rng, "mosaic")
    mosaic["flux_jy"] = mean
    mosaic["flux_err_jy"] = 1 / np.sqrt(np.sum(w, axis=0))
    mosaic["snr"] = mean / mosaic["flux_err_jy"]
    mosaic["pb"] = 1.0
    out = add_overlap_systematic([*tables, mosaic])
    assert out[0].meta["overlap_fraction"] == pytest.approx(f, rel=0.1)
    for table, beam in zip(out[:2], pb, strict=True):
        pulls = (table["flux_jy"] - true) / table["flux_err_jy"]
        for lo, hi in ((0.25, 0.5), (0.5, 0.75), (0.75, 1.0)):
            sel = (beam >= lo) & (beam < hi)
            assert 0.9 < np.sqrt(np.mean(pulls[sel] ** 2)) < 1.1, (lo, hi)
    pulls = (out[2]["flux_jy"] - true) / out[2]["flux_err_jy"]
    assert 0.9 < np.sqrt(np.mean(pulls**2)) < 1.1
    # with the images' own (larger) error the mosaic's pulls would be ~0.7
    image_like = np.hypot(out[2]["flux_err_jy"], f * true / pb.max(axis=0))
    assert np.sqrt(np.mean(((out[2]["flux_jy"] - true) / image_like) ** 2)) < 0.85


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
    # the mosaic is the mean of the six images: their independent scale
    # errors average down by sqrt(6)
    assert mosaic_out["flux_sys_jy"][0] / abs(mosaic_out["flux_jy"][0]) == (
        pytest.approx(frac[0] / np.sqrt(6), rel=0.01)
    )


def test_no_overlap_leaves_tables_unchanged() -> None:
    rng = np.random.default_rng(3)
    table = _image_table("img0", np.array([1.0, 2.0]), 0.0, 1e-3, rng)
    (out,) = add_overlap_systematic([table])
    np.testing.assert_array_equal(out["flux_err_jy"], table["flux_err_jy"])
