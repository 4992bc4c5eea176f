r"""Relative flux calibration of one epoch against an ensemble of steady sources.

Each epoch's fluxes carry a common multiplicative error (gain or primary-beam
scale). The scale is the sigma-clipped median, over bright, steady and
unresolved reference sources, of each source's flux in this epoch divided by
its mean flux in the earlier (already corrected) epochs; every measurement of
the epoch is divided by it. The first epoch of a field, whose sources have no
history, anchors the scale (factor 1).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.stats import mad_std
from astropy.table import Table
from numpy.typing import ArrayLike, NDArray

from dsa110_contimg.exceptions import DataQualityWarning

__all__ = [
    "FluxScale",
    "estimate_flux_scale",
    "apply_flux_scale",
    "select_references",
    "calibrate_epoch",
]

log = logging.getLogger(__name__)

_MEDIAN_EFFICIENCY = math.sqrt(math.pi / 2.0)


@dataclass(frozen=True, slots=True, eq=False)
class FluxScale:
    """The flux-scale factor of one epoch.

    Parameters
    ----------
    scale : float
        Measured / true flux ratio (divide measurements by it); NaN when it
        could not be determined.
    scale_err : float
        One-sigma uncertainty of ``scale``.
    n_ref : int
        Reference sources offered.
    n_used : int
        Reference sources kept after clipping.
    is_anchor : bool
        True when no source had history and the scale was set to 1.
    used : ndarray of bool, shape (n_ref,)
        Which offered references were kept.
    """

    scale: float
    scale_err: float
    n_ref: int
    n_used: int
    is_anchor: bool
    used: NDArray[np.bool_]


def estimate_flux_scale(
    flux_jy: ArrayLike,
    ref_flux_jy: ArrayLike,
    *,
    clip_sigma: float = 3.0,
    max_iter: int = 10,
    min_n_ref: int = 10,
) -> FluxScale:
    r"""Estimate an epoch's flux scale from reference sources.

    Parameters
    ----------
    flux_jy : array_like, shape (n_ref,)
        Measured flux densities of the reference sources in this epoch, Jy.
    ref_flux_jy : array_like, shape (n_ref,)
        Their mean flux densities in earlier epochs, Jy.
    clip_sigma : float
        Ratios further than this many robust standard deviations from the
        median are rejected, iteratively (variable sources drop out).
    max_iter : int
        Most clipping iterations.
    min_n_ref : int
        Fewest references kept for a valid scale; with fewer the scale is NaN.

    Returns
    -------
    FluxScale
        The scale, its uncertainty and the references kept.

    Notes
    -----
    With ratios :math:`r_i = S_i / \bar S_i`, iterate

    .. math::
        s = \operatorname{med}(r_i), \quad
        \hat\sigma = 1.4826\,\operatorname{med}|r_i - s|, \quad
        \text{keep } |r_i - s| \le k\hat\sigma

    until the kept set no longer changes. The uncertainty of the median is
    :math:`\sigma_s = \sqrt{\pi/2}\,\hat\sigma/\sqrt{n}` (its asymptotic
    efficiency for Gaussian scatter). Robust location estimates of this kind
    are the standard choice for ensemble flux-scale corrections (e.g.
    Huber 1964, https://doi.org/10.1214/aoms/1177703732).

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.linspace(1.0, 2.0, 50)
    >>> flux = 1.05 * ref
    >>> flux[0] = 10.0  # a flaring source is rejected
    >>> result = estimate_flux_scale(flux, ref)
    >>> round(result.scale, 6), result.n_used
    (1.05, 49)
    """
    flux = np.asarray(flux_jy, dtype=np.float64)
    ref = np.asarray(ref_flux_jy, dtype=np.float64)
    if flux.shape != ref.shape or flux.ndim != 1:
        msg = (
            f"flux_jy and ref_flux_jy must be 1-D and equal: {flux.shape}, {ref.shape}"
        )
        raise ValueError(msg)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = flux / ref
    used = np.isfinite(ratio) & (ref > 0)
    scale, sigma = float("nan"), float("nan")
    for _ in range(int(max_iter)):
        if used.sum() < max(min_n_ref, 2):
            break
        scale = float(np.median(ratio[used]))
        sigma = float(mad_std(ratio[used]))
        keep = np.isfinite(ratio) & (np.abs(ratio - scale) <= clip_sigma * sigma)
        if np.array_equal(keep, used):
            break
        used = keep
    n_used = int(used.sum())
    if n_used < min_n_ref or not np.isfinite(scale):
        return FluxScale(float("nan"), float("nan"), flux.size, n_used, False, used)
    scale = float(np.median(ratio[used]))
    sigma = float(mad_std(ratio[used]))
    scale_err = _MEDIAN_EFFICIENCY * sigma / math.sqrt(n_used)
    return FluxScale(scale, scale_err, flux.size, n_used, False, used)


def apply_flux_scale(
    flux_jy: ArrayLike,
    flux_err_jy: ArrayLike,
    scale: FluxScale,
    *,
    systematic_floor_frac: float = 0.005,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r"""Divide measurements by an epoch's scale and propagate the errors.

    Parameters
    ----------
    flux_jy, flux_err_jy : array_like, shape (n,)
        Measured flux densities and errors, Jy.
    scale : FluxScale
        The epoch's scale.
    systematic_floor_frac : float
        Fractional systematic error added in quadrature.

    Returns
    -------
    flux_corr_jy, flux_corr_err_jy : ndarray, shape (n,)
        Corrected flux densities and errors, Jy (NaN when the scale is NaN).

    Notes
    -----
    .. math::
        S_c = S / s, \qquad
        \sigma_c^2 = (\sigma / s)^2 + (S_c\,\sigma_s / s)^2 + (\epsilon S_c)^2,

    with :math:`\epsilon` the systematic floor.
    """
    flux = np.asarray(flux_jy, dtype=np.float64)
    err = np.asarray(flux_err_jy, dtype=np.float64)
    s, s_err = scale.scale, scale.scale_err
    corr = flux / s
    corr_err = np.sqrt(
        (err / s) ** 2 + (corr * s_err / s) ** 2 + (systematic_floor_frac * corr) ** 2
    )
    return corr, corr_err


def select_references(
    table: Table,
    history: Table,
    *,
    min_snr: float = 50.0,
    min_epochs: int = 1,
    max_eta: float = 3.0,
    max_v: float = 0.05,
    max_resolved_frac: float = 0.15,
) -> tuple[NDArray[np.intp], NDArray[np.float64], int]:
    """Choose the reference measurements of an epoch.

    Parameters
    ----------
    table : astropy.table.Table
        The epoch: ``source_name, flux_jy, flux_err_jy, flags`` and optionally
        ``peak_jy``.
    history : astropy.table.Table
        Per-source metrics of earlier epochs (from
        :func:`~dsa110_contimg.variability.metrics_from_sums`): ``source_name``
        (sorted), ``n_epochs, weighted_mean_flux_jy, eta, v``.
    min_snr : float
        Faintest reference (``flux_jy / flux_err_jy``).
    min_epochs : int
        Earlier epochs a reference needs.
    max_eta, max_v : float
        References with three or more earlier epochs must have eta and V
        below these (steady sources).
    max_resolved_frac : float
        When ``peak_jy`` is given, ``|peak_jy / flux_jy - 1|`` must be below
        this (unresolved sources).

    Returns
    -------
    rows : ndarray of int
        Rows of ``table`` used as references.
    ref_flux_jy : ndarray
        Their mean flux densities in earlier epochs, Jy.
    n_with_history : int
        Unflagged sources of the epoch that have any history.
    """
    names = np.asarray(table["source_name"], dtype=str)
    flux = np.asarray(table["flux_jy"], dtype=np.float64)
    err = np.asarray(table["flux_err_jy"], dtype=np.float64)
    flags = np.asarray(table["flags"]) if "flags" in table.colnames else 0
    hist_names = np.asarray(history["source_name"], dtype=str)
    if hist_names.size:
        idx = np.minimum(np.searchsorted(hist_names, names), hist_names.size - 1)
        has = hist_names[idx] == names
    else:
        idx, has = np.zeros(names.size, dtype=np.intp), np.zeros(names.size, bool)

    def past(column: str) -> NDArray[np.float64]:
        if not hist_names.size:
            return np.full(names.size, np.nan)
        values = np.asarray(history[column], dtype=np.float64)[idx]
        return np.where(has, values, np.nan)

    n_prev = np.nan_to_num(past("n_epochs"))
    clean = (flags == 0) & np.isfinite(flux) & (err > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = clean & has & (n_prev >= min_epochs) & (flux / err >= min_snr)
        if "peak_jy" in table.colnames:
            peak = np.asarray(table["peak_jy"], dtype=np.float64)
            ok &= np.abs(peak / flux - 1.0) <= max_resolved_frac
        steady = (n_prev < 3) | ((past("eta") < max_eta) & (past("v") < max_v))
        ok &= steady
    rows = np.flatnonzero(ok)
    ref = past("weighted_mean_flux_jy")[rows]
    return rows, ref, int(np.sum(clean & has))


def calibrate_epoch(
    table: Table,
    history: Table,
    *,
    systematic_floor_frac: float = 0.005,
    min_snr: float = 50.0,
    min_epochs: int = 1,
    max_eta: float = 3.0,
    max_v: float = 0.05,
    max_resolved_frac: float = 0.15,
    min_n_ref: int = 10,
    clip_sigma: float = 3.0,
    max_iter: int = 10,
    epoch_id: str = "",
) -> tuple[Table, FluxScale]:
    """Return a copy of an epoch with its flux-scale columns added.

    Parameters
    ----------
    table : astropy.table.Table
        The epoch's measurements (see :func:`select_references`).
    history : astropy.table.Table
        Per-source metrics of the other epochs (see :func:`select_references`).
    systematic_floor_frac : float
        Fractional systematic error added to the corrected errors.
    min_snr, min_epochs, max_eta, max_v, max_resolved_frac : float or int
        Reference selection (see :func:`select_references`).
    min_n_ref, clip_sigma, max_iter : int or float
        Scale estimate (see :func:`estimate_flux_scale`).
    epoch_id : str
        Used in messages.

    Returns
    -------
    table : astropy.table.Table
        The input columns plus ``scale, scale_err, flux_corr_jy,
        flux_corr_err_jy``.
    scale : FluxScale
        The epoch's scale.

    Warns
    -----
    DataQualityWarning
        The epoch's sources have history but fewer than ``min_n_ref`` usable
        references: the scale is NaN and so are the corrected fluxes (the raw
        measurements are kept).

    Notes
    -----
    When fewer than ``min_n_ref`` of the epoch's unflagged sources have any
    history (a field seen for the first time) the epoch anchors the scale:
    factor 1 with zero uncertainty. Later epochs are tied to it through the
    references' mean fluxes, so the scale is relative, not absolute.
    """
    rows, ref, n_with_history = select_references(
        table,
        history,
        min_snr=min_snr,
        min_epochs=min_epochs,
        max_eta=max_eta,
        max_v=max_v,
        max_resolved_frac=max_resolved_frac,
    )
    flux = np.asarray(table["flux_jy"], dtype=np.float64)
    if n_with_history < min_n_ref:
        scale = FluxScale(1.0, 0.0, 0, 0, True, np.zeros(0, dtype=bool))
        log.info("flux scale anchored", extra={"epoch_id": epoch_id})
    else:
        scale = estimate_flux_scale(
            flux[rows],
            ref,
            clip_sigma=clip_sigma,
            max_iter=max_iter,
            min_n_ref=min_n_ref,
        )
        if not np.isfinite(scale.scale):
            warnings.warn(
                f"epoch {epoch_id}: only {scale.n_used} usable reference source(s) "
                f"(need {min_n_ref}); flux scale unknown, corrected fluxes are NaN",
                DataQualityWarning,
                stacklevel=2,
            )
    out = table.copy(copy_data=True)
    corr, corr_err = apply_flux_scale(
        flux, table["flux_err_jy"], scale, systematic_floor_frac=systematic_floor_frac
    )
    out["scale"] = np.full(len(out), scale.scale)
    out["scale_err"] = np.full(len(out), scale.scale_err)
    out["flux_corr_jy"] = corr
    out["flux_corr_err_jy"] = corr_err
    log.debug(
        "flux scale",
        extra={
            "epoch_id": epoch_id,
            "scale": scale.scale,
            "scale_err": scale.scale_err,
            "n_ref": scale.n_ref,
            "n_used": scale.n_used,
        },
    )
    return out, scale
