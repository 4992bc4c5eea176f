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

__all__ = [
    "add_overlap_systematic",
    "overlap_excess",
    "set_systematic",
    "table_fraction",
]

log = logging.getLogger(__name__)

_OVERLAP_MIN_SNR = 10.0


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


def set_systematic(table: Table, fraction: float, tau: float) -> None:
    r"""Set ``flux_sys_jy`` to :math:`\sqrt{(f S)^2 + (\tau n)^2}` and the total error.

    ``n`` is the noise error (``flux_err_jy`` less the current systematic);
    ``f`` and ``tau`` are kept in ``table.meta`` (``sys_fraction``,
    ``residual_excess``).
    """
    if len(table):
        flux = np.abs(np.asarray(table["flux_jy"], dtype=np.float64))
        err = np.asarray(table["flux_err_jy"], dtype=np.float64)
        old = np.asarray(table["flux_sys_jy"], dtype=np.float64)
        # the noise error: the total less the systematic it holds now
        noise = np.sqrt(np.maximum(err**2 - np.nan_to_num(old) ** 2, 0.0))
        sys = np.hypot(fraction * flux, tau * noise)
        table["flux_sys_jy"] = sys
        table["flux_err_jy"] = np.hypot(noise, sys)
    table.meta["sys_fraction"] = float(fraction)
    table.meta["residual_excess"] = float(tau)


def add_overlap_systematic(tables: list[Table]) -> list[Table]:
    r"""Measure the flux-scale scatter between overlapping images and add it.

    Consecutive group images overlap, so most sources are measured on two or
    three images at different places in the primary beam and, after gain
    drift, with different residual calibration errors. For every pair of
    unflagged measurements of a source on two images (``snr >= 30``) the
    difference :math:`d = S_A - S_B` has variance
    :math:`n_A^2 + n_B^2 + f^2 (S_A^2 + S_B^2)`, with :math:`n` the noise
    errors and :math:`f` the fractional error per image that the noise does
    not explain; :math:`f` is estimated from all pairs by
    `~dsa110_contimg.data_ingestion.photometry.excess_fraction`.

    Each table's systematic fraction (``meta['sys_fraction']``, the in-image
    shape error of `measure_forced`) becomes the larger of itself and
    :math:`f`; ``flux_sys_jy`` becomes :math:`\sqrt{(f S)^2 + (\tau n)^2}`
    with :math:`\tau` the image's residual excess (``meta['residual_excess']``,
    see `~dsa110_contimg.data_ingestion.photometry.residual_excess`) and
    ``flux_err_jy`` the noise and systematic in quadrature. Mosaics, weighted
    means of the images, get the same :math:`f` and the rms :math:`\tau` of
    the images. With neither overlaps nor residual excess the tables are
    returned unchanged.

    Parameters
    ----------
    tables : list of astropy.table.Table
        One table per image or mosaic (`measure_image`, `measure_mosaic`) of
        one block.

    Returns
    -------
    list of astropy.table.Table
        The tables, updated copies where the systematic changed.
    """
    overlap = _overlap_excess(tables)
    frac, tau_pairs = overlap if overlap is not None else (0.0, 0.0)
    taus = [
        float(t.meta.get("residual_excess", 0.0))
        for t in tables
        if len(t) and str(t["image_kind"][0]) == "image"
    ]
    tau_images = float(np.sqrt(np.mean(np.square(taus)))) if taus else 0.0
    tau_images = max(tau_images, tau_pairs)
    if overlap is None and tau_images == 0.0:
        return list(tables)
    out = []
    for table in tables:
        if not len(table):
            out.append(table)
            continue
        own = float(table.meta.get("sys_fraction", table_fraction(table)))
        tau = float(table.meta.get("residual_excess", 0.0))
        if str(table["image_kind"][0]) == "image":
            tau = max(tau, tau_pairs)
        else:
            tau = max(tau, tau_images)  # a mosaic inherits its members' excess
        updated = table.copy()
        set_systematic(updated, max(own, frac), tau)
        out.append(updated)
    return out


