"""Noise (rms) maps of radio images from robust statistics in boxes."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

__all__ = ["noise_map"]

_MAD_TO_SIGMA = 1.4826
_MAX_SAMPLES_PER_BOX = 4096


def noise_map(
    residual: ArrayLike, *, box_pix: int, min_valid_fraction: float = 0.25
) -> NDArray[np.float64]:
    r"""Return a map of the local rms of a (residual) image.

    Parameters
    ----------
    residual : array_like, shape (n_y, n_x)
        Image whose noise is measured, Jy/beam; NaN pixels are ignored.
        The residual image is preferred: it has no sources.
    box_pix : int
        Side of the square boxes in which the rms is measured, pixels
        (a few tens of synthesized beams is a good choice).
    min_valid_fraction : float
        Boxes with fewer finite pixels than this fraction take the rms of the
        nearest box that has enough.

    Returns
    -------
    ndarray, shape (n_y, n_x)
        Local rms, Jy/beam; NaN where ``residual`` is NaN, or everywhere when
        no box has enough finite pixels.

    Notes
    -----
    In each box the rms is the scaled median absolute deviation,
    :math:`\sigma = 1.4826\,\mathrm{median}(|d - \mathrm{median}(d)|)`,
    which ignores the few pixels of residual sources and sidelobes. At most
    4096 pixels per box are used (a regular subsample: restored-image noise
    is correlated over a beam). The box values are interpolated bilinearly
    between box centres (and held constant beyond the outermost centres), so
    the map is a smooth sliding-window estimate without edge steps.

    Examples
    --------
    >>> import numpy as np
    >>> noise = np.random.default_rng(1).normal(0.0, 2e-3, (256, 256))
    >>> rms = noise_map(noise, box_pix=64)
    >>> bool(abs(np.median(rms) / 2e-3 - 1) < 0.05)
    True
    """
    data = np.asarray(residual, dtype=np.float32)
    if data.ndim != 2:
        msg = f"residual must be a 2-D array, got shape {data.shape}"
        raise ValueError(msg)
    if box_pix < 2:
        msg = f"box_pix must be >= 2, got {box_pix}"
        raise ValueError(msg)
    box = int(min(box_pix, max(data.shape)))
    boxes = _box_rms(data, box, min_valid_fraction)
    if not np.any(np.isfinite(boxes)):
        return np.full(data.shape, np.nan)
    boxes = _fill_nearest(boxes)
    rms = _upsample_bilinear(boxes, box, data.shape)
    rms[~np.isfinite(data)] = np.nan
    return rms


def _box_rms(data: NDArray[np.float32], box: int, min_valid: float) -> NDArray:
    ny, nx = data.shape
    nby, nbx = -(-ny // box), -(-nx // box)
    padded = np.full((nby * box, nbx * box), np.nan, dtype=np.float32)
    padded[:ny, :nx] = data
    step = max(1, int(np.ceil(np.sqrt(box * box / _MAX_SAMPLES_PER_BOX))))
    tiles = padded.reshape(nby, box, nbx, box)[:, ::step, :, ::step]
    values = tiles.transpose(0, 2, 1, 3).reshape(nby * nbx, -1)
    n_valid = np.sum(np.isfinite(values), axis=1)
    enough = n_valid >= max(1.0, min_valid * values.shape[1])
    out = np.full(nby * nbx, np.nan)
    if np.any(enough):
        good = values[enough]
        median = np.nanmedian(good, axis=1)
        mad = np.nanmedian(np.abs(good - median[:, None]), axis=1)
        out[enough] = _MAD_TO_SIGMA * mad
    out[~(out > 0)] = np.nan
    return out.reshape(nby, nbx)


def _fill_nearest(grid: NDArray[np.float64]) -> NDArray[np.float64]:
    missing = ~np.isfinite(grid)
    if not missing.any():
        return grid
    _, (iy, ix) = ndimage.distance_transform_edt(missing, return_indices=True)
    return grid[iy, ix]


def _axis_weights(n_pix: int, n_box: int, box: int) -> tuple[NDArray, NDArray, NDArray]:
    """Return lower index, upper index and upper weight for each pixel."""
    centres = (np.arange(n_box) + 0.5) * box - 0.5
    pos = np.clip(np.arange(n_pix, dtype=float), centres[0], centres[-1])
    lo = np.clip(np.searchsorted(centres, pos, side="right") - 1, 0, n_box - 1)
    hi = np.minimum(lo + 1, n_box - 1)
    span = np.where(hi > lo, centres[hi] - centres[lo], 1.0)
    return lo, hi, (pos - centres[lo]) / span


def _upsample_bilinear(
    grid: NDArray[np.float64], box: int, shape: tuple[int, ...]
) -> NDArray[np.float64]:
    ylo, yhi, wy = _axis_weights(shape[0], grid.shape[0], box)
    xlo, xhi, wx = _axis_weights(shape[1], grid.shape[1], box)
    rows = grid[:, xlo] * (1.0 - wx) + grid[:, xhi] * wx  # (n_box_y, n_x)
    return rows[ylo] * (1.0 - wy)[:, None] + rows[yhi] * wy[:, None]
