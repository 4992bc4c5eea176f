"""The common pixel grid of a mosaic."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray

__all__ = ["circular_mean_deg", "image_outline", "mosaic_grid"]

_OUTLINE_SAMPLES = 33


def circular_mean_deg(angles_deg: ArrayLike, weights: ArrayLike | None = None) -> float:
    r"""Return the circular mean of angles, degrees in ``[0, 360)``.

    Parameters
    ----------
    angles_deg : array_like
        Angles, degrees (e.g. right ascensions).
    weights : array_like, optional
        Non-negative weights, same shape.

    Returns
    -------
    float
        :math:`\operatorname{atan2}(\sum w \sin a, \sum w \cos a)`; unlike the
        arithmetic mean it is right across the 0/360 wrap.

    Raises
    ------
    ValueError
        The angles cancel out (no defined mean) or none is given.

    Examples
    --------
    >>> round(circular_mean_deg([359.0, 1.0, 3.0]), 6)
    1.0
    """
    a = np.deg2rad(np.atleast_1d(np.asarray(angles_deg, dtype=np.float64)))
    w = np.ones_like(a) if weights is None else np.asarray(weights, dtype=np.float64)
    s, c = float(np.sum(w * np.sin(a))), float(np.sum(w * np.cos(a)))
    if a.size == 0 or math.hypot(s, c) < 1e-12 * max(1.0, float(np.sum(w))):
        msg = "angles have no defined circular mean (empty or uniformly spread)"
        raise ValueError(msg)
    mean = math.degrees(math.atan2(s, c)) % 360.0
    return 0.0 if mean >= 360.0 else mean  # -1e-15 % 360 rounds to 360


def image_outline(
    wcs: WCS, shape: tuple[int, int]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return RA and Dec (degrees) of points along an image's border."""
    ny, nx = shape
    t = np.linspace(0.0, 1.0, _OUTLINE_SAMPLES)
    x = np.concatenate([t * (nx - 1), np.full_like(t, nx - 1), t * (nx - 1), 0 * t])
    y = np.concatenate([0 * t, t * (ny - 1), np.full_like(t, ny - 1), t * (ny - 1)])
    x = np.concatenate([x, [0.5 * (nx - 1)]])
    y = np.concatenate([y, [0.5 * (ny - 1)]])
    ra, dec = wcs.celestial.pixel_to_world_values(x, y)
    return np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)


def mosaic_grid(
    outlines: Sequence[tuple[ArrayLike, ArrayLike]],
    *,
    cell_deg: float,
    projection: str = "SIN",
    pad_pix: int = 2,
) -> tuple[WCS, tuple[int, int]]:
    """Return a 2-D celestial WCS and shape covering every outline.

    Parameters
    ----------
    outlines : sequence of (ra_deg, dec_deg) arrays
        Border points of each image (see `image_outline`); the last point of
        each is taken as its centre.
    cell_deg : float
        Pixel size, degrees.
    projection : {"SIN", "CAR"}
        ``SIN`` is centred on (circular-mean RA, mean Dec) of the image
        centres. ``CAR`` has its reference on the equator at the
        circular-mean RA, so rows are parallels, and RA pixels of
        ``cell_deg / cos(Dec)`` so pixels are square at the strip centre.
    pad_pix : int
        Margin added on every side, pixels.

    Returns
    -------
    wcs : astropy.wcs.WCS
        ICRS ``RA---<proj>``/``DEC--<proj>`` WCS.
    shape : (int, int)
        ``(n_y, n_x)``.
    """
    if not outlines:
        msg = "mosaic_grid needs at least one image outline"
        raise ValueError(msg)
    if projection not in ("SIN", "CAR"):
        msg = f"projection must be 'SIN' or 'CAR', got {projection!r}"
        raise ValueError(msg)
    centres_ra = [np.asarray(ra, dtype=float)[-1] for ra, _ in outlines]
    centres_dec = [np.asarray(dec, dtype=float)[-1] for _, dec in outlines]
    ra0 = circular_mean_deg(centres_ra)
    dec0 = float(np.mean(centres_dec))
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = [f"RA---{projection}", f"DEC--{projection}"]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.equinox = 2000.0
    if projection == "SIN":
        wcs.wcs.crval = [ra0, dec0]
        wcs.wcs.cdelt = [-cell_deg, cell_deg]
    else:
        wcs.wcs.crval = [ra0, 0.0]
        wcs.wcs.cdelt = [-cell_deg / math.cos(math.radians(dec0)), cell_deg]
    wcs.wcs.crpix = [1.0, 1.0]
    ra_all = np.concatenate([np.asarray(ra, dtype=float) for ra, _ in outlines])
    dec_all = np.concatenate([np.asarray(dec, dtype=float) for _, dec in outlines])
    ok = np.isfinite(ra_all) & np.isfinite(dec_all)
    x, y = wcs.world_to_pixel_values(ra_all[ok], dec_all[ok])
    x0, x1 = math.floor(np.nanmin(x)) - pad_pix, math.ceil(np.nanmax(x)) + pad_pix
    y0, y1 = math.floor(np.nanmin(y)) - pad_pix, math.ceil(np.nanmax(y)) + pad_pix
    wcs.wcs.crpix = [1.0 - x0, 1.0 - y0]
    wcs.wcs.set()
    return wcs, (y1 - y0 + 1, x1 - x0 + 1)