def _overlap_excess(tables: list[Table]) -> tuple[float, float] | None:
    """Return (f, tau) from pairs of images measuring one source; None without pairs."""
    by_source: dict[str, list[tuple[float, float]]] = {}
    for table in tables:
        if not len(table) or str(table["image_kind"][0]) != "image":
            continue
        flux = np.asarray(table["flux_jy"], dtype=np.float64)
        err = np.asarray(table["flux_err_jy"], dtype=np.float64)
        sys = np.asarray(table["flux_sys_jy"], dtype=np.float64)
        noise = np.sqrt(np.maximum(err**2 - sys**2, 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            good = (np.asarray(table["flags"]) == 0) & np.isfinite(flux)
            good &= np.asarray(table["snr"], dtype=np.float64) >= _OVERLAP_MIN_SNR
        for i in np.flatnonzero(good & (noise > 0)):
            by_source.setdefault(str(table["source_name"][i]), []).append(
                (float(flux[i]), float(noise[i]))
            )
    diff2, noise2, scale2 = [], [], []
    for rows in by_source.values():
        for (s_a, n_a), (s_b, n_b) in zip(rows[:-1], rows[1:], strict=True):
            diff2.append((s_a - s_b) ** 2)
            noise2.append(n_a**2 + n_b**2)
            scale2.append(s_a**2 + s_b**2)
    if not diff2:
        return None
    frac, tau = overlap_excess(np.array(diff2), np.array(noise2), np.array(scale2))
    log.info(
        "flux systematic from overlapping images",
        extra={"n_pairs": len(diff2), "fraction": round(frac, 5), "tau": round(tau, 3)},
    )
    return frac, tau


def overlap_excess(
    diff2: np.ndarray, noise2: np.ndarray, scale2: np.ndarray
) -> tuple[float, float]:
    r"""Fit the variance of pair differences with a fractional and a noise excess.

    Parameters
    ----------
    diff2 : ndarray, shape (n,)
        Squared differences of two measurements of one source, Jy^2.
    noise2 : ndarray, shape (n,)
        Sum of their noise variances :math:`n_A^2 + n_B^2`, Jy^2.
    scale2 : ndarray, shape (n,)
        Sum of their squared fluxes :math:`S_A^2 + S_B^2`, Jy^2.

    Returns
    -------
    (float, float)
        :math:`f, \tau \ge 0` of the model
        :math:`E[d^2] = (1 + \tau^2)(n_A^2 + n_B^2) + f^2 (S_A^2 + S_B^2)`,
        fitted by weighted least squares (weights :math:`1/E[d^2]^2`, the
        inverse variance of :math:`d^2`, iterated); a term whose estimate is
        negative is set to 0 and the other refitted.
    """
    excess = diff2 - noise2
    design = np.column_stack([noise2, scale2])
    coef = np.zeros(2)
    for _ in range(5):
        model = noise2 * (1.0 + coef[0]) + scale2 * coef[1]
        w = 1.0 / np.maximum(model, 1e-300) ** 2
        coef = _nonneg_wls(design, excess, w)
    return math.sqrt(coef[1]), math.sqrt(coef[0])


def _nonneg_wls(design: np.ndarray, target: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Return the weighted least-squares coefficients, each clipped at 0 (2 terms)."""
    best = np.zeros(design.shape[1])
    normal = design.T @ (w[:, None] * design)
    if np.linalg.cond(normal) < 1e12:
        full = np.linalg.solve(normal, design.T @ (w * target))
        if np.all(full >= 0):
            return full
    best_cost = np.inf
    for k in range(design.shape[1]):
        col = design[:, k]
        value = max(float(np.sum(w * col * target) / np.sum(w * col * col)), 0.0)
        cost = float(np.sum(w * (target - value * col) ** 2))
        if cost < best_cost:
            best_cost = cost
            best = np.where(np.arange(design.shape[1]) == k, value, 0.0)
    return best
