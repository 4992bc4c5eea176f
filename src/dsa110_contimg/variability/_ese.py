r"""Search light curves for extreme scattering events (ESEs).

An ESE is a dip of 20-90 % lasting weeks to more than a year, symmetric or
not, Gaussian or flat-bottomed, often flanked by brief brightenings (Fiedler
et al. 1987, 1994; Lazio et al. 2001; Bannister et al. 2016). Each light
curve (binned in time) is fitted, by weighted least squares, with the model

.. math:: m(t) = a\,[1 - d\,(p(t) - r f(t))]

over a grid of dip durations :math:`D` (full width at half depth), centres
:math:`t_0`, flank ratios :math:`r` and shapes, with the depth :math:`d`
fitted exactly within its allowed range. The dip is
:math:`p = \exp(-\ln 2\,|2(t-t_0)/W_\pm|^{q})` with order :math:`q` (2:
Gaussian; 4: flatter) and half-widths :math:`W_\mp/2 = D(1 \mp a)/2`
before and after the centre (asymmetry :math:`a`); the flanks are Gaussians
at :math:`t_0 \pm o W_\pm` of sigma :math:`0.3\,o W_\pm` (offset :math:`o`
0.8: caustics at the dip's edges; 1.3: the broad flanks of a Gaussian plasma
lens seen through a finite source, Clegg, Fey & Lazio 1998).

Most variable radio sources are AGN with red-noise variability, whose light
curves contain dips too. A candidate must therefore (1) improve on a constant
by ``min_significance`` sigma; (2) still need the dip when red noise is
allowed: the ESE model must beat red noise about a constant mean by the
Bayesian information criterion, the red noise being the better of a damped
random walk (Ornstein-Uhlenbeck process, power spectrum falling as f^-2;
Kelly, Bechtold & Siemiginowska 2009) and a critically damped second-order
process (CAR(2), f^-4: smooth excursions); (3) explain most of the light
curve's excess variance with the dip alone; and (4) be seen whole, with the
steady flux around it.

The ESE model is the dip template plus red noise confined to the event
window (the dip and its flanks, widened over adjacent residual structure),
with measurement noise alone outside it. The windowed red noise absorbs
whatever the template gets wrong about the dip's shape, so the comparison
does not depend on how well one template matches a deep, long, high-SNR dip:
with stationary red noise in the ESE model (the earlier design), any shape
mismatch needed red noise everywhere and long or deep dips lost to red noise
alone. Red noise alone must both make the dip and stay flat elsewhere, which
an AGN light curve does not do. A significant dip that runs off an edge of
the light curve (or into a gap), or whose window leaves too little of the
light curve outside it to show the steady flux, is reported as incomplete
(``ese_incomplete``) rather than called or silently dropped.

The dip template is in ``_ese_model`` (:func:`ese_model`), the binning onto a
common time grid in ``_binning`` (:func:`bin_lightcurves`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray

from dsa110_contimg.variability._binning import BinnedLightcurves
from dsa110_contimg.variability._ese_model import (
    _event_window,
    _half_widths,
    _template,
)
from dsa110_contimg.variability._red_noise import (
    red_noise_m2ll,
    windowed_red_noise_m2ll,
)

__all__ = ["EseGrid", "search_ese"]

_N_REFINE = 7  # steps of centre and duration tried around the grid optimum
_MIN_POINTS_OUTSIDE = 3  # on each side: a dip must be seen to end
_MIN_BASELINE_POINTS = 15  # outside the event window, for the red-noise test
_MIN_BASELINE_FRAC = 0.1
_EXTEND_SIGMA = 3.0
_CUT_FRAC = 0.05  # of the complete dip's chi-square gain
_EXTEND_MAX = 0.5  # durations
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
    dip_orders : tuple of float
        Exponents q of the dip profile ``exp(-ln2 |2u|^q)``: 2 is a Gaussian,
        larger values are flatter-bottomed.
    asymmetries : tuple of float
        Asymmetries a in (-1, 1): the half-widths at half depth before and
        after the centre are ``D (1 - a) / 2`` and ``D (1 + a) / 2``.
    flank_offsets : tuple of float
        Distances of the flanking brightenings from the centre, in durations
        (their Gaussian sigma is 0.3 times the offset).
    """

    durations_days: tuple[float, ...] = (7, 10, 14, 21, 30, 45, 60, 90, 120, 180)
    min_depth: float = 0.2
    max_depth: float = 0.9
    center_step_frac: float = 0.2
    flank_ratios: tuple[float, ...] = (0.0, 0.5)
    min_points_in_dip: int = 3
    dip_orders: tuple[float, ...] = (2.0, 4.0)
    asymmetries: tuple[float, ...] = (-0.4, 0.0, 0.4)
    flank_offsets: tuple[float, ...] = (0.8, 1.3)

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
        if not self.dip_orders or min(self.dip_orders) <= 0:
            msg = f"dip_orders must be positive, got {self.dip_orders}"
            raise ValueError(msg)
        if not self.asymmetries or max(abs(a) for a in self.asymmetries) >= 1:
            msg = f"asymmetries must lie in (-1, 1), got {self.asymmetries}"
            raise ValueError(msg)


