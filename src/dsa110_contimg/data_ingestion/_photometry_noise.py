"""Noise and systematic errors of forced photometry.

The local rms (an annulus around each source, or a noise map), the noise of
the matched filter per unit rms measured on source-free boxes of the image
(restored-image noise is correlated like the dirty beam), the fractional
shape systematic from bright sources (`excess_fraction`) and the flux left
in the imager's residual (`residual_excess`).
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
from astropy.stats import mad_std
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray

from dsa110_contimg.data_ingestion import _photometry_compiled as _compiled
from dsa110_contimg.data_ingestion._photometry_kernels import (
    _as_image,
    _estimator_vectors,
    _exclusion_mask,
    _matched_filter,
    _native,
    _nearest_pixel,
    _PixelGaussian,
    _spatial_order,
    _to_pixels,
    _unorder,
)
from dsa110_contimg.data_ingestion._photometry_types import Beam
from dsa110_contimg.exceptions import DataQualityWarning

__all__ = ["excess_fraction", "residual_excess"]

log = logging.getLogger("dsa110_contimg.data_ingestion.photometry")

_EXCLUDE_BEAMS = 2.0
_N_RMS_SAMPLES = 1500
_MIN_RMS_SAMPLES = 20
_N_NOISE_SAMPLES = 3000
_MIN_NOISE_SAMPLES = 200
_NOISE_EXCLUDE_BEAMS = 3.0
_SHAPE_MIN_SNR = 30.0


def _correlated_factor(vector: NDArray, noise_beam: _PixelGaussian) -> float:
    """Return ``sqrt(v^T rho v)`` for unit-rms noise correlated like ``noise_beam``."""
    from scipy.signal import fftconvolve  # ~0.5 s to import; rarely needed

    half = vector.shape[0] // 2
    lags = np.arange(-2 * half, 2 * half + 1, dtype=np.float64)
    correlation = noise_beam.evaluate(lags[None, :], lags[:, None])
    smoothed = fftconvolve(vector, correlation, mode="same")
    return float(np.sqrt(np.sum(vector * smoothed)))


def _robust_sigma(values: NDArray[np.float64]) -> float:
    values = values[np.isfinite(values)]
    return float(mad_std(values))


def _noise_factors(
    data: NDArray,
    half: int,
    vectors: tuple[NDArray, NDArray],
    exclude: NDArray[np.bool_],
    rms_map: NDArray | None,
    *,
    absolute: bool = False,
) -> tuple[float, float] | None:
    """Measure the noise of the matched filter and of the shape difference.

    Boxes at random source-free pixels carry only noise: the robust rms of the
    matched filter over them, divided by the robust rms of their central
    pixels (or, with a noise map, of the filter divided by the map), is the
    error of the matched filter per unit pixel rms, whatever the correlation
    of the noise (with ``absolute``: the robust rms themselves, Jy). Returns
    None when fewer than 200 complete boxes are found.
    """
    ny, nx = data.shape
    if ny <= 2 * half or nx <= 2 * half:
        return None
    rng = np.random.default_rng(0)  # reproducible errors for one image
    n_try = 4 * _N_NOISE_SAMPLES
    iy = rng.integers(half, ny - half, n_try)
    ix = rng.integers(half, nx - half, n_try)
    free = ~exclude[iy, ix]
    if free.sum() >= _MIN_NOISE_SAMPLES:
        iy, ix = iy[free], ix[free]
    iy, ix = iy[:_N_NOISE_SAMPLES], ix[:_N_NOISE_SAMPLES]
    mf_vec, delta_vec = vectors
    mf, delta = _compiled.box_dots(
        _native(data), ix.astype(np.intp), iy.astype(np.intp), mf_vec, delta_vec
    )
    centre = data[iy, ix].astype(np.float64)
    if rms_map is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where(rms_map[iy, ix] > 0, 1.0 / rms_map[iy, ix], np.nan)
        mf, delta, norm = mf * scale, delta * scale, 1.0
    else:
        norm = None
    good = np.isfinite(mf) & np.isfinite(delta)
    if good.sum() < _MIN_NOISE_SAMPLES:
        return None
    if absolute:
        norm = 1.0
    elif norm is None:
        norm = _robust_sigma(centre[good])
    if not norm > 0:
        return None
    return _robust_sigma(mf[good]) / norm, _robust_sigma(delta[good]) / norm


def excess_fraction(excess2: ArrayLike, noise2: ArrayLike) -> float:
    r"""Return the fractional error that explains a scatter beyond the noise.

    Parameters
    ----------
    excess2 : array_like, shape (n,)
        Per estimate, the squared discrepancy less its noise variance, in units
        of the squared flux: :math:`(\delta_i^2 - v_i) / S_i^2`.
    noise2 : array_like, shape (n,)
        The noise variance in the same units, :math:`v_i / S_i^2`.

    Returns
    -------
    float
        :math:`f \ge 0` with :math:`E[\delta_i^2] = v_i + f^2 S_i^2`: the
        inverse-variance-weighted mean of ``excess2`` (each estimate has
        variance :math:`\propto (v_i/S_i^2 + f^2)^2`, iterated from the plain
        mean), 0 when the scatter is all noise or there are no estimates.
    """
    ratio2 = np.asarray(excess2, dtype=np.float64)
    base2 = np.asarray(noise2, dtype=np.float64)
    ok = np.isfinite(ratio2) & np.isfinite(base2)
    if not ok.any():
        return 0.0
    ratio2, base2 = ratio2[ok], base2[ok]
    frac2 = max(float(np.mean(ratio2)), 0.0)
    for _ in range(3):
        weight = 1.0 / np.maximum(base2 + frac2, 1e-300) ** 2
        frac2 = max(float(np.sum(weight * ratio2) / np.sum(weight)), 0.0)
    return math.sqrt(frac2)


def _shape_fraction(
    flux: NDArray,
    delta: NDArray,
    noise_err: NDArray,
    delta_err: NDArray,
    usable: NDArray[np.bool_],
) -> float:
    """Return the image's fractional shape error (see `measure_forced`, Notes)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.abs(flux) / noise_err
        sel = usable & np.isfinite(delta) & np.isfinite(delta_err)
        sel &= snr >= _SHAPE_MIN_SNR
    if not sel.any():
        return 0.0
    return excess_fraction(
        (delta[sel] ** 2 - delta_err[sel] ** 2) / flux[sel] ** 2,
        (delta_err[sel] / flux[sel]) ** 2,
    )


