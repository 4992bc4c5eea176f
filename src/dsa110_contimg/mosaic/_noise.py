"""Noise (rms) maps of radio images: photutils' `Background2D` with a MAD rms."""

from __future__ import annotations

import warnings

import numpy as np
from astropy.stats import mad_std
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
    ndarray of float32, shape (n_y, n_x)
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
    own interpolator to 1e-14, about 10x faster on a 4800^2 image; the large
    product is taken in float32 (the map is written as float32): within
    1e-6 relative of the float64 product.

    The box statistic is photutils' `MADStdBackgroundRMS` value computed
    without its per-box loop (`_BoxMadStd`: one vectorised median over all
    boxes free of NaN, the NaN-ignoring median only for boxes with NaN; the
    same numbers, tested), and the unused box background is not measured
    (`_NoBackground`): 3x faster on a 4800^2 image.

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
    from photutils.background import Background2D

    data = np.asarray(residual, dtype=np.float32)
    if data.ndim != 2:
        msg = f"residual must be a 2-D array, got shape {data.shape}"
        raise ValueError(msg)
    if box_pix < 2:
        msg = f"box_pix must be >= 2, got {box_pix}"
        raise ValueError(msg)
    finite = np.isfinite(data)
    if not finite.any():
        return np.full(data.shape, np.nan, dtype=np.float32)
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
                bkg_estimator=_NoBackground(),
                bkg_rms_estimator=_BoxMadStd(),
            )
            mesh = np.asarray(background.background_rms_mesh)
            rms = zoom_separable(
                mesh, background.box_size, data.shape, dtype=np.float32
            )
    except ValueError:  # no box has enough finite pixels
        return np.full(data.shape, np.nan, dtype=np.float32)
    rms[~finite | ~(rms > 0)] = np.nan
    return rms


class _NoBackground:
    """Box background estimator that measures nothing (zeros).

    `noise_map` uses only the rms mesh; photutils marks boxes with too few
    pixels from the pixel counts, not from this value.
    """

    def __call__(self, data, axis=None, masked=False):
        if axis is None:
            return np.float32(0.0)
        return np.zeros(np.shape(data)[:-1], dtype=np.float32)


class _BoxMadStd:
    """``MADStdBackgroundRMS`` per box, vectorised over the boxes.

    ``mad_std(..., ignore_nan=True)`` with an axis runs numpy's NaN median
    box by box in Python; boxes without NaN give the same median from one
    vectorised `numpy.median`, so only boxes holding NaN take that path.
    """

    def __call__(self, data, axis=None, masked=False):
        data = np.asarray(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if axis is None or data.ndim == 1:
                return mad_std(data, axis=axis, ignore_nan=True)
            has_nan = np.isnan(data).any(axis=axis)
            out = _mad_std_in_place(np.array(np.moveaxis(data, axis, -1)))
            if has_nan.any():
                out[has_nan] = mad_std(
                    np.moveaxis(data, axis, -1)[has_nan], axis=-1, ignore_nan=True
                )
        return out


def _mad_std_in_place(work: NDArray) -> NDArray:
    """``mad_std(work, axis=-1)`` computed inside ``work`` (which it scrambles).

    The same operations as `astropy.stats.mad_std` with `numpy.median`
    (median, absolute deviations from it, their median, times 1.4826), in
    the array's own memory: one partition in place per median and no
    temporaries of the data's size.
    """
    centre = np.median(work, axis=-1, overwrite_input=True)
    np.subtract(work, centre[..., None], out=work)
    np.abs(work, out=work)
    return np.median(work, axis=-1, overwrite_input=True) * 1.482602218505602


def zoom_separable(
    mesh: ArrayLike,
    box_size: tuple[int, int],
    shape: tuple[int, int],
    *,
    dtype: type = np.float64,
) -> NDArray:
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
    dtype : numpy dtype
        Type of the result and of the large (image-sized) matrix product;
        float32 halves the time and memory, within 1e-6 relative of float64.
    """
    grid = np.asarray(mesh, dtype=np.float64)
    if np.ptp(grid) == 0:
        return np.full(shape, grid.min(), dtype=dtype)

    def operator(n_box: int, box: int, n_out: int) -> NDArray[np.float64]:
        eye = np.eye(n_box)
        return zoom(eye, (box, 1), order=3, mode="reflect", grid_mode=True)[:n_out]

    zy = operator(grid.shape[0], int(box_size[0]), shape[0])
    zx = operator(grid.shape[1], int(box_size[1]), shape[1])
    out = (zy @ grid).astype(dtype) @ zx.T.astype(dtype)
    return np.clip(out, grid.min(), grid.max(), out=out)
