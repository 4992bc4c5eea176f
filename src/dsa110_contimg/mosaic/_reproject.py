"""Reprojection of images onto mosaic tiles (bicubic spline or bilinear)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from astropy.wcs.utils import pixel_to_pixel
from numpy.typing import NDArray
from scipy.interpolate import RectBivariateSpline
from scipy.ndimage import map_coordinates, spline_filter

from dsa110_contimg._optional import require

__all__ = [
    "REPROJECT_METHODS",
    "PreparedImage",
    "input_coordinates",
    "prepare_image",
    "reproject_image",
]

REPROJECT_METHODS = ("fast", "interp")
_ORDER_NAMES = {1: "bilinear", 3: "bicubic"}
_GRID_STEP_PIX = 32


@dataclass(frozen=True, slots=True, eq=False)
class PreparedImage:
    """An image ready to be sampled at many positions.

    ``data`` is the input (native float32); ``coefficients`` its cubic-spline
    coefficients (order 3) or the data itself (order 1).
    """

    data: NDArray[np.float32]
    coefficients: NDArray[np.floating]
    order: int
    wcs: WCS


def prepare_image(data: NDArray, wcs: WCS, *, order: int = 3) -> PreparedImage:
    """Return an image prepared for `reproject_image` (spline prefilter once).

    Parameters
    ----------
    data : ndarray, shape (n_y, n_x)
        Image; for ``order=3`` it must be finite (fill NaN first).
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS.
    order : {1, 3}
        1 = bilinear (NaN-aware), 3 = cubic spline.
    """
    if order not in _ORDER_NAMES:
        msg = f"order must be 1 or 3, got {order}"
        raise ValueError(msg)
    array = np.asarray(data, dtype=np.float32)
    if array.ndim != 2:
        msg = f"data must be 2-D, got shape {array.shape}"
        raise ValueError(msg)
    if order == 3:
        if not np.all(np.isfinite(array)):
            msg = "cubic-spline reprojection needs finite data; fill NaN pixels first"
            raise ValueError(msg)
        # Exactly what scipy.ndimage.map_coordinates(order=3, mode="constant")
        # does internally (no pre-padding for mode "constant").
        coefficients = spline_filter(array, order=3, output=np.float64, mode="constant")
    else:
        coefficients = array
    return PreparedImage(array, coefficients, order, wcs.celestial)


def reproject_image(
    image: PreparedImage | NDArray,
    wcs_in: WCS | None,
    wcs_out: WCS,
    shape_out: tuple[int, int],
    *,
    order: int = 1,
    method: str = "fast",
    coords: tuple[NDArray[np.float64], NDArray[np.bool_]] | None = None,
) -> NDArray[np.float64]:
    """Reproject one image onto another pixel grid by spline interpolation.

    Parameters
    ----------
    image : PreparedImage or ndarray, shape (n_y, n_x)
        The input; an array is prepared with ``order`` and ``wcs_in``.
    wcs_in : astropy.wcs.WCS or None
        Celestial WCS of an array input (ignored for a `PreparedImage`).
    wcs_out : astropy.wcs.WCS
        Celestial WCS of the output.
    shape_out : (int, int)
        Output shape ``(n_y, n_x)``.
    order : {1, 3}
        Interpolation order of an array input: 1 bilinear, 3 bicubic spline.
    method : {"fast", "interp"}
        ``interp`` calls ``reproject.reproject_interp`` with the same order.
        ``fast`` transforms output-to-input pixel coordinates exactly on a
        grid every 32 pixels, interpolates them between with bicubic splines,
        and samples the image with ``scipy.ndimage.map_coordinates`` exactly
        as reproject does (see Notes).
    coords : tuple, optional
        Input coordinates from `input_coordinates` (``fast`` only), to reuse
        them for several images on one grid.

    Returns
    -------
    ndarray, shape shape_out
        Reprojected image; NaN outside the input (and, for order 1, where a
        NaN input pixel contributes).

    Notes
    -----
    Both methods follow reproject's conventions: values sit at pixel centres;
    output pixels within half a pixel outside the input take the edge value
    and those further out are NaN. The coordinate transformation between two
    celestial projections is smooth over a few pixels, so its spline
    interpolation errs by far less than 1e-3 pixel, and the two methods agree
    to a corresponding fraction of the pixel-to-pixel image variation (a unit
    test checks this). ``fast`` avoids the two WCS transformations per output
    pixel (with reproject's round-trip check) that dominate
    ``reproject_interp``'s run time, and prefilters a cubic-spline image once
    rather than once per tile.

    Bilinear interpolation acts as a smoothing kernel of variance
    ``f (1 - f)`` pixels^2 at sub-pixel offset ``f``; on a restoring beam of
    only ~3 pixels FWHM it lowers matched-filter fluxes by ~3% on average
    (up to 5%). The cubic spline interpolates band-limited images to <0.1%,
    so images are reprojected with order 3 and only the smooth weights with
    order 1.
    """
    if isinstance(image, PreparedImage):
        prepared = image
    elif wcs_in is None:
        msg = "wcs_in is required when image is an array"
        raise ValueError(msg)
    else:
        prepared = prepare_image(image, wcs_in, order=order)
    if method not in REPROJECT_METHODS:
        msg = f"method must be one of {REPROJECT_METHODS}, got {method!r}"
        raise ValueError(msg)
    shape_out = (int(shape_out[0]), int(shape_out[1]))
    if method == "interp":
        reproject = require("reproject", "mosaic")
        return np.asarray(
            reproject.reproject_interp(
                (prepared.data, prepared.wcs),
                wcs_out,
                shape_out=shape_out,
                order=_ORDER_NAMES[prepared.order],
                return_footprint=False,
            ),
            dtype=np.float64,
        )
    if coords is None:
        coords = input_coordinates(
            prepared.wcs, wcs_out, shape_out, prepared.data.shape
        )
    points, outside = coords
    values = map_coordinates(
        prepared.coefficients,
        points,
        order=prepared.order,
        mode="constant",
        cval=np.nan,
        prefilter=False,
    )
    values[outside] = np.nan
    return values.reshape(shape_out)


def input_coordinates(
    wcs_in: WCS,
    wcs_out: WCS,
    shape_out: tuple[int, int],
    shape_in: tuple[int, ...],
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Return the input (y, x) pixel of every output pixel, and the outside mask.

    Coordinates in the outer half pixel of the input are snapped to the edge
    pixel, as reproject does; ``outside`` flags those beyond.
    """
    x_in, y_in = _transform(wcs_in.celestial, wcs_out.celestial, shape_out)
    points = np.stack([y_in.ravel(), x_in.ravel()])
    outside = ~np.all(np.isfinite(points), axis=0)
    for axis, n in enumerate(shape_in[-2:]):
        c = points[axis]
        outside |= (c < -0.5) | (c > n - 0.5)
        c[(c < 0) & (c >= -0.5)] = 0.0
        c[(c >= n - 1) & (c < n - 0.5)] = n - 1.0
    points[:, outside] = 0.0
    return points, outside


def _transform(
    wcs_in: WCS, wcs_out: WCS, shape_out: tuple[int, int]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    ny, nx = shape_out
    if min(ny, nx) >= 4:
        n_y = min(ny, -(-(ny - 1) // _GRID_STEP_PIX) + 1)
        n_x = min(nx, -(-(nx - 1) // _GRID_STEP_PIX) + 1)
        n_y, n_x = max(4, n_y), max(4, n_x)
        yg = np.linspace(0.0, ny - 1.0, n_y)
        xg = np.linspace(0.0, nx - 1.0, n_x)
        xx, yy = np.meshgrid(xg, yg)
        x_grid, y_grid = pixel_to_pixel(wcs_out, wcs_in, xx, yy)
        if np.all(np.isfinite(x_grid)) and np.all(np.isfinite(y_grid)):
            y_full = np.arange(ny, dtype=float)
            x_full = np.arange(nx, dtype=float)
            x_in = RectBivariateSpline(yg, xg, x_grid, kx=3, ky=3)(y_full, x_full)
            y_in = RectBivariateSpline(yg, xg, y_grid, kx=3, ky=3)(y_full, x_full)
            return x_in, y_in
    # A tiny tile, or part of it has no counterpart (e.g. beyond the horizon
    # of a SIN projection): transform every pixel.
    xx, yy = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float))
    x_in, y_in = pixel_to_pixel(wcs_out, wcs_in, xx, yy)
    return np.asarray(x_in, dtype=float), np.asarray(y_in, dtype=float)
