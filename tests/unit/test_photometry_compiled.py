"""The compiled photometry loops give the numbers of direct numpy (issue 19).

Each reference below is the plain per-pixel numpy form of one estimator (the
seed's implementation): the kernel evaluated on every pixel of every box, the
shape fit solved on the explicit basis, row medians of gathered annuli, a disk
stamped per position. Forced photometry with the references patched in and
with the compiled loops must give the same result for sources near the edges,
off the image, blended, on NaN pixels, below the detection limit and
broadened (a non-zero shape systematic), on float32 and float64 images.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from dsa110_contimg.data_ingestion import _photometry_compiled as compiled
from dsa110_contimg.data_ingestion import _photometry_noise as noise
from dsa110_contimg.data_ingestion import photometry
from dsa110_contimg.data_ingestion._photometry_kernels import (
    _box_fits,
    _exclusion_mask,
    _nearest_pixel,
    _PixelGaussian,
    _shape_basis,
)
from dsa110_contimg.data_ingestion.photometry import (
    Beam,
    measure_forced,
    residual_excess,
)
from dsa110_contimg.testing.images import make_point_source_image

BEAM = Beam(15.0, 11.0, 35.0)
CELL_ARCSEC = 3.0
RA0, DEC0 = 150.0, 40.0
RMS_JY = 1e-3
SHAPE = (400, 400)


def _gather(image, iy, ix):
    ny, nx = image.shape
    in_bounds = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    values = image[np.clip(iy, 0, ny - 1), np.clip(ix, 0, nx - 1)].astype(float)
    return np.where(in_bounds, values, np.nan), in_bounds


def _ref_box_fits(image, x, y, pixel_beam, half, *, shape=True):
    ix, iy, _ = _nearest_pixel(x, y, image.shape)
    offsets = np.arange(-half, half + 1)
    yy = iy[:, None, None] + offsets[None, :, None]
    xx = ix[:, None, None] + offsets[None, None, :]
    data, in_bounds = _gather(image, yy, xx)
    valid = np.isfinite(data)
    dx, dy = xx - x[:, None, None], yy - y[:, None, None]
    kernel = pixel_beam.evaluate(dx, dy)
    k_valid = np.where(valid, kernel, 0.0)
    k2_valid = np.sum(k_valid * k_valid, axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = np.sum(np.where(valid, data, 0.0) * k_valid, axis=(1, 2)) / k2_valid
        fraction = k2_valid / np.sum(kernel * kernel, axis=(1, 2))
    flux[~(fraction >= 0.5)] = np.nan
    has_nan = np.any(in_bounds & ~valid, axis=(1, 2))
    at_edge = ~np.all(in_bounds, axis=(1, 2))
    amp = np.full(x.size, np.nan)
    if shape:
        for k in np.flatnonzero(np.all(valid, axis=(1, 2))):
            basis = _shape_basis(pixel_beam, dx[k], dy[k]).reshape(-1, 6)
            normal = basis.T @ basis
            if np.linalg.cond(normal) < 1e12:
                amp[k] = np.linalg.solve(normal, basis.T @ data[k].ravel())[0]
    return flux, fraction, has_nan, at_edge, amp


def _ref_matched_filter(image, x, y, pixel_beam, half):
    return _ref_box_fits(image, x, y, pixel_beam, half, shape=False)[:4]


def _ref_exclusion_mask(shape, x, y, radius_pix):
    mask = np.zeros(shape, dtype=bool)
    ix, iy, _ = _nearest_pixel(x, y, shape)
    oy, ox = np.mgrid[0 : shape[0], 0 : shape[1]]
    for k in np.flatnonzero(np.isfinite(x) & np.isfinite(y)):
        mask |= (ox - ix[k]) ** 2 + (oy - iy[k]) ** 2 <= radius_pix**2
    return mask


def _ref_annulus_rms(image, x, y, radii_pix, exclude, fallback):
    r_in, r_out = radii_pix
    stride = max(1, math.ceil(math.sqrt(math.pi * (r_out**2 - r_in**2) / 1500)))
    steps = np.arange(0, math.ceil(r_out) + 1, stride)
    steps = np.concatenate([-steps[:0:-1], steps])
    oy, ox = np.meshgrid(steps, steps, indexing="ij")
    ring = (np.hypot(ox, oy) >= r_in) & (np.hypot(ox, oy) <= r_out)
    ix, iy, _ = _nearest_pixel(x, y, image.shape)
    yy, xx = iy[:, None] + oy[ring][None, :], ix[:, None] + ox[ring][None, :]
    values, in_bounds = _gather(image, yy, xx)
    ny, nx = image.shape
    excluded = exclude[np.clip(yy, 0, ny - 1), np.clip(xx, 0, nx - 1)] & in_bounds

    def rms(v):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(v, axis=1)
            sigma = np.nanmedian(np.abs(v - med[:, None]), axis=1) * 1.482602218505602
        return np.where(np.sum(np.isfinite(v), axis=1) >= 20, sigma, np.nan)

    masked = rms(np.where(excluded, np.nan, values))
    unmasked = fallback & ~np.isfinite(masked)
    return np.where(unmasked, rms(values), masked), unmasked & np.isfinite(rms(values))


def _ref_box_dots(image, ix, iy, first, second):
    half = first.shape[0] // 2
    offsets = np.arange(-half, half + 1)
    boxes = image[
        iy[:, None, None] + offsets[None, :, None],
        ix[:, None, None] + offsets[None, None, :],
    ].astype(float)
    full = np.all(np.isfinite(boxes), axis=(1, 2))
    return (
        np.where(full, np.sum(boxes * first, axis=(1, 2)), np.nan),
        np.where(full, np.sum(boxes * second, axis=(1, 2)), np.nan),
    )


@pytest.fixture
def reference(monkeypatch):
    """Patch the direct numpy estimators in for the compiled ones."""

    def patch():
        monkeypatch.setattr(photometry, "_box_fits", _ref_box_fits)
        monkeypatch.setattr(noise, "_matched_filter", _ref_matched_filter)
        monkeypatch.setattr(noise, "_exclusion_mask", _ref_exclusion_mask)
        monkeypatch.setattr(noise, "_annulus_rms", _ref_annulus_rms)
        monkeypatch.setattr(compiled, "box_dots", _ref_box_dots)

    return patch


def _field(dtype):
    """Sources near edges, off the image, blended, on NaN pixels, faint, broad."""
    rng = np.random.default_rng(21)
    _, wcs, _ = make_point_source_image(
        SHAPE,
        cell_arcsec=CELL_ARCSEC,
        center_ra_deg=RA0,
        center_dec_deg=DEC0,
        sources=[],
        beam=BEAM,
    )
    grid = np.arange(40.0, 361.0, 40.0)
    gx, gy = (a.ravel() for a in np.meshgrid(grid, grid))
    x = np.concatenate(
        [
            gx + rng.uniform(-0.5, 0.5, gx.size),
            [3.2, 396.6, 150.4, 1.0, -4.0, 420.0, 200.0, 103.0, 300.0, 299.8],
        ]
    )
    y = np.concatenate(
        [
            gy + rng.uniform(-0.5, 0.5, gy.size),
            [200.0, 120.3, 398.9, 1.0, 200.0, 50.0, -30.0, 60.0, 61.5, 143.0],
        ]
    )
    flux = np.concatenate([rng.uniform(0.05, 1.0, gx.size), np.full(10, 0.2)])
    flux[:5] = 0.0015  # faint: upper limits
    ra, dec = wcs.all_pix2world(x, y, 0)
    sources = list(zip(ra, dec, flux, strict=True))
    narrow, _, _ = make_point_source_image(
        SHAPE,
        cell_arcsec=CELL_ARCSEC,
        center_ra_deg=RA0,
        center_dec_deg=DEC0,
        sources=sources[::2],
        beam=BEAM,
        noise_rms_jy=RMS_JY,
        rng=rng,
    )
    wide = Beam(1.2 * BEAM.major_arcsec, 1.1 * BEAM.minor_arcsec, BEAM.pa_deg)
    broad, _, _ = make_point_source_image(
        SHAPE,
        cell_arcsec=CELL_ARCSEC,
        center_ra_deg=RA0,
        center_dec_deg=DEC0,
        sources=sources[1::2],
        beam=wide,
    )
    image = (narrow + broad / 1.32).astype(dtype)
    image[295:303, 140:146] = np.nan  # under the source at (299.8, 143)
    image[:, :2] = np.nan  # a blanked column band at the left edge
    ra_all = np.concatenate([ra, [np.nan]])  # a position that is not finite
    dec_all = np.concatenate([dec, [DEC0]])
    return image, wcs, ra_all, dec_all


FIELDS = (
    "flux_jy",
    "flux_err_jy",
    "flux_sys_jy",
    "peak_jy",
    "rms_jy",
    "snr",
    "pb",
    "x_pix",
    "y_pix",
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dense", [False, True])
def test_compiled_photometry_equals_direct_numpy(reference, dtype, dense) -> None:
    image, wcs, ra, dec = _field(dtype)
    if dense:  # a catalogue dense enough that annuli are masked out (fallback)
        rng = np.random.default_rng(22)
        x, y = rng.uniform(0, SHAPE[1], 600), rng.uniform(0, SHAPE[0], 600)
        extra_ra, extra_dec = wcs.all_pix2world(x, y, 0)
        ra, dec = np.concatenate([ra, extra_ra]), np.concatenate([dec, extra_dec])
    pb = np.linspace(0.1, 1.0, ra.size)
    kwargs = {"beam": BEAM, "pb": pb, "rms_box_beams": (3.0, 8.0)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sources without a local rms
        new = measure_forced(image, wcs, ra, dec, **kwargs)
        reference()
        old = measure_forced(image, wcs, ra, dec, **kwargs)
    np.testing.assert_array_equal(new.flags, old.flags)
    assert len(set(new.flags)) >= 5  # edge, NaN, low pb, blended, clean
    assert np.nanmax(new.flux_sys_jy / np.abs(new.flux_jy)) > 0.005  # broadened
    for name in FIELDS:
        a, b = getattr(new, name), getattr(old, name)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=0, err_msg=name)


def test_compiled_residual_excess_equals_direct_numpy(reference) -> None:
    image, wcs, ra, dec = _field(np.float32)
    residual = image - np.nanmedian(image)  # sources left in: tau > 0
    psf, _, _ = make_point_source_image(
        (101, 101),
        cell_arcsec=CELL_ARCSEC,
        center_ra_deg=RA0,
        center_dec_deg=DEC0,
        sources=[(RA0, DEC0, 1.0)],
        beam=Beam(12.0, 9.0, 35.0),  # narrower: the filter recovers < 1
    )
    new = residual_excess(residual, psf, wcs, ra, dec, beam=BEAM)
    reference()
    old = residual_excess(residual, psf, wcs, ra, dec, beam=BEAM)
    assert new > 0
    assert new == pytest.approx(old, rel=1e-9)


def test_exclusion_mask_equals_stamped_disks() -> None:
    x = np.array([0.4, 50.5, 51.49, 99.6, -10.0, 130.0, np.nan, 30.0])
    y = np.array([0.0, 20.5, 70.2, 99.4, 50.0, 40.0, 10.0, -7.6])
    for radius in (0.5, 1.0, 4.0, 7.3, 12.0):
        np.testing.assert_array_equal(
            _exclusion_mask((100, 120), x, y, radius),
            _ref_exclusion_mask((100, 120), x, y, radius),
        )


def test_box_fits_equal_direct_numpy_at_subpixel_offsets() -> None:
    rng = np.random.default_rng(23)
    image = rng.normal(size=(80, 90))
    image[40, 10] = np.nan
    pixel_beam = _PixelGaussian(np.array([[9.0, 2.5], [2.5, 4.0]]))
    x = np.concatenate([rng.uniform(-5, 95, 200), [10.2, np.nan]])
    y = np.concatenate([rng.uniform(-5, 85, 200), [40.3, 3.0]])
    for a, b in zip(
        _box_fits(image, x, y, pixel_beam, 6),
        _ref_box_fits(image, x, y, pixel_beam, 6),
        strict=True,
    ):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=0)
