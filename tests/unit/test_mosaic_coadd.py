"""Known-truth tests of the mosaic science: grid, reprojection, coaddition."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS

from dsa110_contimg.data_ingestion.photometry import Beam, measure_forced
from dsa110_contimg.mosaic import (
    MosaicInput,
    circular_mean_deg,
    coadd_images,
    image_outline,
    mosaic_grid,
    reproject_image,
)
from dsa110_contimg.testing.images import make_point_source_image

BEAM = Beam(30.0, 24.0, 20.0)
CELL_ARCSEC = 10.0


def _image(ra_deg, dec_deg, sources, *, noise=1e-3, seed=1, shape=(240, 240)):
    image, wcs, _ = make_point_source_image(
        shape,
        cell_arcsec=CELL_ARCSEC,
        center_ra_deg=ra_deg,
        center_dec_deg=dec_deg,
        sources=sources,
        beam=BEAM,
        noise_rms_jy=noise,
        rng=np.random.default_rng(seed),
    )
    return image, wcs


def test_circular_mean_handles_the_ra_wrap():
    assert circular_mean_deg([359.0, 1.0, 3.0]) == pytest.approx(1.0)
    assert circular_mean_deg([350.0, 10.0]) == 0.0
    assert circular_mean_deg([10.0, 20.0], weights=[1.0, 3.0]) == pytest.approx(
        17.5, abs=0.01
    )
    with pytest.raises(ValueError, match="no defined circular mean"):
        circular_mean_deg([0.0, 180.0])


@pytest.mark.parametrize("projection", ["SIN", "CAR"])
def test_grid_across_ra_zero_covers_both_images(projection):
    _, wcs_a = _image(359.6, 37.0, [])
    _, wcs_b = _image(0.4, 37.0, [])
    grid, shape = mosaic_grid(
        [image_outline(wcs_a, (240, 240)), image_outline(wcs_b, (240, 240))],
        cell_deg=CELL_ARCSEC / 3600,
        projection=projection,
    )
    ra0 = grid.wcs.crval[0]
    assert min(ra0, 360 - ra0) < 0.01  # centred on RA 0, not 180
    # both image centres land inside, roughly 0.8 deg * cos(dec) apart
    x, _ = grid.world_to_pixel_values([359.6, 0.4], [37.0, 37.0])
    assert x.min() > 0 and x.max() < shape[1]
    assert abs(x[0] - x[1]) * CELL_ARCSEC / 3600 == pytest.approx(
        0.8 * np.cos(np.deg2rad(37.0)), rel=0.02
    )
    assert shape[1] * CELL_ARCSEC / 3600 < 2 * 0.67 + 0.8  # not the long way round


@pytest.mark.parametrize("order", [1, 3])
def test_fast_reprojection_equals_reproject_interp(order):
    image, wcs_in = _image(150.0, 37.0, [(150.0, 37.0, 1.0), (150.2, 37.1, 0.4)])
    _, wcs_out = _image(150.3, 37.2, [], shape=(260, 250))
    data = image.astype(np.float32)
    fast = reproject_image(data, wcs_in, wcs_out, (260, 250), order=order)
    slow = reproject_image(
        data, wcs_in, wcs_out, (260, 250), order=order, method="interp"
    )
    assert np.array_equal(np.isfinite(fast), np.isfinite(slow))
    both = np.isfinite(fast)
    assert both.sum() > 10_000
    diff = np.max(np.abs(fast[both] - slow[both]))
    print(f"\norder {order}: max |fast - reproject_interp| = {diff:.2e} Jy/beam")
    assert diff < 1e-6 * np.max(np.abs(data))


def test_one_image_tiled_and_coadded_gives_it_back():
    image, wcs = _image(150.0, 37.0, [(150.0, 37.0, 1.0)])
    pb = np.ones_like(image)
    rms = np.full_like(image, 1e-3)
    result = coadd_images(
        [MosaicInput("a", image, pb, rms, wcs)], wcs, image.shape, tile_pix=64
    )
    assert result.used == ("a",)
    np.testing.assert_allclose(result.image, image, atol=1e-6)
    np.testing.assert_allclose(result.noise, 1e-3, rtol=1e-6)
    assert np.all(result.coverage == 1)


def test_tile_size_does_not_change_the_mosaic():
    image, wcs = _image(150.0, 37.0, [(150.1, 37.05, 1.0)])
    pb = np.ones_like(image)
    rms = np.full_like(image, 1e-3)
    grid, shape = mosaic_grid([image_outline(wcs, image.shape)], cell_deg=8 / 3600)
    a = coadd_images([MosaicInput("a", image, pb, rms, wcs)], grid, shape, tile_pix=64)
    b = coadd_images(
        [MosaicInput("a", image, pb, rms, wcs)], grid, shape, tile_pix=4096
    )
    # tiles differ only in where the coordinate spline is anchored (< 1e-9)
    np.testing.assert_allclose(a.image, b.image, atol=1e-9, rtol=0)
    np.testing.assert_array_equal(a.coverage, b.coverage)


def test_inverse_variance_weights_and_predicted_noise():
    truth = [(150.0, 37.0, 0.5)]
    a, wcs = _image(150.0, 37.0, truth, noise=0.0)
    pb_a = np.full_like(a, 0.5)
    pb_b = np.full_like(a, 1.0)
    image_a = a * 0.5 + 0.01  # offsets mark which image is which after correction
    image_b = a * 1.0 + 0.03
    rms_a = np.full_like(a, 2e-3)
    rms_b = np.full_like(a, 1e-3)
    result = coadd_images(
        [
            MosaicInput("a", image_a, pb_a, rms_a, wcs),
            MosaicInput("b", image_b, pb_b, rms_b, wcs),
        ],
        wcs,
        a.shape,
    )
    w_a, w_b = (0.5 / 2e-3) ** 2, (1.0 / 1e-3) ** 2
    expected_offset = (w_a * 0.02 + w_b * 0.03) / (w_a + w_b)
    centre = result.image - a
    np.testing.assert_allclose(centre[20:-20, 20:-20], expected_offset, atol=1e-6)
    np.testing.assert_allclose(result.weight[50, 50], w_a + w_b, rtol=1e-5)
    np.testing.assert_allclose(result.noise[50, 50], (w_a + w_b) ** -0.5, rtol=1e-5)
    assert result.coverage.max() == 2


def test_pixels_below_the_pb_cut_are_left_out():
    image, wcs = _image(150.0, 37.0, [], noise=1e-3)
    pb = np.ones_like(image)
    pb[:, :100] = 0.1
    result = coadd_images(
        [MosaicInput("a", image, pb, np.full_like(image, 1e-3), wcs)],
        wcs,
        image.shape,
        pb_cut=0.2,
    )
    assert np.all(np.isnan(result.image[:, :100]))
    assert np.all(result.coverage[:, :100] == 0)
    assert np.all(np.isfinite(result.image[:, 110:]))


def test_nan_filled_input_is_reported_empty():
    image, wcs = _image(150.0, 37.0, [])
    good = MosaicInput(
        "good", image, np.ones_like(image), np.full_like(image, 1e-3), wcs
    )
    nan = MosaicInput(
        "nan",
        np.full_like(image, np.nan),
        np.ones_like(image),
        np.ones_like(image),
        wcs,
    )
    result = coadd_images([good, nan], wcs, image.shape)
    assert result.used == ("good",)
    assert result.empty == ("nan",)


def test_mosaic_flux_of_a_source_across_two_overlapping_images():
    """Flux on the mosaic matches truth; the mosaic error beats either image's."""
    truth = (150.25, 37.0, 0.2)
    shape = (240, 240)
    images = []
    for k, ra in enumerate((150.0, 150.5)):
        image, wcs = _image(ra, 37.0, [truth], noise=2e-3, seed=10 + k, shape=shape)
        images.append(
            MosaicInput(f"i{k}", image, np.ones(shape), np.full(shape, 2e-3), wcs)
        )
    grid, gshape = mosaic_grid(
        [image_outline(i.wcs, shape) for i in images], cell_deg=CELL_ARCSEC / 3600
    )
    result = coadd_images(images, grid, gshape)
    meas = measure_forced(
        result.image, grid, [truth[0]], [truth[1]], beam=BEAM, rms_map=result.noise
    )
    print(
        f"\nmosaic flux {meas.flux_jy[0]:.4f} +- {meas.flux_err_jy[0]:.4f} (true 0.2)"
    )
    assert abs(meas.flux_jy[0] - 0.2) < 4 * meas.flux_err_jy[0]
    assert result.noise[~np.isnan(result.noise)].min() == pytest.approx(
        2e-3 / np.sqrt(2), rel=1e-5
    )


def test_inputs_of_different_shapes_are_rejected():
    image, wcs = _image(150.0, 37.0, [])
    bad = MosaicInput("bad", image, np.ones((10, 10)), np.ones_like(image), wcs)
    with pytest.raises(ValueError, match="one shape"):
        coadd_images([bad], wcs, image.shape)


def test_reprojection_rejects_unknown_method():
    image, wcs = _image(150.0, 37.0, [])
    with pytest.raises(ValueError, match="method"):
        reproject_image(image, wcs, wcs, image.shape, method="nearest")
    with pytest.raises(ValueError, match="wcs_in"):
        reproject_image(image, None, wcs, image.shape)
    assert isinstance(wcs, WCS)
