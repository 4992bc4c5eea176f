"""The flux systematic of photometry rows: per image, and between overlapping images.

``flux_err_jy`` is the noise error and a measured systematic ``flux_sys_jy``
in quadrature: the in-image shape error of `measure_forced`, the flux left in
a group image's residual (`residual_excess`) and, per block, the scatter
between overlapping images (`add_overlap_systematic`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import numpy as np
from astropy.table import Table

from dsa110_contimg.data_ingestion.photometry import excess_fraction

__all__ = [
    "add_overlap_systematic",
    "kept_systematic",
    "mark_shared_systematic",
    "noise_errors",
    "overlap_fit",
    "set_systematic",
    "shared_error_correlation",
    "table_fraction",
]

log = logging.getLogger(__name__)

_OVERLAP_MIN_SNR = 10.0  # rows that enter the pair fit and the members' weights
#: pairs with a non-thermal error (dirty-equivalent rows) to fit its correlation
_MIN_CORRELATION_PAIRS = 20


def table_fraction(table: Table) -> float:
    """Return the fractional systematic of a table's rows (median of sys/|flux|)."""
    if not len(table):
        return 0.0
    flux = np.abs(np.asarray(table["flux_jy"], dtype=np.float64))
    sys = np.asarray(table["flux_sys_jy"], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(flux > 0, sys / flux, np.nan)
    if not np.any(np.isfinite(ratio)):
        return 0.0
    return float(np.nanmedian(ratio))


def mark_shared_systematic(table: Table) -> None:
    """Record that ``flux_sys_jy`` holds a measured term the overlap fit keeps.

    The dirty-equivalent estimator's sidelobe error (`measure_dirty_equivalent`)
    is the same sky's in overlapping images: `add_overlap_systematic` adds its
    fraction to it in quadrature instead of replacing it, and a mosaic's mean
    carries it as correlated between its members (`mosaic_from_members`).
    """
    table.meta["shared_systematic"] = True
    table.meta["sys_fraction"] = 0.0
    table.meta["residual_excess"] = 0.0


def set_systematic(
    table: Table,
    fraction: float | np.ndarray,
    tau: float,
    shared: np.ndarray | None = None,
) -> None:
    r"""Set ``flux_sys_jy`` to :math:`\sqrt{(f S)^2 + (\tau n)^2 + s^2}`, and the error.

    ``n`` is the noise error (``flux_err_jy`` less the current systematic),
    ``s`` a measured term kept (``shared``, default 0);
    ``f`` (one value, or one per row) and ``tau`` are kept in ``table.meta``
    (``sys_fraction``, the largest ``f``; ``residual_excess``).
    """
    if len(table):
        flux = np.abs(np.asarray(table["flux_jy"], dtype=np.float64))
        err = np.asarray(table["flux_err_jy"], dtype=np.float64)
        old = np.asarray(table["flux_sys_jy"], dtype=np.float64)
        # the noise error: the total less the systematic it holds now
        noise = np.sqrt(np.maximum(err**2 - np.nan_to_num(old) ** 2, 0.0))
        sys = np.hypot(fraction * flux, tau * noise)
        if shared is not None:
            sys = np.hypot(sys, shared)
        table["flux_sys_jy"] = sys
        table["flux_err_jy"] = np.hypot(noise, sys)
    table.meta["sys_fraction"] = float(np.max(fraction, initial=0.0))
    table.meta["residual_excess"] = float(tau)


def add_overlap_systematic(tables: list[Table]) -> list[Table]:
    r"""Measure the flux-scale scatter between overlapping images and add it.

    Consecutive group images overlap, so most sources are measured on two or
    three images at different places in the primary beam and, after gain
    drift, with different residual calibration errors. For every pair of
    unflagged measurements of a source on two images (``snr >= 10``) the
    difference :math:`d = S_A - S_B` has variance

    .. math::
        (1 + \tau_A^2) n_A^2 + (1 + \tau_B^2) n_B^2
        + f^2 (S_A^2 / p_A^2 + S_B^2 / p_B^2),

    with :math:`n` the noise errors, :math:`\tau` each image's residual excess
    (``meta['residual_excess']``, see
    `~dsa110_contimg.data_ingestion.photometry.residual_excess`), :math:`p`
    the primary beam at the source and :math:`f` the fractional error per
    image, at the beam centre, that neither explains; :math:`f` is estimated
    from all pairs by
    `~dsa110_contimg.data_ingestion.photometry.excess_fraction`. The error
    grows as :math:`1/p` like that of an error :math:`\epsilon` in the beam's
    gain (:math:`\delta S / S = \epsilon / p`): on the development demo the
    pair differences and the errors against the truth are largest at low
    primary beam (3-4% at p ~ 0.3, 0.3-0.6% near the centre), and this
    model fits them better than a constant fraction. Only :math:`f` is fitted:
    with tens of pairs a second, noise-scaled term is degenerate with it (on
    the development demo such a fit put all the excess in a noise term, 1.8x
    the noise, and made the errors of sources at SNR 30-100 twice too large).

    An image row's systematic fraction becomes the larger of its image's
    in-image shape fraction (``meta['sys_fraction']``, see `measure_forced`)
    and :math:`f / p`; ``flux_sys_jy`` becomes
    :math:`\sqrt{(f_{row} S)^2 + (\tau n)^2}` and ``flux_err_jy`` the noise
    and systematic in quadrature.

    A mosaic row is the weighted mean of its members' measurements
    (weights :math:`w_i = 1/n_i^2`, the members' unflagged rows of that
    source). The pair scatter is independent between images (a difference
    cancels what the images share), so it propagates as through a mean:
    :math:`f_{row} = f \sqrt{\sum_i w_i^2 / p_i^2} / \sum_i w_i`, which for
    N equal members is :math:`f / (p \sqrt{N})`. What the images share (the
    clean's errors at a sky position, the flux scale of one calibration) does
    not average down: the mosaic keeps its own shape fraction (measured on
    the mosaic) and its members' residual excess (their rms :math:`\tau`,
    applied to its own noise error). A source no member measured keeps
    :math:`f` (primary beam 1, one member).

    A table marked by `mark_shared_systematic` (the dirty-equivalent
    estimator) keeps its measured ``flux_sys_jy`` (the bright sources'
    sidelobes) in quadrature with the new terms; in the pair fit that term
    counts as noise, and a marked mosaic (its members' mean) takes the
    members' :math:`f/p` as shared, :math:`f \sum_i (w_i/p_i) / \sum_i w_i`.
    With neither overlaps nor residual excess the tables are returned
    unchanged.

    Parameters
    ----------
    tables : list of astropy.table.Table
        One table per image or mosaic (`measure_image`, `measure_mosaic`) of
        one block.

    Returns
    -------
    list of astropy.table.Table
        The tables, updated copies where the systematic changed;
        ``meta['sys_fraction']`` is the largest row fraction and
        ``meta['overlap_fraction']`` the fitted :math:`f`.
    """
    images = [t for t in tables if len(t) and str(t["image_kind"][0]) == "image"]
    frac = _overlap_fraction(images)
    taus = [float(t.meta.get("residual_excess", 0.0)) for t in images]
    tau_images = float(np.sqrt(np.mean(np.square(taus)))) if taus else 0.0
    if frac is None and tau_images == 0.0:
        return list(tables)
    frac = 0.0 if frac is None else frac
    members = _members(images)
    out = []
    for table in tables:
        if not len(table):
            out.append(table)
            continue
        own = float(table.meta.get("sys_fraction", table_fraction(table)))
        tau = float(table.meta.get("residual_excess", 0.0))
        shared = kept_systematic(table)
        updated = table.copy()
        if str(table["image_kind"][0]) == "image":
            with np.errstate(invalid="ignore", divide="ignore"):
                pb = _pb(table)
                per_pb = np.where(pb > 0, frac / pb, np.nan)
            set_systematic(updated, np.fmax(own, per_pb), tau, shared)
        else:  # a mosaic: the independent part averages down, the shared part not
            per_row = np.array(
                [
                    _mean_fraction(
                        members.get(str(name), []), frac, correlated=shared is not None
                    )
                    for name in table["source_name"]
                ]
            )
            set_systematic(
                updated, np.maximum(own, per_row), max(tau, tau_images), shared
            )
        updated.meta["overlap_fraction"] = float(frac)
        out.append(updated)
    return out


def kept_systematic(table: Table) -> np.ndarray | None:
    """Return the measured systematic a table keeps (`mark_shared_systematic`)."""
    if not table.meta.get("shared_systematic"):
        return None
    return np.nan_to_num(np.asarray(table["flux_sys_jy"], dtype=np.float64))


def noise_errors(table: Table) -> np.ndarray:
    """Return the rows' noise errors: ``flux_err_jy`` less ``flux_sys_jy``."""
    err = np.asarray(table["flux_err_jy"], dtype=np.float64)
    sys = np.asarray(table["flux_sys_jy"], dtype=np.float64)
    return np.sqrt(np.maximum(err**2 - np.nan_to_num(sys) ** 2, 0.0))


def _pb(table: Table) -> np.ndarray:
    """Return the rows' primary beam (1 for a table without the column)."""
    if "pb" not in table.colnames:
        return np.ones(len(table))
    return np.asarray(table["pb"], dtype=np.float64)


def _usable(table: Table, noise: np.ndarray) -> np.ndarray:
    flux = np.asarray(table["flux_jy"], dtype=np.float64)
    pb = _pb(table)
    with np.errstate(invalid="ignore"):
        good = (np.asarray(table["flags"]) == 0) & np.isfinite(flux) & (noise > 0)
        good &= np.asarray(table["snr"], dtype=np.float64) >= _OVERLAP_MIN_SNR
        good &= pb > 0
    return good


def _members(images: list[Table]) -> dict[str, list[tuple[float, float]]]:
    """Return, per source, (noise error, primary beam) of its unflagged image rows."""
    members: dict[str, list[tuple[float, float]]] = {}
    for table in images:
        noise = noise_errors(table)
        pb = _pb(table)
        for i in np.flatnonzero(_usable(table, noise)):
            members.setdefault(str(table["source_name"][i]), []).append(
                (float(noise[i]), float(pb[i]))
            )
    return members


def _mean_fraction(
    members: list[tuple[float, float]], frac: float, *, correlated: bool = False
) -> float:
    r"""Return :math:`f \sqrt{\sum w_i^2 / p_i^2} / \sum w_i` (f with no members).

    ``correlated``: :math:`f \sum (w_i / p_i) / \sum w_i`, the members' errors
    taken as one (the members' mean of a dirty-equivalent mosaic).
    """
    if not members:
        return frac
    noise, pb = np.asarray(members).T
    w = 1.0 / noise**2
    if correlated:
        return float(frac * np.sum(w / pb) / np.sum(w))
    return float(frac * np.sqrt(np.sum((w / pb) ** 2)) / np.sum(w))


def _overlap_fraction(images: list[Table]) -> float | None:
    """Return f from pairs of images measuring one source; None without pairs."""
    fit = overlap_fit(images)
    return None if fit is None else fit[0]


def shared_error_correlation(images: Iterable[Table]) -> float:
    r"""Return the correlation of overlapping images' non-thermal flux errors.

    The error of a dirty-equivalent group-image row holds the thermal noise
    :math:`\phi n` (``meta['thermal_fraction']``, independent between
    groups) and what the sky makes, :math:`q = \sqrt{(1 - \phi^2) n^2 +
    s^2}`: the clean's error on this sky and the bright sources' sidelobes
    (``flux_sys_jy``). An overlapping image makes them again at the same
    source, partly: it sees the source at another place in its beam, after
    the drift, with other neighbours' sidelobes. `overlap_fit` measures
    their correlation :math:`\rho` from the pair differences, which it makes
    smaller by :math:`2 \rho q_A q_B` (on the testing fields 0-0.65 per
    block, 0.2-0.5 against the truth). 1 (fully shared, an upper bound) with
    fewer than ``_MIN_CORRELATION_PAIRS`` such pairs.
    """
    fit = overlap_fit(list(images))
    return 1.0 if fit is None or fit[1] is None else fit[1]


def overlap_fit(images: list[Table]) -> tuple[float, float | None] | None:
    r"""Fit the pair differences of overlapping images; None without pairs.

    For every pair of unflagged measurements of a source on two images
    (consecutive in ``images``, ``snr >= 10``) the difference
    :math:`d = S_A - S_B` has expectation :math:`E[d^2] = v_A + v_B -
    2 \rho\, q_A q_B + f^2 (S_A^2/p_A^2 + S_B^2/p_B^2)`: :math:`v` the
    measurement's noise variance (its noise error with the image's residual
    excess, or with its kept sidelobe term), :math:`q` the non-thermal part
    of a dirty-equivalent error (`shared_error_correlation`; 0 for the
    restored estimator),
    :math:`\rho \in [0, 1]` its correlation between the two images and
    :math:`f \ge 0` the fractional error per image at the beam centre that
    neither explains. Returns ``(f, rho)``: a weighted least-squares fit of
    both (weights the inverse squared variance of :math:`d^2`, iterated) when
    at least ``_MIN_CORRELATION_PAIRS`` pairs carry a non-thermal error, else
    ``(f, None)`` with :math:`f` alone (`excess_fraction`).
    """
    by_source: dict[str, list[tuple[float, float, float, float]]] = {}
    for table in images:
        flux = np.asarray(table["flux_jy"], dtype=np.float64)
        pb = _pb(table)
        noise = noise_errors(table)
        # the noise each measurement has with its image's residual excess
        inflate = math.hypot(1.0, float(table.meta.get("residual_excess", 0.0)))
        # a measured sidelobe term enters the pairs as if independent: the
        # sidelobes move with the drift between two images, and f is only
        # what neither term explains
        shared = kept_systematic(table)
        spread = noise * inflate if shared is None else np.hypot(noise, shared)
        if shared is None:
            clean = np.zeros(len(table))
        else:  # what is not thermal: the clean's error and the sidelobes
            phi = min(max(float(table.meta.get("thermal_fraction", 1.0)), 0.0), 1.0)
            clean = np.hypot(math.sqrt(1.0 - phi**2) * noise, shared)
        for i in np.flatnonzero(_usable(table, noise)):
            by_source.setdefault(str(table["source_name"][i]), []).append(
                (float(flux[i]), float(spread[i]), float(pb[i]), float(clean[i]))
            )
    terms = []  # per pair: d^2, v_A + v_B, S_A^2/p_A^2 + S_B^2/p_B^2, q_A q_B
    for rows in by_source.values():
        for a, b in zip(rows[:-1], rows[1:], strict=True):
            terms.append(
                (
                    (a[0] - b[0]) ** 2,
                    a[1] ** 2 + b[1] ** 2,
                    (a[0] / a[2]) ** 2 + (b[0] / b[2]) ** 2,
                    a[3] * b[3],
                )
            )
    if not terms:
        return None
    d2, v2, s2, qq = np.array(terms).T
    if np.count_nonzero(qq > 0) < _MIN_CORRELATION_PAIRS:
        frac, rho = excess_fraction((d2 - v2) / s2, v2 / s2), None
    else:
        frac, rho = _fit_fraction_and_correlation(d2, v2, s2, qq)
    log.info(
        "flux systematic from overlapping images",
        extra={
            "n_pairs": len(d2),
            "fraction": round(frac, 5),
            "error_correlation": None if rho is None else round(rho, 3),
        },
    )
    return frac, rho


def _fit_fraction_and_correlation(
    d2: np.ndarray, v2: np.ndarray, s2: np.ndarray, qq: np.ndarray
) -> tuple[float, float]:
    """Return (f, rho) of ``d2 ~ v2 - 2 rho qq + f^2 s2`` (`overlap_fit`)."""
    y = d2 - v2
    design = np.column_stack([-2.0 * qq, s2])
    rho, f2 = 0.5, 0.0
    for _ in range(5):
        var = np.maximum(v2 - 2.0 * rho * qq + f2 * s2, 1e-6 * v2)
        w = 1.0 / var**2
        rho, f2 = _bounded_wls(design, y, w)
    return math.sqrt(f2), rho


def _bounded_wls(
    design: np.ndarray, y: np.ndarray, w: np.ndarray
) -> tuple[float, float]:
    """Weighted least squares of ``y ~ design @ (rho, f2)``, 0 <= rho <= 1, f2 >= 0.

    The unconstrained solution if it is inside the bounds, else the best of
    the fits with one or both parameters on a bound.
    """

    def cost(rho: float, f2: float) -> float:
        return float(np.sum(w * (y - design[:, 0] * rho - design[:, 1] * f2) ** 2))

    def alone(col: int, fixed: float) -> float:
        x = design[:, col]
        rest = y - design[:, 1 - col] * fixed
        den = float(np.sum(w * x * x))
        return float(np.sum(w * x * rest) / den) if den > 0 else 0.0

    sqrt_w = np.sqrt(w)
    solution, *_ = np.linalg.lstsq(design * sqrt_w[:, None], y * sqrt_w, rcond=None)
    rho, f2 = (float(v) for v in solution)
    if 0.0 <= rho <= 1.0 and f2 >= 0.0:
        return rho, f2
    candidates = []
    for rho_bound in (0.0, 1.0):
        candidates.append((rho_bound, max(alone(1, rho_bound), 0.0)))
    f2_rho = min(max(alone(0, 0.0), 0.0), 1.0)
    candidates.append((f2_rho, 0.0))
    return min(candidates, key=lambda c: cost(*c))
