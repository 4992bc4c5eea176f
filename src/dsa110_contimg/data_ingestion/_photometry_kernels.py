"""The beam on the pixel grid: matched filter, shape fit and pixel look-ups.

Positions become pixels through the image's WCS; the restoring beam becomes a
pixel-space Gaussian (`_PixelGaussian`), whose least-squares amplitude at a
sub-pixel position is the matched filter (`_matched_filter`) and whose fit
with its derivatives gives the shape-free amplitude (`_shape_amplitude`).
Work is done in chunks of at most ~1e6 pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray

from dsa110_contimg.data_ingestion._photometry_types import Beam

__all__: list[str] = []

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_MIN_WEIGHT_FRACTION = 0.5
_CHUNK_PIXELS = 1_000_000


@dataclass(frozen=True, slots=True)
class _PixelGaussian:
    """An elliptical Gaussian in pixel coordinates, ``exp(-d^T C^-1 d / 2)``."""

    cov: NDArray[np.float64]

    @classmethod
    def from_beam(cls, beam: Beam, wcs: WCS) -> _PixelGaussian:
        # Imagers restore with a fixed pixel-space kernel, so the beam maps to
        # pixels through the linear WCS at the reference point.
        cel = wcs.celestial
        to_sky = cel.pixel_scale_matrix[[cel.wcs.lng, cel.wcs.lat], :]
        pa = math.radians(beam.pa_deg)
        major = np.array([math.sin(pa), math.cos(pa)])  # (east, north)
        minor = np.array([math.cos(pa), -math.sin(pa)])
        s_major = beam.major_arcsec / 3600.0 / _FWHM_PER_SIGMA
        s_minor = beam.minor_arcsec / 3600.0 / _FWHM_PER_SIGMA
        sky = s_major**2 * np.outer(major, major) + s_minor**2 * np.outer(minor, minor)
        inv = np.linalg.inv(to_sky)
        return cls(inv @ sky @ inv.T)

    @property
    def major_pix(self) -> float:
        return float(np.sqrt(np.linalg.eigvalsh(self.cov)[-1]) * _FWHM_PER_SIGMA)

    def evaluate(self, dx: NDArray[np.float64], dy: NDArray[np.float64]) -> NDArray:
        a, b, c = np.linalg.inv(self.cov)[[0, 0, 1], [0, 1, 1]]
        return np.exp(-0.5 * (a * dx * dx + 2.0 * b * dx * dy + c * dy * dy))


def _as_image(image: ArrayLike, name: str = "image") -> NDArray[np.float64]:
    array = np.asarray(image, dtype=np.float64)
    if array.ndim != 2:
        msg = f"{name} must be a 2-D array, got shape {array.shape}"
        raise ValueError(msg)
    return array


def _to_pixels(
    wcs: WCS, ra_deg: ArrayLike, dec_deg: ArrayLike
) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    if not (wcs.has_celestial and wcs.naxis == 2):
        msg = f"wcs must be a 2-D celestial WCS, got naxis={wcs.naxis}"
        raise ValueError(msg)
    ra = np.atleast_1d(np.asarray(ra_deg, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec_deg, dtype=np.float64))
    if ra.shape != dec.shape or ra.ndim != 1:
        msg = f"ra_deg and dec_deg must be 1-D of equal length: {ra.shape}, {dec.shape}"
        raise ValueError(msg)
    with np.errstate(invalid="ignore"):
        x, y = wcs.all_world2pix(ra, dec, 0)
    return ra, dec, np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def _nearest_pixel(
    x: NDArray, y: NDArray, shape: tuple[int, ...]
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.bool_]]:
    finite = np.isfinite(x) & np.isfinite(y)
    ix = np.where(finite, np.rint(np.where(finite, x, 0.0)), 0).astype(np.intp)
    iy = np.where(finite, np.rint(np.where(finite, y, 0.0)), 0).astype(np.intp)
    inside = finite & (ix >= 0) & (ix < shape[1]) & (iy >= 0) & (iy < shape[0])
    return ix, iy, inside


def _chunks(n_items: int, n_per_item: int) -> list[slice]:
    step = max(1, _CHUNK_PIXELS // max(1, n_per_item))
    return [slice(start, start + step) for start in range(0, n_items, step)]


def _gather(
    image: NDArray, iy: NDArray, ix: NDArray
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Return ``image[iy, ix]`` (NaN outside) and the in-bounds mask."""
    ny, nx = image.shape
    in_bounds = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    values = image[np.clip(iy, 0, ny - 1), np.clip(ix, 0, nx - 1)]
    return np.where(in_bounds, values, np.nan), in_bounds