def _shapes_and_regions(time_mjd: NDArray, p: NDArray) -> tuple[NDArray, NDArray]:
    """Return shapes (n_bin, k) and masks (3, n_bin, k) of templates p (k, 6).

    The masks mark bins before, inside and after the dip (within the
    half-widths at half depth of the centre).
    """
    shapes = _template(time_mjd[:, None], *(p[:, j] for j in range(p.shape[1])))
    offset = time_mjd[:, None] - p[:, 0]
    before, after = _half_widths(p[:, 1], p[:, 4])
    regions = np.stack(
        [offset < -before, (offset >= -before) & (offset <= after), offset > after]
    )
    return shapes, regions.astype(np.float64)


def _shapes(
    grid: EseGrid, *, coarse: bool = False
) -> list[tuple[float, float, float, float]]:
    """Return (flank ratio, order, asymmetry, flank offset) of each shape.

    The coarse search, which only has to find the event, uses the most
    symmetric asymmetry; the refinement tries them all.
    """
    flanked = [(r, o) for r in grid.flank_ratios if r > 0 for o in grid.flank_offsets]
    plain = [(0.0, grid.flank_offsets[0])] if 0.0 in grid.flank_ratios else []
    asyms = grid.asymmetries
    if coarse:
        asyms = (min(asyms, key=abs),)
    return [
        (r, q, a, o) for r, o in plain + flanked for q in grid.dip_orders for a in asyms
    ]


def _grid_templates(
    time_mjd: NDArray, grid: EseGrid
) -> tuple[NDArray, NDArray, NDArray]:
    """Return template parameters (k, 6), shapes (n_bin, k) and masks (3, n_bin, k).

    The parameters are centre, duration, flank ratio, dip order, asymmetry
    and flank offset.
    """
    params = []
    t_lo, t_hi = float(time_mjd.min()), float(time_mjd.max())
    for duration in grid.durations_days:
        step = grid.center_step_frac * duration
        centres = np.arange(t_lo, t_hi + 0.5 * step, step)
        for shape in _shapes(grid, coarse=True):
            params += [(c, duration, *shape) for c in centres]
    p = np.array(params, dtype=np.float64).reshape(-1, 6)
    shapes, regions = _shapes_and_regions(time_mjd, p)
    return p, shapes, regions


