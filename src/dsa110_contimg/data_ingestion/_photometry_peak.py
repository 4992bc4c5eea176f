"""Sub-pixel positions of the brightest pixel near catalogue positions."""

from __future__ import annotations

import numpy as np
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray

from dsa110_contimg.data_ingestion._photometry_kernels import (
    _as_image,
    _gather,
    _nearest_pixel,
    _to_pixels,
)

__all__ = ["fit_peak_position"]


def fit_peak_position(
    image: ArrayLike,
    wcs: WCS,
    ra_deg: ArrayLike,
    dec_deg: ArrayLike,
    *,
    search_radius_pix: int = 5,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return the sub-pixel position of the brightest pixel near each position.

    Parameters
    ----------
    image : array_like, shape (n_y, n_x)
        Restored image, indexed ``image[y, x]``.
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS of ``image``.
    ra_deg, dec_deg : array_like, shape (n_src,)
        Starting positions, degrees.
    search_radius_pix : int
        Half-width of the square searched for the brightest pixel, pixels.

    Returns
    -------
    ra_deg, dec_deg : ndarray, shape (n_src,)
        Refined positions, degrees; NaN where no finite pixel was found.

    Notes
    -----
    A quadratic surface
    :math:`q(u, v) = c_0 + c_1 u + c_2 v + c_3 u^2 + c_4 u v + c_5 v^2` is
    fitted by least squares to the 3x3 pixels around the brightest one and its
    maximum taken, which refines x and y jointly (a rotated beam couples
    them). The fit is to the logarithm of the pixel values when all nine are
    positive, which is exact for a noiseless Gaussian; otherwise to the values.
    The shift is clipped to one pixel; no refinement is made at the image edge.
    """
    data = _as_image(image)
    _, _, x, y = _to_pixels(wcs, ra_deg, dec_deg)
    r = int(search_radius_pix)
    if r < 0:
        msg = f"search_radius_pix must be >= 0, got {search_radius_pix}"
        raise ValueError(msg)
    ix, iy, inside = _nearest_pixel(x, y, data.shape)
    offsets = np.arange(-r, r + 1)
    stamp, _ = _gather(
        data,
        iy[:, None, None] + offsets[None, :, None],
        ix[:, None, None] + offsets[None, None, :],
    )
    stamp = np.where(np.isfinite(stamp), stamp, -np.inf).reshape(x.size, -1)
    best = np.argmax(stamp, axis=1)
    found = inside & np.isfinite(stamp[np.arange(x.size), best])
    py = iy + best // offsets.size - r
    px = ix + best % offsets.size - r
    du, dv = _quadratic_peak(data, px, py)
    x_peak = np.where(found, px + du, np.nan)
    y_peak = np.where(found, py + dv, np.nan)
    ra_out, dec_out = wcs.all_pix2world(x_peak, y_peak, 0)
    return np.asarray(ra_out, dtype=np.float64) % 360.0, np.asarray(
        dec_out, dtype=np.float64
    )


def _quadratic_peak(
    data: NDArray, px: NDArray[np.intp], py: NDArray[np.intp]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return the sub-pixel offset of the maximum of a quadratic fit to 3x3 pixels."""
    v, u = (a.ravel() for a in np.mgrid[-1:2, -1:2])
    design = np.column_stack([np.ones(9), u, v, u * u, u * v, v * v]).astype(float)
    values, _ = _gather(data, py[:, None] + v[None, :], px[:, None] + u[None, :])
    usable = np.all(np.isfinite(values), axis=1)
    positive = usable & np.all(values > 0, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        surface = np.where(
            positive[:, None], np.log(np.where(values > 0, values, 1.0)), values
        )
    c = np.where(usable[:, None], surface, 0.0) @ np.linalg.pinv(design).T
    # Stationary point: [[2c3, c4], [c4, 2c5]] (u, v) = -(c1, c2).
    h11, h12, h22 = 2.0 * c[:, 3], c[:, 4], 2.0 * c[:, 5]
    det = h11 * h22 - h12 * h12
    is_max = usable & (h11 < 0) & (det > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        du = (-c[:, 1] * h22 + c[:, 2] * h12) / det
        dv = (-c[:, 2] * h11 + c[:, 1] * h12) / det
    du = np.clip(np.where(is_max, du, 0.0), -1.0, 1.0)
    dv = np.clip(np.where(is_max, dv, 0.0), -1.0, 1.0)
    return du, dv
