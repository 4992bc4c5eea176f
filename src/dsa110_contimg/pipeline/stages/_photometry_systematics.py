"""The flux systematic of photometry rows: per image, and between overlapping images.

``flux_err_jy`` is the noise error and a measured systematic ``flux_sys_jy``
in quadrature: the in-image shape error of `measure_forced`, the flux left in
a group image's residual (`residual_excess`) and, per block, the scatter
between overlapping images (`add_overlap_systematic`).
"""

from __future__ import annotations

import logging
import math

import numpy as np
from astropy.table import Table

from dsa110_contimg.data_ingestion.photometry import excess_fraction

__all__ = [
    "add_overlap_systematic",
    "kept_systematic",
    "mark_shared_systematic",
    "noise_errors",
    "set_systematic",
    "table_fraction",
]

log = logging.getLogger(__name__)

_OVERLAP_MIN_SNR = 10.0  # rows that enter the pair fit and the members' weights


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
    by_source: dict[str, list[tuple[float, float, float]]] = {}
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
        for i in np.flatnonzero(_usable(table, noise)):
            by_source.setdefault(str(table["source_name"][i]), []).append(
                (float(flux[i]), float(spread[i]), float(pb[i]))
            )
    diff2, noise2, scale2 = [], [], []
    for rows in by_source.values():
        for (s_a, n_a, p_a), (s_b, n_b, p_b) in zip(rows[:-1], rows[1:], strict=True):
            diff2.append((s_a - s_b) ** 2)
            noise2.append(n_a**2 + n_b**2)
            scale2.append((s_a / p_a) ** 2 + (s_b / p_b) ** 2)
    if not diff2:
        return None
    d2, v2, s2 = np.array(diff2), np.array(noise2), np.array(scale2)
    frac = excess_fraction((d2 - v2) / s2, v2 / s2)
    log.info(
        "flux systematic from overlapping images",
        extra={"n_pairs": len(diff2), "fraction": round(frac, 5)},
    )
    return frac
