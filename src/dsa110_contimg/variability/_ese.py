r"""Search light curves for extreme scattering events (ESEs).

An ESE is a symmetric dip of 20-60 % lasting weeks to months, often flanked
by brief brightenings. Each light curve (binned in time) is fitted, by
weighted least squares, with the model

.. math:: m(t) = a\,[1 - d\,(p(t) - r f(t))]

over a grid of dip durations :math:`D` (full width at half depth), centres
:math:`t_0` and flank ratios :math:`r`, with the depth :math:`d` fitted
exactly within its allowed range. The dip is
:math:`p = \exp(-\ln 2\,|2(t-t_0)/D|^{3})` and the flanks are Gaussians at
:math:`t_0 \pm 1.3 D`, the shape of a Gaussian plasma lens seen through a
finite source (Clegg, Fey & Lazio 1998).

Most variable radio sources are AGN with red-noise variability, whose light
curves contain dips too. A candidate must therefore (1) improve on a constant
by ``min_significance`` sigma; (2) still need the dip when red noise is
allowed: red noise about the ESE-shaped mean must beat red noise about a
constant mean by the Bayesian information criterion, the red noise being the
better of a damped random walk (Ornstein-Uhlenbeck process, power spectrum
falling as f^-2; Kelly, Bechtold & Siemiginowska 2009) and a critically
damped second-order process (CAR(2), f^-4: smooth excursions); and (3)
explain most of the light curve's excess variance with the dip alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from numpy.typing import ArrayLike, NDArray

from dsa110_contimg.variability._red_noise import red_noise_m2ll

__all__ = [
    "EseGrid",
    "BinnedLightcurves",
    "bin_lightcurves",
    "ese_model",
    "search_ese",
]

_DIP_ORDER = 3.0  # between a Gaussian (lens-like) and a flat-bottomed dip
_FLANK_OFFSET = 1.3
_FLANK_SIGMA = 0.45
_N_REFINE = 7  # steps of centre and duration tried around the grid optimum
_MIN_POINTS_OUTSIDE = 3  # on each side: a dip must be seen to end
_K_ESE_EXTRA = 4  # depth, duration, centre, flank ratio on top of the red noise


@dataclass(frozen=True, slots=True)
class EseGrid:
    """The model grid searched for ESEs.

    Parameters
    ----------
    durations_days : tuple of float
        Dip durations (full width at half depth), days.
    min_depth, max_depth : float
        Range of fitted fractional depths.
    center_step_frac : float
        Step of the centre grid as a fraction of the duration.
    flank_ratios : tuple of float
        Heights of the flanking brightenings as fractions of the depth.
    min_points_in_dip : int
        Fewest binned points within half a duration of the centre.
    """

    durations_days: tuple[float, ...] = (7, 10, 14, 21, 30, 45, 60, 90, 120, 180)
    min_depth: float = 0.2
    max_depth: float = 0.6
    center_step_frac: float = 0.2
    flank_ratios: tuple[float, ...] = (0.0, 0.5)
    min_points_in_dip: int = 3

    def __post_init__(self) -> None:
        """Check the grid."""
        if not 0 < self.min_depth < self.max_depth < 1:
            msg = (
                "need 0 < min_depth < max_depth < 1, got "
                f"{self.min_depth}, {self.max_depth}"
            )
            raise ValueError(msg)
        if not self.durations_days or min(self.durations_days) <= 0:
            msg = f"durations_days must be positive, got {self.durations_days}"
            raise ValueError(msg)
        if not 0 < self.center_step_frac <= 1:
            msg = f"center_step_frac must be in (0, 1], got {self.center_step_frac}"
            raise ValueError(msg)


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


def _template(
    time_mjd: NDArray, center_mjd: NDArray, duration_days: NDArray, flank_ratio: NDArray
) -> NDArray[np.float64]:
    """Return dip-minus-flank shapes, broadcasting the template parameters."""
    u = np.abs(time_mjd - center_mjd) / duration_days
    dip = np.exp(-math.log(2.0) * np.power(2.0 * u, _DIP_ORDER))
    flank = np.exp(-0.5 * ((u - _FLANK_OFFSET) / _FLANK_SIGMA) ** 2)
    return dip - flank_ratio * flank


def ese_model(
    time_mjd: ArrayLike,
    *,
    mean_flux_jy: float,
    depth: float,
    duration_days: float,
    center_mjd: float,
    flank_ratio: float = 0.0,
) -> NDArray[np.float64]:
    """Return the fitted ESE light curve ``a [1 - d (p - r f)]`` at given times.

    Parameters
    ----------
    time_mjd : array_like, shape (n,)
        Times, MJD.
    mean_flux_jy : float
        Flux outside the event, Jy.
    depth : float
        Fractional depth of the dip.
    duration_days : float
        Full width of the dip at half depth, days.
    center_mjd : float
        Centre of the dip, MJD.
    flank_ratio : float
        Height of the flanking brightenings as a fraction of the depth.

    Returns
    -------
    ndarray, shape (n,)
        Model flux density, Jy.

    Examples
    --------
    >>> flux = ese_model([100.0], mean_flux_jy=2.0, depth=0.3,
    ...                  duration_days=30.0, center_mjd=100.0)
    >>> round(float(flux[0]), 6)
    1.4
    """
    t = np.asarray(time_mjd, dtype=np.float64)
    shape = _template(t, center_mjd, duration_days, flank_ratio)
    return mean_flux_jy * (1.0 - depth * shape)


def _grid_templates(
    time_mjd: NDArray, grid: EseGrid
) -> tuple[NDArray, NDArray, NDArray]:
    """Return template parameters (k, 3), shapes (n_bin, k) and masks (3, n_bin, k).

    The masks mark bins before, inside and after the dip (``|t - t0| <= D/2``).
    """
    params = []
    t_lo, t_hi = float(time_mjd.min()), float(time_mjd.max())
    for duration in grid.durations_days:
        step = grid.center_step_frac * duration
        centres = np.arange(t_lo, t_hi + 0.5 * step, step)
        for ratio in grid.flank_ratios:
            params += [(c, duration, ratio) for c in centres]
    p = np.array(params, dtype=np.float64).reshape(-1, 3)
    shapes = _template(time_mjd[:, None], p[:, 0], p[:, 1], p[:, 2])
    offset = time_mjd[:, None] - p[:, 0]
    half = 0.5 * p[:, 1]
    regions = np.stack([offset < -half, np.abs(offset) <= half, offset > half])
    return p, shapes, regions.astype(np.float64)


def _best_fits(
    y: NDArray, w: NDArray, shapes: NDArray, regions: NDArray, grid: EseGrid
) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray]:
    """Return best improvement, template index, depth, mean and chi2_const per row."""
    observed = (w > 0).astype(np.float64)
    sw, sy = w.sum(1), (w * y).sum(1)
    chi2_0 = (w * y * y).sum(1) - sy * sy / sw
    a_g, b_gg, c_yg = w @ shapes, w @ (shapes * shapes), (w * y) @ shapes
    n_before, n_in, n_after = (observed @ region for region in regions)
    sw_, sy_ = sw[:, None], sy[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        det = sw_ * b_gg - a_g * a_g
        mean = (sy_ * b_gg - a_g * c_yg) / det
        slope = (sw_ * c_yg - a_g * sy_) / det
        gain = mean * sy_ + slope * c_yg - sy_ * sy_ / sw_
        depth = -slope / mean
        inside = (mean > 0) & (depth >= grid.min_depth) & (depth <= grid.max_depth)
        best_gain = np.where(inside & (det > 0), gain, -np.inf)
        best_depth = np.where(inside, depth, np.nan)
        for d in (grid.min_depth, grid.max_depth):
            s_hh = sw_ - 2.0 * d * a_g + d * d * b_gg
            s_yh = sy_ - d * c_yg
            gain_d = np.where((s_yh > 0) & (s_hh > 0), s_yh * s_yh / s_hh, -np.inf)
            gain_d = gain_d - sy_ * sy_ / sw_
            better = gain_d > best_gain
            best_gain = np.where(better, gain_d, best_gain)
            best_depth = np.where(better, d, best_depth)
    covered = (
        (n_in >= grid.min_points_in_dip)
        & (n_before >= _MIN_POINTS_OUTSIDE)
        & (n_after >= _MIN_POINTS_OUTSIDE)
    )
    best_gain = np.where(covered, best_gain, -np.inf)
    k = np.argmax(best_gain, axis=1)
    rows = np.arange(y.shape[0])
    gain_k, depth_k = best_gain[rows, k], best_depth[rows, k]
    shape_k = shapes[:, k].T
    h = 1.0 - depth_k[:, None] * shape_k
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_k = (w * y * h).sum(1) / (w * h * h).sum(1)
    return gain_k, k, depth_k, mean_k, chi2_0


def search_ese(
    binned: BinnedLightcurves,
    *,
    grid: EseGrid | None = None,
    min_significance: float = 7.0,
    min_delta_bic: float = 6.0,
    min_variance_explained: float = 0.7,
    min_points: int = 20,
    chunk_size: int = 512,
) -> Table:
    r"""Fit an ESE dip to every light curve and decide which are candidates.

    Parameters
    ----------
    binned : BinnedLightcurves
        Light curves on a common time grid (see :func:`bin_lightcurves`).
    grid : EseGrid, optional
        Durations, depths, centres and flank ratios searched.
    min_significance : float
        Smallest :math:`\sqrt{\Delta\chi^2}` of the dip over a constant, sigma.
    min_delta_bic : float
        Smallest BIC(red noise) - BIC(ESE + red noise) (see Notes).
    min_variance_explained : float
        Smallest fraction of the excess variance explained by the dip.
    min_points : int
        Sources with fewer binned points are not searched.
    chunk_size : int
        Sources fitted together (memory ~ chunk_size x templates x 40 bytes).

    Returns
    -------
    astropy.table.Table
        One row per source: ``source_name, n_points, chi2_const,
        ese_significance, ese_depth, ese_duration_days, ese_center_mjd,
        ese_flank_ratio, ese_mean_flux_jy, ese_variance_explained,
        ese_delta_bic, red_noise_tau_days, red_noise_sigma_jy,
        red_noise_model, ese_candidate``. Unsearched sources have NaN values
        and ``ese_candidate`` False; ``ese_delta_bic`` and the red-noise
        columns (the better alternative, ``"drw"`` or ``"car2"``) are computed
        only for sources reaching ``min_significance``.

    Notes
    -----
    For each template :math:`g_k = p_k - r_k f_k` the weighted least-squares
    fit of :math:`y = a - a d\, g_k` (with :math:`w = 1/\sigma^2`) is closed
    form; when the fitted depth falls outside [min_depth, max_depth] the fit
    with the depth at the nearer bound is used (the constrained optimum of a
    convex quadratic). The significance is
    :math:`\sqrt{\chi^2_{\rm const} - \chi^2_{\rm ESE}}` for the best template
    (local, without a trials factor: the threshold is set from simulations).
    For sources reaching ``min_significance`` the centre and duration are
    then refined on a finer local grid (one centre step and +-10 % in
    duration). A template counts only where the light curve has ``min_points_in_dip``
    binned points within half a duration of the centre and at least three on
    each side, so a dip must be seen to start and to end.

    The red-noise alternative is a damped random walk (DRW)
    :math:`dz = -z\,dt/\tau + \sigma\sqrt{2/\tau}\,dW`, or a critically
    damped CAR(2) process :math:`\ddot z + 2\dot z/\tau + z/\tau^2 =`
    white noise with stationary rms :math:`\sigma`, whichever fits better,
    added to a mean :math:`\mu\,x(t)`. Its exact likelihood with the
    measurement errors comes from a Kalman filter, with :math:`\mu` profiled
    out by generalized least squares and :math:`(\tau, \sigma)` maximized on
    a grid (Kelly et al. 2009, https://doi.org/10.1088/0004-637X/698/1/895;
    Kelly et al. 2014, https://doi.org/10.1088/0004-637X/788/1/33). With
    :math:`x = 1` it is red noise alone (3 parameters); with
    :math:`x = 1 - d\,g_k` for the best template it is ESE plus red noise
    (7 parameters). The reported

    .. math:: \Delta{\rm BIC} = {\rm BIC}_{\rm DRW} - {\rm BIC}_{\rm ESE+DRW}
              = -2\ln\frac{L_{\rm DRW}}{L_{\rm ESE+DRW}} - 4 \ln n

    (Schwarz 1978, https://doi.org/10.1214/aos/1176344136) is large only when
    red noise cannot make the dip itself: AGN-like variables, whose dips red
    noise explains, score low. The variance explained is
    :math:`(\chi^2_{\rm const} - \chi^2_{\rm ESE}) / \max(\chi^2_{\rm const}
    - (n-1), \chi^2_{\rm const} - \chi^2_{\rm ESE})` under white noise.
    """
    grid = grid or EseGrid()
    n_src = binned.source_name.size
    out = _empty_result(binned.source_name)
    if n_src == 0 or binned.time_mjd.size == 0:
        return out
    params, shapes, regions = _grid_templates(binned.time_mjd, grid)
    observed = np.isfinite(binned.flux_jy) & np.isfinite(binned.flux_err_jy)
    n_points = observed.sum(1)
    out["n_points"] = n_points
    for start in range(0, n_src, chunk_size):
        rows = np.arange(start, min(start + chunk_size, n_src))
        rows = rows[n_points[rows] >= min_points]
        if not rows.size:
            continue
        y = np.where(observed[rows], binned.flux_jy[rows], 0.0)
        w = np.where(observed[rows], 1.0 / binned.flux_err_jy[rows] ** 2, 0.0)
        gain, k, depth, mean, chi2_0 = _best_fits(y, w, shapes, regions, grid)
        found = np.isfinite(gain) & (gain > 0)
        out["chi2_const"][rows] = chi2_0
        out["ese_significance"][rows] = np.sqrt(
            np.clip(np.where(found, gain, 0), 0, None)
        )
        out["ese_depth"][rows] = np.where(found, depth, np.nan)
        out["ese_center_mjd"][rows] = np.where(found, params[k, 0], np.nan)
        out["ese_duration_days"][rows] = np.where(found, params[k, 1], np.nan)
        out["ese_flank_ratio"][rows] = np.where(found, params[k, 2], np.nan)
        out["ese_mean_flux_jy"][rows] = np.where(found, mean, np.nan)
        excess = np.maximum(chi2_0 - (n_points[rows] - 1), gain)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["ese_variance_explained"][rows] = np.where(
                found, np.clip(gain / excess, 0.0, 1.0), np.nan
            )
    significant = np.flatnonzero(out["ese_significance"] >= min_significance)
    if significant.size:
        _refine(binned, observed, significant, out, grid)
        _compare_models(binned, observed, significant, out)
    out["ese_candidate"] = (
        (out["ese_significance"] >= min_significance)
        & (out["ese_delta_bic"] >= min_delta_bic)
        & (out["ese_variance_explained"] >= min_variance_explained)
    )
    return out


def _empty_result(names: NDArray[np.str_]) -> Table:
    n = names.size
    table = Table({"source_name": names, "n_points": np.zeros(n, dtype=np.int64)})
    for column in (
        "chi2_const",
        "ese_significance",
        "ese_depth",
        "ese_duration_days",
        "ese_center_mjd",
        "ese_flank_ratio",
        "ese_mean_flux_jy",
        "ese_variance_explained",
        "ese_delta_bic",
        "red_noise_tau_days",
        "red_noise_sigma_jy",
    ):
        table[column] = np.full(n, np.nan)
    table["red_noise_model"] = np.full(n, "", dtype="<U4")
    table["ese_candidate"] = np.zeros(n, dtype=bool)
    return table


def _refine(
    binned: BinnedLightcurves,
    observed: NDArray,
    rows: NDArray,
    out: Table,
    grid: EseGrid,
) -> None:
    """Refine centre and duration of the best template around the grid optimum."""
    t = binned.time_mjd
    steps = np.linspace(-0.5, 0.5, _N_REFINE)
    for row in rows:
        center = float(out["ese_center_mjd"][row])
        duration = float(out["ese_duration_days"][row])
        durations = duration * (1.0 + 0.2 * steps)
        p = np.array(
            [
                (center + grid.center_step_frac * d * c, d, r)
                for d in durations
                for c in steps
                for r in grid.flank_ratios
            ]
        )
        shapes = _template(t[:, None], p[:, 0], p[:, 1], p[:, 2])
        offset = t[:, None] - p[:, 0]
        half = 0.5 * p[:, 1]
        regions = np.stack([offset < -half, np.abs(offset) <= half, offset > half])
        ok = observed[row][None, :]
        y = np.where(ok, binned.flux_jy[row], 0.0)
        w = np.where(ok, 1.0 / binned.flux_err_jy[row] ** 2, 0.0)
        gain, k, depth, mean, chi2_0 = _best_fits(
            y, w, shapes, regions.astype(np.float64), grid
        )
        if not gain[0] > out["ese_significance"][row] ** 2:
            continue
        out["ese_significance"][row] = np.sqrt(gain[0])
        out["ese_depth"][row] = depth[0]
        out["ese_center_mjd"][row] = p[k[0], 0]
        out["ese_duration_days"][row] = p[k[0], 1]
        out["ese_flank_ratio"][row] = p[k[0], 2]
        out["ese_mean_flux_jy"][row] = mean[0]
        excess = max(chi2_0[0] - (observed[row].sum() - 1), gain[0])
        out["ese_variance_explained"][row] = min(1.0, gain[0] / excess)


def _compare_models(
    binned: BinnedLightcurves, observed: NDArray, rows: NDArray, out: Table
) -> None:
    """Fill ese_delta_bic and the DRW columns for the given rows."""
    t = binned.time_mjd
    y = np.where(observed[rows], binned.flux_jy[rows], np.nan)
    e2 = np.where(observed[rows], binned.flux_err_jy[rows] ** 2, np.nan)
    shape = _template(
        t[None, :],
        np.asarray(out["ese_center_mjd"][rows])[:, None],
        np.asarray(out["ese_duration_days"][rows])[:, None],
        np.asarray(out["ese_flank_ratio"][rows])[:, None],
    )
    h = 1.0 - np.asarray(out["ese_depth"][rows])[:, None] * shape
    m2ll_red, tau, sigma, model = red_noise_m2ll(t, y, e2)
    m2ll_both, _, _, _ = red_noise_m2ll(t, y, e2, h)
    n = observed[rows].sum(1)
    out["ese_delta_bic"][rows] = m2ll_red - m2ll_both - _K_ESE_EXTRA * np.log(n)
    out["red_noise_tau_days"][rows] = tau
    out["red_noise_sigma_jy"][rows] = sigma
    out["red_noise_model"][rows] = model
