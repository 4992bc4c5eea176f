r"""Variability metrics of light curves: eta, V and the two-epoch Vs and m.

eta and V follow from six running sums per source (see
:class:`~dsa110_contimg.lightcurves.RunningSums`), so they are updated epoch
by epoch without re-reading any light curve; :func:`variability_metrics`
computes them directly from the measurements (two-pass), for checking.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from astropy.table import Table
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from dsa110_contimg.lightcurves._summary import RunningSums

__all__ = [
    "variability_metrics",
    "metrics_from_sums",
    "lightcurve_metrics",
    "two_epoch_metrics",
    "max_two_epoch_metrics",
]


def variability_metrics(
    flux_jy: ArrayLike, flux_err_jy: ArrayLike
) -> tuple[float, float]:
    r"""Return eta and V of one light curve, computed directly.

    Parameters
    ----------
    flux_jy, flux_err_jy : array_like, shape (n,)
        Flux densities and their one-sigma errors, Jy.

    Returns
    -------
    eta : float
        Weighted reduced chi-square about the weighted mean; NaN for n < 2.
    v : float
        Modulation index (sample standard deviation over mean); NaN for n < 2.

    Notes
    -----
    With weights :math:`w_i = 1/\sigma_i^2` (Mooley et al. 2016, eqs. 1-2)

    .. math::
        \eta = \frac{N}{N-1}\left(\overline{w f^2}
               - \frac{\overline{w f}^{\,2}}{\overline{w}}\right)
             = \frac{1}{N-1}\sum_i w_i (f_i - \bar f_w)^2,
        \qquad
        V = \frac{1}{\bar f}\sqrt{\frac{N}{N-1}
               \left(\overline{f^2} - \bar f^2\right)},

    where :math:`\bar f_w = \sum w_i f_i / \sum w_i` and overlines are
    unweighted means. This function uses the second (two-pass) form of eta.

    References
    ----------
    .. [1] Mooley, K. P., Hallinan, G., Bourke, S., et al. 2016, "The
       Caltech-NRAO Stripe 82 Survey (CNSS). I. The Pilot Radio Transient
       Survey in 50 deg^2", ApJ 818, 105.
       https://doi.org/10.3847/0004-637X/818/2/105

    Examples
    --------
    >>> eta, v = variability_metrics([1.0, 1.2, 0.8], [0.1, 0.1, 0.1])
    >>> round(eta, 6), round(v, 6)
    (4.0, 0.2)
    """
    f = np.asarray(flux_jy, dtype=np.float64)
    w = 1.0 / np.square(np.asarray(flux_err_jy, dtype=np.float64))
    n = f.size
    if n < 2:
        return float("nan"), float("nan")
    mean_w = np.sum(w * f) / np.sum(w)
    eta = float(np.sum(w * (f - mean_w) ** 2) / (n - 1))
    v = float(np.std(f, ddof=1) / np.mean(f))
    return eta, v


def metrics_from_sums(sums: RunningSums, *, min_epochs: int = 3) -> Table:
    r"""Return eta, V and mean fluxes of every source from its running sums.

    Parameters
    ----------
    sums : RunningSums
        Per-source moments about ``shift_jy`` (see Notes).
    min_epochs : int
        Sources with fewer measurements get NaN eta and V.

    Returns
    -------
    astropy.table.Table
        Columns ``source_name, n_epochs, mean_flux_jy`` (unweighted),
        ``weighted_mean_flux_jy, eta, v`` in the order of ``sums``.

    Notes
    -----
    With :math:`d_i = f_i - K` (``K = shift_jy``), :math:`S_w = \sum w_i`,
    :math:`S_{wd} = \sum w_i d_i`, :math:`S_{wd^2} = \sum w_i d_i^2`,
    :math:`S_d = \sum d_i` and :math:`S_{d^2} = \sum d_i^2`:

    .. math::
        \eta = \frac{S_{wd^2} - S_{wd}^2/S_w}{N-1},\qquad
        V = \frac{\sqrt{(S_{d^2} - S_d^2/N)/(N-1)}}{K + S_d/N},

    which equal the definitions of :func:`variability_metrics` (both are
    invariant to the shift, which only keeps the subtraction well conditioned).
    """
    return _metrics_table(
        np.asarray(sums.source_name, dtype=str),
        sums.shift_jy,
        sums.n,
        sums.sum_w,
        sums.sum_wf,
        sums.sum_wf2,
        sums.sum_f,
        sums.sum_f2,
        min_epochs=min_epochs,
    )


def _metrics_table(
    names: NDArray[np.str_],
    shift: NDArray[np.float64],
    n: NDArray[np.float64],
    sum_w: NDArray[np.float64],
    sum_wf: NDArray[np.float64],
    sum_wf2: NDArray[np.float64],
    sum_f: NDArray[np.float64],
    sum_f2: NDArray[np.float64],
    *,
    min_epochs: int,
) -> Table:
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        eta = (sum_wf2 - sum_wf**2 / sum_w) / (n - 1.0)
        var = (sum_f2 - sum_f**2 / n) / (n - 1.0)
        mean = shift + sum_f / n
        v = np.sqrt(np.maximum(var, 0.0)) / mean
        weighted = shift + sum_wf / sum_w
    few = n < max(2, min_epochs)
    return Table(
        {
            "source_name": names,
            "n_epochs": np.rint(n).astype(np.int64),
            "mean_flux_jy": np.where(n > 0, mean, np.nan),
            "weighted_mean_flux_jy": np.where(n > 0, weighted, np.nan),
            "eta": np.where(few, np.nan, np.maximum(eta, 0.0)),
            "v": np.where(few, np.nan, v),
        }
    )


def lightcurve_metrics(
    source_name: ArrayLike,
    flux_jy: ArrayLike,
    flux_err_jy: ArrayLike,
    *,
    min_epochs: int = 3,
) -> Table:
    """Return eta, V and mean fluxes per source from a table of measurements.

    Parameters
    ----------
    source_name : array_like of str, shape (n,)
        Source of each measurement.
    flux_jy, flux_err_jy : array_like, shape (n,)
        Usable flux densities and errors, Jy (filter them first).
    min_epochs : int
        Sources with fewer measurements get NaN eta and V.

    Returns
    -------
    astropy.table.Table
        As :func:`metrics_from_sums`, sorted by source name.
    """
    names = np.asarray(source_name, dtype=str)
    f = np.asarray(flux_jy, dtype=np.float64)
    w = 1.0 / np.square(np.asarray(flux_err_jy, dtype=np.float64))
    unique, first, inv = np.unique(names, return_index=True, return_inverse=True)
    shift = f[first] if f.size else np.zeros(0)
    d = f - shift[inv]

    def total(values: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.bincount(inv, weights=values, minlength=unique.size)

    return _metrics_table(
        unique,
        shift,
        total(np.ones_like(d)),
        total(w),
        total(w * d),
        total(w * d * d),
        total(d),
        total(d * d),
        min_epochs=min_epochs,
    )


def two_epoch_metrics(
    flux_a_jy: ArrayLike,
    flux_err_a_jy: ArrayLike,
    flux_b_jy: ArrayLike,
    flux_err_b_jy: ArrayLike,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r"""Return the two-epoch variability statistic Vs and modulation index m.

    Parameters
    ----------
    flux_a_jy, flux_err_a_jy, flux_b_jy, flux_err_b_jy : array_like
        Flux densities and errors at epochs a and b, Jy (broadcastable).

    Returns
    -------
    vs : ndarray
        :math:`V_s = (S_a - S_b)/\sqrt{\sigma_a^2 + \sigma_b^2}`.
    m : ndarray
        :math:`m = 2 (S_a - S_b) / (S_a + S_b)`.

    Notes
    -----
    Mooley et al. (2016, eqs. 3-4). A source is variable between two epochs
    when :math:`|V_s| \ge 4.3` and :math:`|m| > 0.26` (their thresholds).

    References
    ----------
    .. [1] Mooley, K. P., et al. 2016, ApJ 818, 105.
       https://doi.org/10.3847/0004-637X/818/2/105

    Examples
    --------
    >>> vs, m = two_epoch_metrics(1.2, 0.1, 0.8, 0.1)
    >>> round(float(vs), 4), round(float(m), 4)
    (2.8284, 0.4)
    """
    fa, ea = np.asarray(flux_a_jy, float), np.asarray(flux_err_a_jy, float)
    fb, eb = np.asarray(flux_b_jy, float), np.asarray(flux_err_b_jy, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        vs = (fa - fb) / np.sqrt(ea * ea + eb * eb)
        m = 2.0 * (fa - fb) / (fa + fb)
    return vs, m


def max_two_epoch_metrics(
    flux_jy: ArrayLike, flux_err_jy: ArrayLike
) -> tuple[float, float]:
    """Return the pair of epochs of one light curve with the largest ``|Vs|``.

    Parameters
    ----------
    flux_jy, flux_err_jy : array_like, shape (n,)
        Flux densities and errors, Jy.

    Returns
    -------
    vs : float
        Vs of the pair with the largest ``|Vs|`` (NaN for n < 2).
    m : float
        m of that pair.
    """
    f = np.asarray(flux_jy, dtype=np.float64)
    e = np.asarray(flux_err_jy, dtype=np.float64)
    if f.size < 2:
        return float("nan"), float("nan")
    a, b = np.triu_indices(f.size, k=1)
    vs, m = two_epoch_metrics(f[a], e[a], f[b], e[b])
    best = int(np.nanargmax(np.abs(vs)))
    return float(vs[best]), float(m[best])