# astropy.stats.mad_std's factor, 1 / Phi^-1(3/4)
_MAD_STD_SCALE = 1.482602218505602


def _annulus_rms(
    image: NDArray,
    x: NDArray,
    y: NDArray,
    radii_pix: tuple[float, float],
    exclude: NDArray[np.bool_],
    fallback: NDArray[np.bool_],
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Return the robust rms in an annulus around each position.

    Pixels in ``exclude`` are left out unless too few remain at a position
    in ``fallback`` (see `_local_rms`); the second array says where.
    """
    r_in, r_out = radii_pix
    # Restored-image noise is correlated over a beam, so a sparse grid of
    # samples carries almost all the information of every pixel.
    stride = max(
        1, math.ceil(math.sqrt(math.pi * (r_out**2 - r_in**2) / _N_RMS_SAMPLES))
    )
    steps = np.arange(0, math.ceil(r_out) + 1, stride)
    steps = np.concatenate([-steps[:0:-1], steps])
    oy, ox = np.meshgrid(steps, steps, indexing="ij")
    radius = np.hypot(ox, oy)
    ring = (radius >= r_in) & (radius <= r_out)
    oy, ox = oy[ring], ox[ring]
    ix, iy, _ = _nearest_pixel(x, y, image.shape)
    order = _spatial_order(ix, iy)
    rms, unmasked = _compiled.annulus_rms(
        _native(image),
        ix[order],
        iy[order],
        oy.astype(np.intp),
        ox.astype(np.intp),
        exclude,
        bool(exclude.any()),
        _MIN_RMS_SAMPLES,
        _MAD_STD_SCALE,
        fallback[order],
    )
    return _unorder(rms, order), _unorder(unmasked, order)


def residual_excess(
    residual: ArrayLike,
    psf: ArrayLike,
    wcs: WCS,
    ra_deg: ArrayLike,
    dec_deg: ArrayLike,
    *,
    beam: Beam,
    box_beams: float = 3.0,
) -> float:
    r"""Return the excess residual at catalogue positions, relative to the noise.

    Parameters
    ----------
    residual : array_like, shape (n_y, n_x)
        The imager's residual image, Jy/beam.
    psf : array_like, shape (m_y, m_x)
        The imager's point-spread function (peak 1), on the image's pixels.
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS of ``residual``.
    ra_deg, dec_deg : array_like, shape (n_src,)
        Catalogue positions, degrees.
    beam : Beam
        Restoring beam.
    box_beams : float
        Side of the fitting box, in beam major axes (as in `measure_forced`).

    Returns
    -------
    float
        :math:`\tau = \frac{1 - \eta}{\eta}
        \sqrt{\max(0, \langle m_s^2 \rangle / \sigma_m^2 - 1)}`, with
        :math:`m_s` the matched filter on the residual at the catalogue
        positions on the image, :math:`\sigma_m` its robust rms at random
        source-free positions and :math:`\eta` the matched filter of the PSF
        (the fraction of a dirty-beam-shaped flux that the restoring-beam
        filter recovers); 0 with fewer than 3 positions or 200 free boxes.

    Notes
    -----
    After a complete deconvolution the residual at a source is noise like
    anywhere else. Flux the clean left behind (stopped at ``niter``, a mask
    that missed the source) stays in the restored image in the shape of the
    dirty beam, of which the matched filter recovers only :math:`\eta`: a
    residual :math:`m_s` at a source means an error :math:`(1/\eta - 1) m_s`
    on its flux. The rms of that error, beyond what the noise of the residual
    explains, is :math:`\tau` times the noise: the error of a forced
    measurement on that image is :math:`\sqrt{1 + \tau^2}` times its noise
    error.
    """
    data = _as_image(residual, "residual", keep_float32=True)
    _, _, x, y = _to_pixels(wcs, ra_deg, dec_deg)
    pixel_beam = _PixelGaussian.from_beam(beam, wcs)
    half = max(1, math.ceil(box_beams * pixel_beam.major_pix / 2.0))
    mf, fraction, has_nan, at_edge = _matched_filter(data, x, y, pixel_beam, half)
    at_source = mf[np.isfinite(mf) & ~has_nan & ~at_edge & (fraction > 0.999)]
    if at_source.size < 3:
        return 0.0
    exclude = _exclusion_mask(
        data.shape, x, y, _NOISE_EXCLUDE_BEAMS * pixel_beam.major_pix
    )
    vectors = _estimator_vectors(pixel_beam, half)
    factors = _noise_factors(data, half, vectors, exclude, None, absolute=True)
    if factors is None or not factors[0] > 0:
        return 0.0
    eta = _psf_filter_fraction(_as_image(psf, "psf", keep_float32=True), vectors[0])
    if not 0 < eta <= 1:
        return 0.0
    ratio = float(np.mean(at_source**2)) / factors[0] ** 2
    return (1.0 - eta) / eta * math.sqrt(max(ratio - 1.0, 0.0))


def _psf_filter_fraction(psf: NDArray, mf_vec: NDArray) -> float:
    """Return the matched filter of the PSF at its peak (NaN if it does not fit)."""
    half = mf_vec.shape[0] // 2
    peak = np.argmax(psf)  # the first NaN if there is one: then nanargmax
    if np.isnan(psf.flat[peak]):
        peak = np.nanargmax(psf)
    cy, cx = np.unravel_index(peak, psf.shape)
    if not (half <= cy < psf.shape[0] - half and half <= cx < psf.shape[1] - half):
        return math.nan
    box = psf[cy - half : cy + half + 1, cx - half : cx + half + 1]
    return float(np.sum(box * mf_vec) / psf[cy, cx])


def _error_factors(
    data: NDArray,
    wcs: WCS,
    x: NDArray,
    y: NDArray,
    pixel_beam: _PixelGaussian,
    half: int,
    noise_beam: Beam | None,
    rms_map: ArrayLike | None,
) -> tuple[float, float]:
    """Return the noise of the matched filter and of the shape difference per unit rms.

    Measured on the image (`_noise_factors`) unless ``noise_beam`` is given or
    too few source-free boxes exist; then computed for Gaussian-correlated
    noise (``noise_beam``, default the restoring beam).
    """
    vectors = _estimator_vectors(pixel_beam, half)
    if noise_beam is None:
        major_pix = pixel_beam.major_pix
        exclude = _exclusion_mask(data.shape, x, y, _NOISE_EXCLUDE_BEAMS * major_pix)
        noise_map = None if rms_map is None else _as_image(rms_map, "rms_map")
        measured = _noise_factors(data, half, vectors, exclude, noise_map)
        if measured is not None:
            return measured
        log.debug("too few source-free boxes; Gaussian noise correlation assumed")
    noise = (
        pixel_beam if noise_beam is None else _PixelGaussian.from_beam(noise_beam, wcs)
    )
    return _correlated_factor(vectors[0], noise), _correlated_factor(vectors[1], noise)


def _local_rms(
    data: NDArray,
    x: NDArray,
    y: NDArray,
    inside: NDArray[np.bool_],
    major_pix: float,
    rms_box_beams: tuple[float, float],
    rms_map: ArrayLike | None,
) -> NDArray[np.float64]:
    if rms_map is not None:
        noise_map = _as_image(rms_map, "rms_map")
        if noise_map.shape != data.shape:
            msg = f"rms_map shape {noise_map.shape} differs from image {data.shape}"
            raise ValueError(msg)
        ix, iy, _ = _nearest_pixel(x, y, data.shape)
        return np.where(
            inside, noise_map[np.where(inside, iy, 0), np.where(inside, ix, 0)], np.nan
        )
    r_in, r_out = (float(r) * major_pix for r in rms_box_beams)
    if not 0 <= r_in < r_out:
        msg = (
            "rms_box_beams must be (inner, outer) with 0 <= inner < outer, "
            f"got {rms_box_beams}"
        )
        raise ValueError(msg)
    exclude = _exclusion_mask(data.shape, x, y, _EXCLUDE_BEAMS * major_pix)
    # A dense catalogue (a source every few beams) masks whole annuli; the
    # unmasked annulus of a source on the image still gives the noise, the
    # median absolute deviation being robust to the few pixels of neighbouring
    # sources in it.
    rms, unmasked = _annulus_rms(data, x, y, (r_in, r_out), exclude, inside)
    if unmasked.any():
        log.debug(
            "annulus rms without masking for crowded sources",
            extra={"n_sources": int(np.sum(unmasked))},
        )
    n_missing = int(np.sum(inside & ~np.isfinite(rms)))
    if n_missing:
        warnings.warn(
            f"local rms unavailable for {n_missing} source(s) on the image "
            "(too few unmasked annulus pixels); their flux errors are NaN",
            DataQualityWarning,
            stacklevel=3,
        )
    return rms