def _matched_filter(
    image: NDArray, x: NDArray, y: NDArray, pixel_beam: _PixelGaussian, half: int
) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """Return flux, weight fraction, has-NaN and crosses-edge for each position."""
    n_src = x.size
    ix, iy, _ = _nearest_pixel(x, y, image.shape)
    offsets = np.arange(-half, half + 1)
    flux = np.full(n_src, np.nan)
    fraction = np.zeros(n_src)
    has_nan = np.zeros(n_src, dtype=bool)
    at_edge = np.zeros(n_src, dtype=bool)
    for part in _chunks(n_src, offsets.size**2):
        yy = iy[part, None, None] + offsets[None, :, None]
        xx = ix[part, None, None] + offsets[None, None, :]
        data, in_bounds = _gather(image, yy, xx)
        valid = np.isfinite(data)
        kernel = pixel_beam.evaluate(xx - x[part, None, None], yy - y[part, None, None])
        k_valid = np.where(valid, kernel, 0.0)
        k2_valid = np.sum(k_valid * k_valid, axis=(1, 2))
        k2_full = np.sum(kernel * kernel, axis=(1, 2))
        num = np.sum(np.where(valid, data, 0.0) * k_valid, axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            flux[part] = num / k2_valid
            fraction[part] = k2_valid / k2_full
        has_nan[part] = np.any(in_bounds & ~valid, axis=(1, 2))
        at_edge[part] = ~np.all(in_bounds, axis=(1, 2))
    flux[~(fraction >= _MIN_WEIGHT_FRACTION)] = np.nan
    return flux, fraction, has_nan, at_edge


def _shape_basis(
    pixel_beam: _PixelGaussian, dx: NDArray[np.float64], dy: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Return the beam and its five first and second derivatives, shape (..., 6).

    With ``u = C^-1 d`` the beam ``K = exp(-d^T C^-1 d / 2)`` has derivatives
    ``-K u`` (a shift) and ``K (u u^T - C^-1)`` (a change of width); the
    second derivatives integrate to zero, so a fit with them keeps the
    integrated flux in the amplitude of ``K``.
    """
    inv = np.linalg.inv(pixel_beam.cov)
    kernel = pixel_beam.evaluate(dx, dy)
    u0 = inv[0, 0] * dx + inv[0, 1] * dy
    u1 = inv[1, 0] * dx + inv[1, 1] * dy
    return np.stack(
        [
            kernel,
            kernel * (u0 * u0 - inv[0, 0]),
            kernel * (u1 * u1 - inv[1, 1]),
            kernel * (u0 * u1 - inv[0, 1]),
            kernel * u0,
            kernel * u1,
        ],
        axis=-1,
    )


def _shape_amplitude(
    image: NDArray, x: NDArray, y: NDArray, pixel_beam: _PixelGaussian, half: int
) -> NDArray[np.float64]:
    """Return the beam amplitude of a fit that lets the width and centre vary.

    NaN where the fitting box is incomplete (edge or NaN pixels).
    """
    ix, iy, _ = _nearest_pixel(x, y, image.shape)
    offsets = np.arange(-half, half + 1)
    amp = np.full(x.size, np.nan)
    for part in _chunks(x.size, 6 * offsets.size**2):
        yy = iy[part, None, None] + offsets[None, :, None]
        xx = ix[part, None, None] + offsets[None, None, :]
        data, _ = _gather(image, yy, xx)
        full = np.all(np.isfinite(data), axis=(1, 2))
        basis = _shape_basis(
            pixel_beam, xx - x[part, None, None], yy - y[part, None, None]
        ).reshape(yy.shape[0], -1, 6)
        values = np.where(np.isfinite(data), data, 0.0).reshape(yy.shape[0], -1)
        normal = np.einsum("npi,npj->nij", basis, basis)
        rhs = np.einsum("npi,np->ni", basis, values)
        ok = full & np.all(np.isfinite(normal), axis=(1, 2))
        coef = np.full((yy.shape[0], 6), np.nan)
        if ok.any():
            ok[ok] = np.linalg.cond(normal[ok]) < 1e12
            coef[ok] = np.linalg.solve(normal[ok], rhs[ok][:, :, None])[:, :, 0]
        amp[part] = coef[:, 0]
    return amp


def _estimator_vectors(
    pixel_beam: _PixelGaussian, half: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return the weights of the matched filter and of the shape difference.

    For a box centred on a pixel, the matched filter is ``sum(mf * d)`` and
    the difference of the shape-fit amplitude and the matched filter is
    ``sum(delta * d)``; both have shape (2 half + 1, 2 half + 1).
    """
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    dx, dy = np.meshgrid(offsets, offsets)
    basis = _shape_basis(pixel_beam, dx, dy).reshape(-1, 6)
    kernel = basis[:, 0]
    mf = kernel / np.sum(kernel * kernel)
    shape_row = np.linalg.pinv(basis)[0]
    return mf.reshape(dx.shape), (shape_row - mf).reshape(dx.shape)


def _exclusion_mask(
    shape: tuple[int, ...], x: NDArray, y: NDArray, radius_pix: float
) -> NDArray[np.bool_]:
    """Return a mask of pixels within ``radius_pix`` of any position."""
    mask = np.zeros(shape, dtype=bool)
    r = int(math.ceil(radius_pix))
    oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
    disk = ox**2 + oy**2 <= radius_pix**2
    oy, ox = oy[disk], ox[disk]
    ix, iy, _ = _nearest_pixel(x, y, shape)
    near = np.isfinite(x) & np.isfinite(y)
    near &= (ix > -r - 1) & (ix < shape[1] + r) & (iy > -r - 1) & (iy < shape[0] + r)
    for part in _chunks(int(near.sum()), oy.size):
        yy = iy[near][part, None] + oy[None, :]
        xx = ix[near][part, None] + ox[None, :]
        keep = (yy >= 0) & (yy < shape[0]) & (xx >= 0) & (xx < shape[1])
        mask[yy[keep], xx[keep]] = True
    return mask
