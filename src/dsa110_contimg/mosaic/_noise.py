"""Noise (rms) maps of radio images: photutils' `Background2D` with a MAD rms."""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import zoom

__all__ = ["noise_map", "zoom_separable"]


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
        Boxes with fewer finite pixels than this fraction are left out and
        take their value from the boxes around them.

    Returns
    -------
    ndarray, shape (n_y, n_x)
        Local rms, Jy/beam; NaN where ``residual`` is NaN, or everywhere when
        no box has enough finite pixels.

    Notes
    -----
    `photutils.background.Background2D` with `MADStdBackgroundRMS` in each
    box, :math:`\sigma = \mathrm{MAD} / \Phi^{-1}(3/4) \approx 1.4826\,
    \mathrm{MAD}` (``astropy.stats.mad_std``), which ignores the few pixels of
    residual sources and sidelobes. Its cheapest options are used: no sigma
    clipping (the MAD is already robust) and no median filter of the box grid.
    The box values are interpolated between box centres by a cubic spline
    (``scipy.ndimage.zoom``), so the map is a smooth sliding-window estimate
    without edge steps. The zoom is separable and linear, so it is applied
    as two matrix products (`zoom_separable`): the same map as photutils'
    own interpolator to 1e-14, about 10x faster on a 4800^2 image.

    Examples
    --------
    >>> import numpy as np
    >>> noise = np.random.default_rng(1).normal(0.0, 2e-3, (256, 256))
    >>> rms = noise_map(noise, box_pix=64)
    >>> bool(abs(np.median(rms) / 2e-3 - 1) < 0.05)
    True
    """
    # imported here: photutils takes ~0.3 s, and image photometry imports this
    # package without making maps
    from photutils.background import (
        Background2D,
        MADStdBackgroundRMS,
        MedianBackground,
    )

    data = np.asarray(residual, dtype=np.float32)
    if data.ndim != 2:
        msg = f"residual must be a 2-D array, got shape {data.shape}"
        raise ValueError(msg)
    if box_pix < 2:
        msg = f"box_pix must be >= 2, got {box_pix}"
        raise ValueError(msg)
    finite = np.isfinite(data)
    if not finite.any():
        return np.full(data.shape, np.nan)
    box = (min(int(box_pix), data.shape[0]), min(int(box_pix), data.shape[1]))
    try:
        with warnings.catch_warnings():  # boxes left out are filled: expected
            warnings.simplefilter("ignore")
            background = Background2D(
                data,
                box,
                exclude_percentile=100.0 * (1.0 - min_valid_fraction),
                filter_size=1,
                sigma_clip=None,
                bkg_estimator=MedianBackground(),
                bkg_rms_estimator=MADStdBackgroundRMS(),
            )
            mesh = np.asarray(background.background_rms_mesh)
            rms = zoom_separable(mesh, background.box_size, data.shape)
    except ValueError:  # no box has enough finite pixels
        return np.full(data.shape, np.nan)
    rms[~finite | ~(rms > 0)] = np.nan
    return rms


def zoom_separable(
    mesh: ArrayLike, box_size: tuple[int, int], shape: tuple[int, int]
) -> NDArray[np.float64]:
    """Upsample a box mesh to an image as photutils' zoom interpolator does.

    The result equals ``scipy.ndimage.zoom(mesh, box_size, order=3,
    mode="reflect", grid_mode=True)`` cropped to ``shape`` and clipped to the
    mesh's range (what `Background2D.background_rms` returns), computed as
    ``Zy @ mesh @ Zx.T`` with the zoom operator of each axis.

    Parameters
    ----------
    mesh : array_like, shape (n_box_y, n_box_x)
        One value per box.
    box_size : (int, int)
        Box side along y and x, pixels.
    shape : (int, int)
        Image shape ``(n_y, n_x)``; at most the mesh times the box size.
    """
    grid = np.asarray(mesh, dtype=np.float64)
    if np.ptp(grid) == 0:
        return np.full(shape, grid.min())

    def operator(n_box: int, box: int, n_out: int) -> NDArray[np.float64]:
        eye = np.eye(n_box)
        return zoom(eye, (box, 1), order=3, mode="reflect", grid_mode=True)[:n_out]

    zy = operator(grid.shape[0], int(box_size[0]), shape[0])
    zx = operator(grid.shape[1], int(box_size[1]), shape[1])
    out = zy @ grid @ zx.T
    return np.clip(out, grid.min(), grid.max(), out=out)
