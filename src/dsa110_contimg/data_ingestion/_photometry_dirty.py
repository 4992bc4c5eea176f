"""Forced photometry that reads a source's own clean components through the dirty beam.

The restored image puts a source's clean components back with the restoring
beam; where the clean spread them, absorbed noise into them or stopped early,
the matched filter on it reads an error the residual's noise does not show.
`measure_dirty_equivalent` instead measures what the dirty image holds at
the source once every *other* source's components are taken out:
the residual plus the source's own components convolved with the dirty beam.
Everything here works on in-memory arrays and an astropy WCS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree

from dsa110_contimg.data_ingestion._photometry_kernels import (
    _as_image,
    _estimator_vectors,
    _matched_filter,
    _nearest_pixel,
    _PixelGaussian,
    _to_pixels,
)
from dsa110_contimg.data_ingestion._photometry_noise import (
    _error_factors,
    _local_rms,
    _psf_filter_fraction,
)
from dsa110_contimg.data_ingestion._photometry_sidelobes import (
    SIDELOBE_MIN_SNR,
    sidelobe_noise,
)
from dsa110_contimg.data_ingestion._photometry_types import Beam

__all__ = ["DirtyEquivalent", "measure_dirty_equivalent"]


@dataclass(frozen=True, slots=True)
class DirtyEquivalent:
    """Apparent (not primary-beam corrected) fluxes and noise errors, Jy.

    ``noise_jy`` is the background noise error and ``sidelobe_jy`` the
    error from bright sources' sidelobes at the position (`sidelobe_noise`);
    the total error is their quadrature sum. ``eta`` is the matched filter of
    the dirty beam at its peak: the fraction of a dirty-beam-shaped flux that
    the restoring-beam filter recovers. ``background_rms`` is the residual's
    robust rms away from bright sources (Jy/beam) that ``noise_jy`` scales.
    """

    flux_jy: NDArray[np.float64]
    noise_jy: NDArray[np.float64]
    sidelobe_jy: NDArray[np.float64]
    own_model_jy: NDArray[np.float64]
    eta: float
    background_rms: float = float("nan")


def measure_dirty_equivalent(
    residual: ArrayLike,
    model: ArrayLike,
    psf: ArrayLike,
    wcs: WCS,
    ra_deg: ArrayLike,
    dec_deg: ArrayLike,
    *,
    beam: Beam,
    box_beams: float = 3.0,
    own_radius_beams: float = 1.5,
    rms_box_beams: tuple[float, float] = (6.0, 15.0),
    subtracted_jy: ArrayLike | None = None,
) -> DirtyEquivalent:
    r"""Measure fluxes on the residual plus each source's own clean components.

    Parameters
    ----------
    residual : array_like, shape (n_y, n_x)
        The imager's residual image, Jy/beam.
    model : array_like, shape (n_y, n_x)
        The clean model (components), Jy/pixel, on the same grid.
    psf : array_like, shape (m_y, m_x)
        The dirty beam (peak 1) on the image's pixels, at least the fitting
        box plus ``own_radius_beams`` from its peak on every side.
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS of ``residual``.
    ra_deg, dec_deg : array_like, shape (n_src,)
        Catalogue positions, degrees.
    beam : Beam
        Restoring beam: the matched filter's kernel :math:`K`.
    box_beams : float
        Side of the fitting box, in beam major axes (as in `measure_forced`).
    own_radius_beams : float
        Components within this many beam major axes (FWHM) of a position are
        that source's own; all others are left subtracted.
    rms_box_beams : (float, float)
        Annulus of the local rms of the residual, beam major axes: it decides
        which sources are bright enough for a sidelobe profile.
    subtracted_jy : array_like, shape (n_src,), optional
        Apparent flux of each position that was subtracted from the
        visibilities before imaging (in neither the residual nor the model,
        e.g. `bright_sources.fit_and_subtract`): added to its flux, and
        counted when judging which sources are bright (their residual rings
        hold their calibration errors' sidelobes all the same). None: 0.

    Returns
    -------
    DirtyEquivalent
        Per position, in input order; NaN off the image or where the fitting
        box is less than half on it.

    Notes
    -----
    With dirty image :math:`D`, model :math:`M` and dirty beam :math:`P`, the
    residual is :math:`R = D - M \ast P`. For source :math:`k` with own
    components :math:`M_k`, :math:`R + M_k \ast P` is the dirty image with
    every other source's components removed. The matched filter
    :math:`\langle K_k, \cdot\rangle / \langle K, K\rangle` of a point source
    of flux :math:`S` in it is :math:`\eta S`, so

    .. math::
        S_k = \frac{1}{\eta}\Big[\mathrm{mf}_k(R)
              + \sum_{c \in M_k} m_c\, \mathrm{mf}(P)(x_k - x_c)\Big],

    :math:`\mathrm{mf}(P)(\delta)` being the matched filter of the dirty beam
    at offset :math:`\delta` from its peak (:math:`\mathrm{mf}(P)(0) = \eta`).
    :math:`S_k` does not depend on how the clean distributed the source's flux
    among its components, nor on how much of it it left in the residual, and
    its error is that of the residual's noise read by the same filter: an rms
    of :math:`R` times the filter's noise per unit rms measured on
    source-free boxes of :math:`R`, divided by :math:`\eta`. The rms is split
    (`sidelobe_noise`): the background away from bright sources
    (``noise_jy``) and, for a source within 16 beams of sources brighter than
    `SIDELOBE_MIN_SNR` (judged with the local annulus rms), the excess rms of
    their residual rings at its distance (``sidelobe_jy``).
    Neighbours within ``own_radius_beams`` are read with weight
    :math:`\mathrm{mf}(P)(\delta)/\eta`, as a restored image reads them with
    the restoring beam (such pairs are flagged ``BLENDED`` anyway).
    """
    res = _as_image(residual, "residual", keep_float32=True)
    mod = np.nan_to_num(_as_image(model, "model", keep_float32=True))
    dirty_beam = _as_image(psf, "psf", keep_float32=True)
    if mod.shape != res.shape:
        msg = f"model shape {mod.shape} differs from residual {res.shape}"
        raise ValueError(msg)
    if not own_radius_beams >= 0:
        msg = f"own_radius_beams must be >= 0, got {own_radius_beams}"
        raise ValueError(msg)
    _, _, x, y = _to_pixels(wcs, ra_deg, dec_deg)
    pixel_beam = _PixelGaussian.from_beam(beam, wcs)
    major_pix = pixel_beam.major_pix
    half = max(1, math.ceil(box_beams * major_pix / 2.0))
    eta = _psf_filter_fraction(dirty_beam, _estimator_vectors(pixel_beam, half)[0])
    if not eta > 0:
        msg = (
            f"the dirty beam ({dirty_beam.shape}) is too small for a fitting box "
            f"of {2 * half + 1} pixels around its peak"
        )
        raise ValueError(msg)
    mf_res, fraction, _, _ = _matched_filter(res, x, y, pixel_beam, half)
    own = _own_components(mod, dirty_beam, x, y, pixel_beam, half, own_radius_beams)
    _, _, inside = _nearest_pixel(x, y, res.shape)
    rms = _local_rms(res, x, y, inside, major_pix, rms_box_beams, None)
    mf_factor, _ = _error_factors(res, wcs, x, y, pixel_beam, half, None, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = mf_factor / np.sqrt(fraction) / eta
        flux = (mf_res + own) / eta
        if subtracted_jy is not None:
            flux = flux + np.asarray(subtracted_jy, dtype=float)
        bright = np.nan_to_num(flux / (rms * factor)) >= SIDELOBE_MIN_SNR
    finite_rms = rms[inside & np.isfinite(rms)]
    background, sidelobe = sidelobe_noise(
        res,
        x,
        y,
        inside,
        bright,
        major_pix,
        float(np.median(finite_rms)) if finite_rms.size else np.nan,
    )
    noise = np.where(np.isfinite(rms), background * factor, np.nan)
    sidelobe = sidelobe * factor
    for values in (flux, noise, sidelobe):
        values[~inside] = np.nan
    return DirtyEquivalent(flux, noise, sidelobe, own, float(eta), float(background))


def _own_components(
    model: NDArray,
    psf: NDArray,
    x: NDArray,
    y: NDArray,
    pixel_beam: _PixelGaussian,
    half: int,
    own_radius_beams: float,
) -> NDArray[np.float64]:
    """Return, per position, the sum of its components times mf(P) at their offset."""
    own = np.zeros(x.size)
    cy, cx = np.nonzero(model)
    finite = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    if cy.size == 0 or finite.size == 0:
        return own
    radius = own_radius_beams * pixel_beam.major_pix
    lists = cKDTree(np.column_stack([cx, cy])).query_ball_point(
        np.column_stack([x[finite], y[finite]]), radius
    )
    counts = np.array([len(c) for c in lists], dtype=np.intp)
    if counts.sum() == 0:
        return own
    src = np.repeat(finite, counts)
    comp = np.concatenate([np.asarray(c, dtype=np.intp) for c in lists if c])
    peak = np.argmax(psf)
    py, px = np.unravel_index(peak, psf.shape)
    # sum_p K(p - x_k) P(p - x_c) is the filter of the dirty beam centred at
    # its peak plus (x_k - x_c)
    weight, _, _, at_edge = _matched_filter(
        psf,
        px + (x[src] - cx[comp]),
        py + (y[src] - cy[comp]),
        pixel_beam,
        half,
    )
    if np.any(at_edge):
        msg = (
            f"the dirty beam ({psf.shape}) is too small: it must extend "
            f"{half} pixels beyond the own-component radius ({radius:.1f} pixels)"
        )
        raise ValueError(msg)
    np.add.at(own, src, model[cy[comp], cx[comp]].astype(np.float64) * weight)
    return own
