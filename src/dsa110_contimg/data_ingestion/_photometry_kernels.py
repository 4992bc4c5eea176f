"""The beam on the pixel grid: matched filter, shape fit and pixel look-ups.

Positions become pixels through the image's WCS; the restoring beam becomes a
pixel-space Gaussian (`_PixelGaussian`), whose least-squares amplitude at a
sub-pixel position is the matched filter and whose fit with its derivatives
gives the shape-free amplitude (`_box_fits`, one compiled pass over each
fitting box: `_photometry_compiled`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray

from dsa110_contimg.data_ingestion import _photometry_compiled as _compiled
from dsa110_contimg.data_ingestion._photometry_types import Beam

__all__: list[str] = []

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_MIN_WEIGHT_FRACTION = 0.5


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


def _as_image(
    image: ArrayLike, name: str = "image", *, keep_float32: bool = False
) -> NDArray[np.floating]:
    """Return a 2-D float64 array (float32 kept with ``keep_float32``)."""
    array = np.asarray(image)
    if not (keep_float32 and array.dtype == np.float32):
        array = np.asarray(array, dtype=np.float64)
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


def _spatial_order(ix: NDArray[np.intp], iy: NDArray[np.intp]) -> NDArray[np.intp]:
    """Return an order of positions by bands of 64 rows, then column.

    Neighbouring positions read neighbouring pixels, so visiting them in this
    order keeps the image in the cache (2x faster gathers for a catalogue in
    random order); every position is measured alone, so the order does not
    change a number.
    """
    return np.lexsort((ix, iy >> 6))


def _unorder(values: NDArray, order: NDArray[np.intp]) -> NDArray:
    """Return ``values`` (in ``order``) in the original order."""
    out = np.empty_like(values)
    out[order] = values
    return out


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
    flux, fraction, has_nan, at_edge, _ = _box_fits(
        image, x, y, pixel_beam, half, shape=False
    )
    return flux, fraction, has_nan, at_edge


def _box_fits(
    image: NDArray,
    x: NDArray,
    y: NDArray,
    pixel_beam: _PixelGaussian,
    half: int,
    *,
    shape: bool = True,
) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray]:
    """Return the matched filter and the shape-fit amplitude at each position.

    Returns flux, weight fraction, has-NaN, crosses-edge and the beam
    amplitude of a fit that lets the width and centre vary (NaN where the
    fitting box is incomplete, or without ``shape``). The matched filter
    leaves NaN and off-image pixels out of its sums; with less than half the
    kernel weight left the flux is NaN.
    """
    ix, iy, _ = _nearest_pixel(x, y, image.shape)
    inv = np.linalg.inv(pixel_beam.cov)
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    g0 = pixel_beam.evaluate(offsets[None, :], offsets[:, None])
    order = _spatial_order(ix, iy)
    sums = _compiled.box_moments(
        _native(image), x[order], y[order], ix[order], iy[order], half, g0, inv, shape
    )
    num, k2_valid, k2_full, has_nan, at_edge, full, g, h = (
        _unorder(a, order) for a in sums
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = num / k2_valid
        fraction = k2_valid / k2_full
    flux[~(fraction >= _MIN_WEIGHT_FRACTION)] = np.nan
    amp = np.full(x.size, np.nan)
    if shape:
        amp[full] = _shape_solve(g[full], h[full], inv)
    return flux, fraction, has_nan, at_edge, amp


# the moment sum(K^2 dx^p dy^q) behind each element of the monomials' normal matrix
_NORMAL_MOMENTS = np.array(
    [
        [_compiled.G_INDEX[(p1 + p2, q1 + q2)] for p2, q2 in _compiled.MONOMIALS]
        for p1, q1 in _compiled.MONOMIALS
    ]
)


def _shape_transform(inv: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return T with `_shape_basis` = K T m, m = (1, dx, dy, dx^2, dx dy, dy^2)."""
    i00, i01, i10, i11 = inv[0, 0], inv[0, 1], inv[1, 0], inv[1, 1]
    return np.array(
        [
            [1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [-i00, 0.0, 0.0, i00 * i00, 2.0 * i00 * i01, i01 * i01],
            [-i11, 0.0, 0.0, i10 * i10, 2.0 * i10 * i11, i11 * i11],
            [-i01, 0.0, 0.0, i00 * i10, i00 * i11 + i01 * i10, i01 * i11],
            [0.0, i00, i01, 0.0, 0.0, 0.0],
            [0.0, i10, i11, 0.0, 0.0, 0.0],
        ]
    )


def _shape_solve(
    g: NDArray[np.float64], h: NDArray[np.float64], inv: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Return the beam amplitude of the least-squares fit of `_shape_basis`.

    ``g`` and ``h`` are the moments of complete boxes (`box_moments`): the
    normal matrix of the basis is ``T M T^T`` with ``M`` the monomials'
    (moments of ``K^2``), its right-hand side ``T h``. NaN where the normal
    matrix is not finite or its condition number reaches 1e12.
    """
    transform = _shape_transform(inv)
    normal = transform @ g[:, _NORMAL_MOMENTS] @ transform.T
    rhs = h @ transform.T
    ok = np.all(np.isfinite(normal), axis=(1, 2))
    coef = np.full((g.shape[0], 6), np.nan)
    if ok.any():
        ok[ok] = np.linalg.cond(normal[ok]) < 1e12
        coef[ok] = np.linalg.solve(normal[ok], rhs[ok][:, :, None])[:, :, 0]
    return coef[:, 0]


def _native(image: NDArray) -> NDArray:
    """Return ``image`` as a C-contiguous native-endian float32/float64 array."""
    dtype = image.dtype if image.dtype in (np.float32, np.float64) else np.float64
    return np.ascontiguousarray(image, dtype=dtype.newbyteorder("="))


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
    """Return a mask of pixels within ``radius_pix`` of any position.

    A pixel is masked when its offset ``(ox, oy)`` from a position's nearest
    pixel has ``ox^2 + oy^2 <= radius_pix^2``.
    """
    r = int(math.ceil(radius_pix))
    oy = np.arange(-r, r + 1)
    room = radius_pix**2 - oy**2
    span = np.floor(np.sqrt(np.maximum(room, 0.0))).astype(np.intp)
    # the float comparison of the definition decides at the boundary
    span += (span + 1) ** 2 + oy**2 <= radius_pix**2
    span -= span**2 + oy**2 > radius_pix**2
    span[room < 0] = -1
    ix, iy, _ = _nearest_pixel(x, y, shape)
    near = np.isfinite(x) & np.isfinite(y)
    near &= (ix > -r - 1) & (ix < shape[1] + r) & (iy > -r - 1) & (iy < shape[0] + r)
    return _compiled.disk_mask(int(shape[0]), int(shape[1]), ix, iy, near, span)
