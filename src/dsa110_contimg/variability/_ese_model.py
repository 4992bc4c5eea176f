r"""The ESE dip template: a dip of order q, asymmetric, with optional flanks.

The fitted light curve is :math:`m(t) = a\,[1 - d\,(p(t) - r f(t))]` with the
dip :math:`p = \exp(-\ln 2\,|2(t-t_0)/W_\pm|^{q})` (half-widths
:math:`W_\mp/2 = D(1 \mp a)/2` before and after the centre) and flanking
Gaussians :math:`f` at :math:`t_0 \pm o W_\pm` of sigma :math:`0.3\,o W_\pm`.
The search over these templates is in ``_ese`` (:func:`search_ese`).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["ese_model"]

_DIP_ORDER = 3.0  # default of ese_model: between a Gaussian and a flat bottom
_FLANK_OFFSET = 0.8  # default of ese_model, in durations
_FLANK_WIDTH = 0.3  # flank sigma / flank offset


def _half_widths(duration_days: NDArray, asymmetry: NDArray) -> tuple[NDArray, NDArray]:
    """Return the half-widths at half depth before and after the centre, days."""
    return 0.5 * duration_days * (1.0 - asymmetry), 0.5 * duration_days * (
        1.0 + asymmetry
    )


def _template(
    time_mjd: NDArray,
    center_mjd: NDArray,
    duration_days: NDArray,
    flank_ratio: NDArray,
    order: NDArray | float = _DIP_ORDER,
    asymmetry: NDArray | float = 0.0,
    flank_offset: NDArray | float = _FLANK_OFFSET,
) -> NDArray[np.float64]:
    """Return dip-minus-flank shapes, broadcasting the template parameters."""
    before, after = _half_widths(duration_days, asymmetry)
    offset = time_mjd - center_mjd
    u = 0.5 * np.abs(offset) / np.where(offset < 0, before, after)
    dip = np.exp(-math.log(2.0) * np.power(2.0 * u, order))
    flank = np.exp(-0.5 * ((u - flank_offset) / (_FLANK_WIDTH * flank_offset)) ** 2)
    return dip - flank_ratio * flank


def _event_window(
    time_mjd: NDArray, params: NDArray
) -> tuple[NDArray[np.bool_], NDArray, NDArray]:
    """Return the bins of each event (n, n_t) and its start and end, MJD.

    The event spans the template where it exceeds 5 % of the depth (the
    dip and any flanks) with a margin of a tenth of the duration, on each
    side separately (structure the template lacks widens the window later,
    see :func:`_extend_window`).
    """
    center, duration, ratio, order, asym, offset = (
        params[:, j, None] for j in range(6)
    )
    before, after = _half_widths(duration, asym)
    reach = np.power(math.log(20.0) / math.log(2.0), 1.0 / order)
    with np.errstate(divide="ignore", invalid="ignore"):
        flank = (
            2.0
            * offset
            * (
                1.0
                + _FLANK_WIDTH * np.sqrt(2.0 * np.log(np.maximum(ratio, 0.05) / 0.05))
            )
        )
    reach = np.where(ratio > 0.05, np.maximum(reach, flank), reach)
    start = center - before * reach - 0.1 * duration
    end = center + after * reach + 0.1 * duration
    inside = (time_mjd[None, :] >= start) & (time_mjd[None, :] <= end)
    return inside, start[:, 0], end[:, 0]


def ese_model(
    time_mjd: ArrayLike,
    *,
    mean_flux_jy: float,
    depth: float,
    duration_days: float,
    center_mjd: float,
    flank_ratio: float = 0.0,
    dip_order: float = _DIP_ORDER,
    asymmetry: float = 0.0,
    flank_offset: float = _FLANK_OFFSET,
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
    dip_order : float
        Exponent q of the dip profile (2: Gaussian; larger: flatter bottom).
    asymmetry : float
        a in (-1, 1): half-widths ``D (1 -+ a) / 2`` before and after the centre.
    flank_offset : float
        Distance of the flanks from the centre, durations (sigma 0.3 x that).

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
    shape = _template(
        t, center_mjd, duration_days, flank_ratio, dip_order, asymmetry, flank_offset
    )
    return mean_flux_jy * (1.0 - depth * shape)