def _best_fits(
    y: NDArray, w: NDArray, shapes: NDArray, regions: NDArray, grid: EseGrid
) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray, NDArray]:
    """Return best improvement, template index, depth, mean and chi2_const per row.

    The last value is the best improvement over all templates, including
    those whose dip is not seen to start and end (cut by an edge or a gap).
    """
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
    gain_any = np.max(best_gain, axis=1)
    best_gain = np.where(covered, best_gain, -np.inf)
    k = np.argmax(best_gain, axis=1)
    rows = np.arange(y.shape[0])
    gain_k, depth_k = best_gain[rows, k], best_depth[rows, k]
    shape_k = shapes[:, k].T
    h = 1.0 - depth_k[:, None] * shape_k
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_k = (w * y * h).sum(1) / (w * h * h).sum(1)
    return gain_k, k, depth_k, mean_k, chi2_0, gain_any


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
        Durations, depths, centres, flank ratios and shapes searched.
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
        ese_significance, ese_depth, ese_center_mjd, ese_duration_days,
        ese_flank_ratio, ese_dip_order, ese_asymmetry, ese_flank_offset,
        ese_mean_flux_jy, ese_variance_explained, ese_delta_bic,
        red_noise_tau_days, red_noise_sigma_jy, red_noise_model,
        ese_candidate, ese_incomplete``. Unsearched sources have NaN values
        and ``ese_candidate`` False; ``ese_delta_bic`` and the red-noise
        columns (the better alternative, ``"drw"`` or ``"car2"``) are computed
        only for sources reaching ``min_significance``. ``ese_incomplete``
        marks a significant dip that is not a candidate because the light
        curve does not show it whole (see Notes).

    Notes
    -----
    For each template :math:`g_k = p_k - r_k f_k` the weighted least-squares
    fit of :math:`y = a - a d\, g_k` (with :math:`w = 1/\sigma^2`) is closed
    form; when the fitted depth falls outside [min_depth, max_depth] the fit
    with the depth at the nearer bound is used (the constrained optimum of a
    convex quadratic). The significance is
    :math:`\sqrt{\chi^2_{\rm const} - \chi^2_{\rm ESE}}` for the best template
    (local, without a trials factor: the threshold is set from simulations).
    The coarse grid uses symmetric shapes; for sources reaching
    ``min_significance`` the centre and duration are refined on a finer
    local grid (one centre step and +-10 % in duration), then every shape
    (asymmetries included) is tried within a quarter duration of that. A
    template counts only where the light curve has ``min_points_in_dip``
    binned points between the half-depth points and at least three on each
    side, so a dip must be seen to start and to end. When a template that
    fails this (a dip cut by an edge or a gap) improves the fit by more than
    both ``min_significance**2`` and 5 % of the best complete dip's gain, and
    explains ``min_variance_explained`` of the excess variance, the source
    is incomplete, not a candidate.

    The red-noise alternative is a damped random walk (DRW)
    :math:`dz = -z\,dt/\tau + \sigma\sqrt{2/\tau}\,dW`, or a critically
    damped CAR(2) process :math:`\ddot z + 2\dot z/\tau + z/\tau^2 =`
    white noise with stationary rms :math:`\sigma`, whichever fits better,
    added to a mean :math:`\mu\,x(t)`. Its exact likelihood with the
    measurement errors comes from a Kalman filter, with :math:`\mu` profiled
    out by generalized least squares and :math:`(\tau, \sigma)` maximized on
    a grid (Kelly et al. 2009, https://doi.org/10.1088/0004-637X/698/1/895;
    Kelly et al. 2014, https://doi.org/10.1088/0004-637X/788/1/33). With
    :math:`x = 1` it is red noise alone (3 parameters). The ESE model has
    :math:`x = 1 - d\,g_k` for the best template plus the same kind of red
    noise switched on only within the event window: from where the template
    falls below 5 % of the depth before the dip (flanks included) to where it
    does after it, plus a tenth of a duration, widened by up to half a
    duration on each side over adjacent residuals that stay above 3 sigma
    (averaged over a tenth of a duration), the baseline flux taken from the
    bins outside. Outside the window only measurement noise is allowed. The
    event must leave at least 15 binned points and 10 % of the light curve
    outside its window, otherwise it is incomplete. The reported

    .. math:: \Delta{\rm BIC} = {\rm BIC}_{\rm red} - {\rm BIC}_{\rm ESE}
              = -2\ln\frac{L_{\rm red}}{L_{\rm ESE}} - 4 \ln n

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
    any_gain = np.zeros(n_src)
    edge_explained = np.zeros(n_src)
    for start in range(0, n_src, chunk_size):
        rows = np.arange(start, min(start + chunk_size, n_src))
        rows = rows[n_points[rows] >= min_points]
        if not rows.size:
            continue
        y = np.where(observed[rows], binned.flux_jy[rows], 0.0)
        w = np.where(observed[rows], 1.0 / binned.flux_err_jy[rows] ** 2, 0.0)
        gain, k, depth, mean, chi2_0, gain_any = _best_fits(y, w, shapes, regions, grid)
        found = np.isfinite(gain) & (gain > 0)
        any_gain[rows] = np.where(np.isfinite(gain_any), gain_any, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            edge_explained[rows] = gain_any / np.maximum(
                chi2_0 - (n_points[rows] - 1), gain_any
            )
        out["chi2_const"][rows] = chi2_0
        out["ese_significance"][rows] = np.sqrt(
            np.clip(np.where(found, gain, 0), 0, None)
        )
        out["ese_depth"][rows] = np.where(found, depth, np.nan)
        for j, column in enumerate(_PARAM_COLUMNS):
            out[column][rows] = np.where(found, params[k, j], np.nan)
        out["ese_mean_flux_jy"][rows] = np.where(found, mean, np.nan)
        excess = np.maximum(chi2_0 - (n_points[rows] - 1), gain)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["ese_variance_explained"][rows] = np.where(
                found, np.clip(gain / excess, 0.0, 1.0), np.nan
            )
    significant = np.flatnonzero(out["ese_significance"] >= min_significance)
    baseline_ok = np.ones(n_src, dtype=bool)
    if significant.size:
        _refine(binned, observed, significant, out, grid)
        baseline_ok[significant] = _compare_models(binned, observed, significant, out)
    passes = (
        (out["ese_significance"] >= min_significance)
        & (out["ese_delta_bic"] >= min_delta_bic)
        & (out["ese_variance_explained"] >= min_variance_explained)
    )
    # A better fit by a dip that is not seen to start or end means the event
    # runs off an edge (or into a gap) of the light curve.
    sig2 = np.square(np.nan_to_num(np.asarray(out["ese_significance"])))
    edge_gain = any_gain - sig2
    with np.errstate(invalid="ignore"):
        cut = (edge_gain >= np.maximum(min_significance**2, _CUT_FRAC * sig2)) & (
            edge_explained >= min_variance_explained
        )
    out["ese_candidate"] = passes & baseline_ok & ~cut
    # A dip cut by an edge or a gap, or too long for the light curve to show
    # the steady flux around it, cannot be told from red noise: say so.
    out["ese_incomplete"] = ~out["ese_candidate"] & (cut | (passes & ~baseline_ok))
    return out


_PARAM_COLUMNS = (
    "ese_center_mjd",
    "ese_duration_days",
    "ese_flank_ratio",
    "ese_dip_order",
    "ese_asymmetry",
    "ese_flank_offset",
)


def _empty_result(names: NDArray[np.str_]) -> Table:
    n = names.size
    table = Table({"source_name": names, "n_points": np.zeros(n, dtype=np.int64)})
    for column in (
        "chi2_const",
        "ese_significance",
        "ese_depth",
        *_PARAM_COLUMNS,
        "ese_mean_flux_jy",
        "ese_variance_explained",
        "ese_delta_bic",
        "red_noise_tau_days",
        "red_noise_sigma_jy",
    ):
        table[column] = np.full(n, np.nan)
    table["red_noise_model"] = np.full(n, "", dtype="<U4")
    table["ese_candidate"] = np.zeros(n, dtype=bool)
    table["ese_incomplete"] = np.zeros(n, dtype=bool)
    return table


def _refine(
    binned: BinnedLightcurves,
    observed: NDArray,
    rows: NDArray,
    out: Table,
    grid: EseGrid,
) -> None:
    """Refine the best template around the grid optimum.

    First centre (+-1 grid step) and duration (+-10 %) with the coarse
    shapes, then all shapes (asymmetries included) within a quarter
    duration of that optimum.
    """
    steps = np.linspace(-0.5, 0.5, _N_REFINE)
    shifts = np.linspace(-1.0, 1.0, 2 * _N_REFINE - 1)
    # The minimum of an asymmetric dip lies up to ~a D / 2 from the centre of
    # the best symmetric one: shifts of up to a quarter duration, in steps.
    shifts_all = np.linspace(-0.25, 0.25, 11) / grid.center_step_frac
    coarse, every = _shapes(grid, coarse=True), _shapes(grid)
    for row in rows:
        for shapes_tried, c_steps, d_steps in (
            (coarse, shifts, steps),
            (every, shifts_all, steps[::3]),
        ):
            center = float(out["ese_center_mjd"][row])
            duration = float(out["ese_duration_days"][row])
            p = np.array(
                [
                    (center + grid.center_step_frac * d * c, d, *shape)
                    for d in duration * (1.0 + 0.2 * d_steps)
                    for c in c_steps
                    for shape in shapes_tried
                ]
            )
            _refine_row(binned, observed, row, out, grid, p)


def _refine_row(
    binned: BinnedLightcurves,
    observed: NDArray,
    row: int,
    out: Table,
    grid: EseGrid,
    p: NDArray,
) -> None:
    """Keep the best of templates p (k, 6) for one row if it beats the current."""
    shapes, regions = _shapes_and_regions(binned.time_mjd, p)
    ok = observed[row][None, :]
    y = np.where(ok, binned.flux_jy[row], 0.0)
    w = np.where(ok, 1.0 / binned.flux_err_jy[row] ** 2, 0.0)
    gain, k, depth, mean, chi2_0, _ = _best_fits(y, w, shapes, regions, grid)
    if not gain[0] > out["ese_significance"][row] ** 2:
        return
    out["ese_significance"][row] = np.sqrt(gain[0])
    out["ese_depth"][row] = depth[0]
    for j, column in enumerate(_PARAM_COLUMNS):
        out[column][row] = p[k[0], j]
    out["ese_mean_flux_jy"][row] = mean[0]
    excess = max(chi2_0[0] - (observed[row].sum() - 1), gain[0])
    out["ese_variance_explained"][row] = min(1.0, gain[0] / excess)


def _extend_window(
    t: NDArray,
    pull: NDArray,
    observed: NDArray,
    start: NDArray,
    end: NDArray,
    duration: NDArray,
) -> NDArray[np.bool_]:
    """Widen each event window over residual structure next to it.

    Features the template lacks (caustic brightenings beyond the dip,
    extended wings) leave significant residuals just outside the window;
    it is widened, by up to ``_EXTEND_MAX`` durations on each side, over the run of
    bins next to it where the residuals averaged over a tenth of a duration
    (at least three bins) differ from zero by more than ``_EXTEND_SIGMA``.
    """
    step = float(np.median(np.diff(t))) if t.size > 1 else 1.0
    window = np.zeros(pull.shape, dtype=bool)
    for i in range(pull.shape[0]):
        width = max(3, int(round(0.1 * duration[i] / step)))
        kernel = np.ones(width)
        total = np.convolve(pull[i], kernel, mode="same")
        count = np.convolve(observed[i].astype(np.float64), kernel, mode="same")
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.abs(total) / np.sqrt(count)
        loud = (z > _EXTEND_SIGMA) & (count >= 2)
        reach = _EXTEND_MAX * duration[i]
        lo = _walk(t, loud, start[i], -reach, width)
        hi = _walk(t, loud, end[i], reach, width)
        window[i] = (t >= lo) & (t <= hi)
    return window


def _walk(t: NDArray, loud: NDArray, edge: float, reach: float, gap: int) -> float:
    """Return how far loud bins run on from ``edge`` (up to ``reach`` days).

    The run stops at the first ``gap`` consecutive quiet bins.
    """
    side = (
        (t > edge) & (t <= edge + reach)
        if reach > 0
        else (t < edge) & (t >= edge + reach)
    )
    index = np.flatnonzero(side)
    if reach < 0:
        index = index[::-1]
    last, quiet = edge, 0
    for j in index:
        if loud[j]:
            last, quiet = float(t[j]), 0
        else:
            quiet += 1
            if quiet >= gap:
                break
    return last


def _compare_models(
    binned: BinnedLightcurves, observed: NDArray, rows: NDArray, out: Table
) -> NDArray[np.bool_]:
    """Fill ese_delta_bic and the red-noise columns; return baseline_ok per row.

    The ESE model's own red noise acts only within the event window; a row
    whose light curve has too few points outside that window to show the
    steady flux around the event gets False.
    """
    t = binned.time_mjd
    y = np.where(observed[rows], binned.flux_jy[rows], np.nan)
    e2 = np.where(observed[rows], binned.flux_err_jy[rows] ** 2, np.nan)
    p = np.column_stack([np.asarray(out[c][rows]) for c in _PARAM_COLUMNS])
    shape = _template(t[None, :], *(p[:, j, None] for j in range(len(_PARAM_COLUMNS))))
    h = 1.0 - np.asarray(out["ese_depth"][rows])[:, None] * shape
    m2ll_red, tau, sigma, model = red_noise_m2ll(t, y, e2)
    window, start, end = _event_window(t, p)
    # The steady flux from the bins outside the event alone.
    base = observed[rows] & ~window
    wt = np.where(base, h * h / np.where(base, e2, 1.0), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(base, h * y / np.where(base, e2, 1.0), 0.0).sum(1) / wt.sum(1)
    mean = np.where(np.isfinite(mean), mean, out["ese_mean_flux_jy"][rows])[:, None]
    pull = np.where(observed[rows], (y - mean * h) / np.sqrt(e2), 0.0)
    window = _extend_window(t, pull, observed[rows], start, end, p[:, 1])
    m2ll_both, _, _ = windowed_red_noise_m2ll(t, y, e2, h, window)
    n = observed[rows].sum(1)
    n_outside = (observed[rows] & ~window).sum(1)
    out["ese_delta_bic"][rows] = m2ll_red - m2ll_both - _K_ESE_EXTRA * np.log(n)
    out["red_noise_tau_days"][rows] = tau
    out["red_noise_sigma_jy"][rows] = sigma
    out["red_noise_model"][rows] = model
    return n_outside >= np.maximum(_MIN_BASELINE_POINTS, _MIN_BASELINE_FRAC * n)
