"""Forced photometry of point sources at catalogue positions on a restored image.

The flux density of each source is the amplitude of the restoring beam, centred
on the catalogue position, that best fits the image (Condon 1997 matched
filter). Errors use the local rms times the matched filter's noise per unit
rms measured on the image (restored-image noise is correlated like the dirty
beam), plus a systematic part measured from the sources' shapes; the flux
left in the residual (`residual_excess`) and the scatter between overlapping
images (`excess_fraction`, used by the photometry stage) add to it.
Everything here works on in-memory arrays and an astropy WCS.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree

from dsa110_contimg.data_ingestion._photometry_kernels import (
    _as_image,
    _box_fits,
    _nearest_pixel,
    _PixelGaussian,
    _to_pixels,
)
from dsa110_contimg.data_ingestion._photometry_noise import (
    _error_factors,
    _local_rms,
    _shape_fraction,
    excess_fraction,
    residual_excess,
)
from dsa110_contimg.data_ingestion._photometry_peak import (
    _quadratic_peak,  # noqa: F401  (source_finding imports it from here)
    fit_peak_position,
)
from dsa110_contimg.data_ingestion._photometry_types import (
    Beam,
    ForcedPhotometryResult,
    PhotometryFlag,
)

__all__ = [
    "Beam",
    "PhotometryFlag",
    "ForcedPhotometryResult",
    "measure_forced",
    "fit_peak_position",
    "excess_fraction",
    "residual_excess",
]

log = logging.getLogger(__name__)

_BLEND_BEAMS = 1.5


def measure_forced(
    image: ArrayLike,
    wcs: WCS,
    ra_deg: ArrayLike,
    dec_deg: ArrayLike,
    *,
    beam: Beam,
    names: ArrayLike | None = None,
    pb: ArrayLike | None = None,
    min_pb: float = 0.2,
    box_beams: float = 3.0,
    rms_box_beams: tuple[float, float] = (6.0, 15.0),
    rms_map: ArrayLike | None = None,
    noise_beam: Beam | None = None,
) -> ForcedPhotometryResult:
    r"""Measure point-source flux densities at fixed positions on a restored image.

    Parameters
    ----------
    image : array_like, shape (n_y, n_x)
        Restored image, Jy/beam, indexed ``image[y, x]``. NaN marks blanked pixels.
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS of ``image``.
    ra_deg, dec_deg : array_like, shape (n_src,)
        Catalogue positions, degrees (same frame as ``wcs``).
    beam : Beam
        Restoring beam (see :meth:`Beam.from_header`).
    names : array_like of str, shape (n_src,), optional
        Source names; default the indices ``"0", "1", ...``.
    pb : array_like, optional
        Primary-beam response, either an image of shape (n_y, n_x), sampled at
        the nearest pixel, or one value per source, shape (n_src,). Peak, flux,
        error and rms are divided by it. Default: no correction (``pb = 1``).
    min_pb : float
        Sources with ``pb < min_pb`` (or an unknown pb) get
        ``PhotometryFlag.LOW_PB``; they are still measured.
    box_beams : float
        Side of the square fitting box, in beam major axes (FWHM).
    rms_box_beams : (float, float)
        Inner and outer radius of the annulus for the local rms, in beam major
        axes. Pixels within 2 beam major axes of any of the given positions,
        and NaN pixels, are excluded.
    rms_map : array_like, shape (n_y, n_x), optional
        Noise image, Jy/beam; when given it replaces the annulus estimate and
        is read at the nearest pixel.
    noise_beam : Beam, optional
        Gaussian autocorrelation function of the image noise. When given, the
        noise error is computed for it; by default it is measured on the image
        (see Notes), falling back to ``noise_beam = beam`` on images too small
        for 200 source-free fitting boxes.

    Returns
    -------
    ForcedPhotometryResult
        One entry per position, in input order. Positions off the image have
        NaN peak, flux and error and ``PhotometryFlag.EDGE``.

    Warns
    -----
    DataQualityWarning
        The local rms could not be estimated for sources on the image (fewer
        than 20 usable annulus samples); their errors are NaN.

    Notes
    -----
    For data :math:`d_i` with noise :math:`s_i`, the least-squares amplitude of
    the beam :math:`K_i`, centred at the sub-pixel source position, is the
    matched filter (Condon 1997)

    .. math:: S = \frac{\sum_i d_i K_i / s_i^2}{\sum_i K_i^2 / s_i^2}
              = \frac{\sum_i d_i K_i}{\sum_i K_i^2},

    the second form holding for the constant local rms :math:`s` used here.
    :math:`S` is unbiased for a point source at any sub-pixel position, and
    NaN or off-image pixels are simply left out of both sums (the source is
    then flagged; with less than half the kernel weight left, :math:`S` is NaN).

    Restored-image noise is not white: it is correlated over a beam. With
    noise autocorrelation :math:`R_{ij} = s^2 \rho(x_i - x_j)` the exact
    error is

    .. math::
        \sigma_S = s \frac{\sqrt{\sum_{ij} K_i \rho_{ij} K_j}}{\sum_i K_i^2},

    computed on the pixel grid for the Gaussian :math:`\rho` given by
    ``noise_beam``: :math:`\rho = K` gives :math:`\sigma_S \approx
    (2/\sqrt{3})\, s \approx 1.15\, s`; noise smoothed by the beam
    (:math:`\rho` a Gaussian :math:`\sqrt{2}` times wider) gives
    :math:`\sqrt{2}\, s`. The residual noise of a CLEAN image is correlated
    like the dirty beam, sidelobes included, which no Gaussian describes, so by
    default the factor :math:`\sigma_S / s` is measured: the matched filter is
    run over ~3000 fitting boxes at random pixels more than 3 beams from any
    catalogue position, and its robust rms divided by that of the boxes'
    central pixels (with ``rms_map``: the robust rms of the filter divided by
    the map). On DSA-110 snapshot images it is ~1.5. Condon's (1997)
    effective-sample approximation gives :math:`\sigma_S \approx s` for an
    unresolved source; that is the error of the single-pixel ``peak_jy``, which
    is however biased low by up to a few per cent by sub-pixel offsets. The
    white-noise error :math:`s / \sqrt{\sum K_i^2}` would underestimate the
    error by the square root of the number of pixels per beam.

    **Shape systematic.** Clean components spread around a source (sub-pixel
    positions, a PSF that does not match a drifting source's response, few
    pixels per beam) restore it broader than the beam at the same integrated
    flux, and :math:`S` reads it low. A second least-squares fit adds the five
    first and second derivatives of :math:`K` (shifts and changes of width,
    which integrate to zero) and so keeps the integrated flux in the amplitude
    :math:`S'` of :math:`K`. Over the image's unflagged sources with
    :math:`S/\sigma_S \ge 30`, the scatter of :math:`\delta = S' - S` beyond
    its noise (measured like :math:`\sigma_S`) gives a fraction :math:`f`
    (`excess_fraction`); ``flux_sys_jy`` is :math:`f |S|` and ``flux_err_jy``
    is :math:`\sqrt{\sigma_S^2 + f^2 S^2}`. On images that restore sources
    exactly, :math:`f = 0`.

    The primary-beam correction divides :math:`S`, :math:`\sigma_S`, the
    systematic, the peak and :math:`s` by the primary-beam response at the
    source.

    References
    ----------
    .. [1] Condon, J. J. 1997, "Errors in Elliptical Gaussian Fits", PASP 109,
       166. https://doi.org/10.1086/133871
    .. [2] Condon, J. J., Cotton, W. D., Greisen, E. W., et al. 1998, "The NRAO
       VLA Sky Survey", AJ 115, 1693 (NVSS: the reference catalogue and its
       Gaussian-fit flux densities). https://doi.org/10.1086/300337

    Examples
    --------
    >>> import numpy as np
    >>> from dsa110_contimg.testing.images import make_point_source_image
    >>> beam = Beam(15.0, 12.0, 30.0)
    >>> image, wcs, header = make_point_source_image(
    ...     (256, 256), cell_arcsec=3.0, center_ra_deg=150.0, center_dec_deg=40.0,
    ...     sources=[(150.0, 40.0, 0.25)], beam=beam, noise_rms_jy=1e-3,
    ...     rng=np.random.default_rng(1))
    >>> result = measure_forced(image, wcs, [150.0], [40.0], beam=beam)
    >>> bool(abs(result.flux_jy[0] - 0.25) < 5 * result.flux_err_jy[0])
    True
    """
    data = _as_image(image, keep_float32=True)  # computed in float64
    ra, dec, x, y = _to_pixels(wcs, ra_deg, dec_deg)
    n_src = ra.size
    if not box_beams > 0:
        msg = f"box_beams must be positive, got {box_beams}"
        raise ValueError(msg)
    pixel_beam = _PixelGaussian.from_beam(beam, wcs)
    major_pix = pixel_beam.major_pix
    half = max(1, math.ceil(box_beams * major_pix / 2.0))
    ix, iy, inside = _nearest_pixel(x, y, data.shape)
    log.debug(
        "forced photometry",
        extra={"n_src": n_src, "major_pix": major_pix, "box_pix": 2 * half + 1},
    )
    flux, fraction, has_nan, at_edge, amplitude = _box_fits(
        data, x, y, pixel_beam, half
    )
    rms = _local_rms(data, x, y, inside, major_pix, rms_box_beams, rms_map)
    mf_factor, delta_factor = _error_factors(
        data, wcs, x, y, pixel_beam, half, noise_beam, rms_map
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        noise_err = rms * mf_factor / np.sqrt(fraction)
    peak = np.where(
        inside,
        data[np.where(inside, iy, 0), np.where(inside, ix, 0)].astype(np.float64),
        np.nan,
    )
    pb_value = _pb_values(pb, data.shape, iy, ix, inside)
    blended = _blended(ra, dec, _BLEND_BEAMS * beam.major_arcsec / 3600.0)
    low_pb = (pb_value < min_pb) | (inside & ~np.isfinite(pb_value))
    flags = _flags(inside, at_edge, has_nan, blended, low_pb)
    flux[~inside] = np.nan
    noise_err[~inside] = np.nan
    delta = amplitude - flux
    shape_frac = _shape_fraction(
        flux, delta, noise_err, rms * delta_factor, inside & (flags == 0)
    )
    log.debug(
        "photometry errors",
        extra={"mf_factor": mf_factor, "shape_fraction": shape_frac},
    )
    flux_sys = shape_frac * np.abs(flux)
    flux_err = np.hypot(noise_err, flux_sys)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(pb_value > 0, 1.0 / pb_value, np.nan)
        snr = flux / noise_err
    return ForcedPhotometryResult(
        name=_names(names, n_src),
        ra_deg=ra,
        dec_deg=dec,
        peak_jy=peak * scale,
        flux_jy=flux * scale,
        flux_err_jy=flux_err * scale,
        rms_jy=rms * scale,
        x_pix=x,
        y_pix=y,
        pb=pb_value,
        snr=snr,
        flags=flags,
        flux_sys_jy=flux_sys * scale,
    )


def _flags(
    inside: NDArray[np.bool_],
    at_edge: NDArray[np.bool_],
    has_nan: NDArray[np.bool_],
    blended: NDArray[np.bool_],
    below_min_pb: NDArray[np.bool_],
) -> NDArray[np.int32]:
    flags = np.zeros(inside.size, dtype=np.int32)
    flags[~inside | at_edge] |= PhotometryFlag.EDGE
    flags[has_nan] |= PhotometryFlag.NAN
    flags[below_min_pb] |= PhotometryFlag.LOW_PB
    flags[blended] |= PhotometryFlag.BLENDED
    return flags


def _names(names: ArrayLike | None, n_src: int) -> NDArray[np.str_]:
    if names is None:
        return np.array([str(k) for k in range(n_src)], dtype=str)
    array = np.array(names, dtype=str, ndmin=1)
    if array.shape != (n_src,):
        msg = f"names must have shape ({n_src},), got {array.shape}"
        raise ValueError(msg)
    return array


def _pb_values(
    pb: ArrayLike | None,
    shape: tuple[int, ...],
    iy: NDArray,
    ix: NDArray,
    inside: NDArray,
) -> NDArray[np.float64]:
    n_src = iy.size
    if pb is None:
        return np.ones(n_src)
    pb_array = np.asarray(pb, dtype=np.float64)
    if pb_array.shape == shape:
        return np.where(
            inside, pb_array[np.where(inside, iy, 0), np.where(inside, ix, 0)], np.nan
        )
    if pb_array.shape == (n_src,):
        return pb_array.copy()
    msg = (
        f"pb must have the image shape {shape} or one value per source ({n_src},), "
        f"got {pb_array.shape}"
    )
    raise ValueError(msg)


def _blended(ra_deg: NDArray, dec_deg: NDArray, radius_deg: float) -> NDArray[np.bool_]:
    """Return True for sources with another source within ``radius_deg``."""
    blended = np.zeros(ra_deg.size, dtype=bool)
    ok = np.flatnonzero(np.isfinite(ra_deg) & np.isfinite(dec_deg))
    ra, dec = np.deg2rad(ra_deg[ok]), np.deg2rad(dec_deg[ok])
    xyz = np.column_stack(
        [np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)]
    )
    chord = 2.0 * math.sin(math.radians(radius_deg) / 2.0)
    pairs = cKDTree(xyz).query_pairs(chord, output_type="ndarray")
    blended[ok[pairs.ravel()]] = True
    return blended
