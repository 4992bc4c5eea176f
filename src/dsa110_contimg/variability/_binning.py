"""Light curves averaged onto a common time grid (inverse-variance weighted bins)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["BinnedLightcurves", "bin_lightcurves"]


@dataclass(frozen=True, slots=True, eq=False)
class BinnedLightcurves:
    """Light curves on a common time grid (NaN where a source has no data).

    Parameters
    ----------
    source_name : ndarray of str, shape (n_src,)
        Sources, sorted.
    time_mjd : ndarray, shape (n_bin,)
        Bin centres, MJD.
    flux_jy, flux_err_jy : ndarray, shape (n_src, n_bin)
        Inverse-variance weighted mean flux in each bin and its error, Jy.
    """

    source_name: NDArray[np.str_]
    time_mjd: NDArray[np.float64]
    flux_jy: NDArray[np.float64]
    flux_err_jy: NDArray[np.float64]


def bin_lightcurves(
    source_name: ArrayLike,
    mjd: ArrayLike,
    flux_jy: ArrayLike,
    flux_err_jy: ArrayLike,
    *,
    bin_days: float = 1.0,
) -> BinnedLightcurves:
    """Average measurements of each source in bins of common width.

    Parameters
    ----------
    source_name : array_like of str, shape (n,)
        Source of each measurement.
    mjd : array_like, shape (n,)
        Times, MJD.
    flux_jy, flux_err_jy : array_like, shape (n,)
        Usable flux densities and positive errors, Jy.
    bin_days : float
        Bin width, days; bins start at the earliest time.

    Returns
    -------
    BinnedLightcurves
        Inverse-variance weighted means per source and bin.
    """
    names = np.asarray(source_name, dtype=str)
    t = np.asarray(mjd, dtype=np.float64)
    f = np.asarray(flux_jy, dtype=np.float64)
    w = 1.0 / np.square(np.asarray(flux_err_jy, dtype=np.float64))
    unique, src = np.unique(names, return_inverse=True)
    if t.size == 0:
        empty = np.zeros((unique.size, 0))
        return BinnedLightcurves(unique, np.zeros(0), empty, empty.copy())
    start = float(t.min())
    index = np.floor((t - start) / bin_days).astype(np.int64)
    n_bin = int(index.max()) + 1
    flat = src * n_bin + index
    size = unique.size * n_bin
    sum_w = np.bincount(flat, weights=w, minlength=size).reshape(unique.size, n_bin)
    sum_wf = np.bincount(flat, weights=w * f, minlength=size).reshape(sum_w.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = np.where(sum_w > 0, sum_wf / sum_w, np.nan)
        err = np.where(sum_w > 0, 1.0 / np.sqrt(sum_w), np.nan)
    time = start + (np.arange(n_bin) + 0.5) * bin_days
    return BinnedLightcurves(unique, time, flux, err)
