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

import enum
import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.stats import mad_std
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray
from scipy.signal import fftconvolve
from scipy.spatial import cKDTree

from dsa110_contimg.exceptions import DataQualityWarning, InputDataError

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

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_BLEND_BEAMS = 1.5
_EXCLUDE_BEAMS = 2.0
_MIN_WEIGHT_FRACTION = 0.5
_N_RMS_SAMPLES = 1500
_MIN_RMS_SAMPLES = 20
_CHUNK_PIXELS = 1_000_000
_N_NOISE_SAMPLES = 3000
_MIN_NOISE_SAMPLES = 200
_NOISE_EXCLUDE_BEAMS = 3.0
_SHAPE_MIN_SNR = 30.0

_RESULT_COLUMNS = (
    "name",
    "ra_deg",
    "dec_deg",
    "peak_jy",
    "flux_jy",
    "flux_err_jy",
    "rms_jy",
    "x_pix",
    "y_pix",
    "pb",
    "snr",
    "flags",
    "flux_sys_jy",
)
_UNITS = {
    "ra_deg": "deg",
    "dec_deg": "deg",
    "peak_jy": "Jy",
    "flux_jy": "Jy",
    "flux_err_jy": "Jy",
    "flux_sys_jy": "Jy",
    "rms_jy": "Jy",
    "x_pix": "pix",
    "y_pix": "pix",
}


@dataclass(frozen=True, slots=True)
class Beam:
    """An elliptical Gaussian restoring beam.

    Parameters
    ----------
    major_arcsec, minor_arcsec : float
        Full widths at half maximum of the major and minor axes, arcsec.
    pa_deg : float
        Position angle of the major axis, degrees east of north.

    Raises
    ------
    ValueError
        Non-finite or non-positive axes, or ``minor_arcsec > major_arcsec``.
    """

    major_arcsec: float
    minor_arcsec: float
    pa_deg: float

    def __post_init__(self) -> None:
        """Check the axes."""
        values = (self.major_arcsec, self.minor_arcsec, self.pa_deg)
        if not all(math.isfinite(v) for v in values):
            msg = f"beam parameters must be finite, got {values}"
            raise ValueError(msg)
        if not 0 < self.minor_arcsec <= self.major_arcsec:
            msg = (
                "beam axes must satisfy 0 < minor_arcsec <= major_arcsec, got "
                f"{self.major_arcsec} x {self.minor_arcsec}"
            )
            raise ValueError(msg)

    @classmethod
    def from_header(cls, header: fits.Header | Mapping[str, float]) -> Beam:
        """Read the restoring beam from FITS keywords BMAJ, BMIN, BPA (degrees).

        Parameters
        ----------
        header : astropy.io.fits.Header or mapping
            Image header.

        Returns
        -------
        Beam
            The restoring beam.

        Raises
        ------
        InputDataError
            A keyword is absent or not a number: the image carries no beam.
        """
        values = []
        for key in ("BMAJ", "BMIN", "BPA"):
            try:
                values.append(float(header[key]))
            except (KeyError, TypeError, ValueError) as err:
                msg = (
                    f"image header has no valid {key}; restored images must carry "
                    "BMAJ/BMIN/BPA (degrees) for forced photometry"
                )
                raise InputDataError(msg) from err
        return cls(values[0] * 3600.0, values[1] * 3600.0, values[2])


class PhotometryFlag(enum.IntFlag):
    """Bits of ``ForcedPhotometryResult.flags``."""

    EDGE = 1  #: position off the image, or its fitting box crosses the edge
    NAN = 2  #: the fitting box contains NaN pixels
    LOW_PB = 4  #: primary beam below ``min_pb`` (or unknown)
    BLENDED = 8  #: another catalogue source within 1.5 beam major axes
    #: forced flux below ``photometry.detection_sigma`` x its error: an upper
    #: limit (set by the photometry stage; the flux is still measured and usable)
    UPPER_LIMIT = 16


@dataclass(frozen=True, slots=True, eq=False)
class ForcedPhotometryResult:
    """Per-source results of :func:`measure_forced`; every field has shape (n,).

    Parameters
    ----------
    name : ndarray of str
        Source names.
    ra_deg, dec_deg : ndarray
        Catalogue positions, degrees.
    peak_jy : ndarray
        Image value at the nearest pixel, divided by ``pb``, Jy/beam.
    flux_jy : ndarray
        Matched-filter flux density of a point source, divided by ``pb``, Jy.
    flux_err_jy : ndarray
        One-sigma error of ``flux_jy``, Jy: the noise error and ``flux_sys_jy``
        added in quadrature.
    rms_jy : ndarray
        Local image rms, divided by ``pb``, Jy/beam.
    x_pix, y_pix : ndarray
        Zero-based pixel position of the catalogue position.
    pb : ndarray
        Primary-beam value used for the correction (1 if uncorrected).
    snr : ndarray
        ``flux_jy`` over its noise error (the detection significance; the
        systematic part is left out).
    flags : ndarray of int
        Bitmask of :class:`PhotometryFlag`.
    flux_sys_jy : ndarray
        Systematic part of ``flux_err_jy``, Jy: the image's measured fractional
        shape error times ``|flux_jy|`` (see :func:`measure_forced`).
    """

    name: NDArray[np.str_]
    ra_deg: NDArray[np.float64]
    dec_deg: NDArray[np.float64]
    peak_jy: NDArray[np.float64]
    flux_jy: NDArray[np.float64]
    flux_err_jy: NDArray[np.float64]
    rms_jy: NDArray[np.float64]
    x_pix: NDArray[np.float64]
    y_pix: NDArray[np.float64]
    pb: NDArray[np.float64]
    snr: NDArray[np.float64]
    flags: NDArray[np.int32]
    flux_sys_jy: NDArray[np.float64]

    def __len__(self) -> int:
        """Return the number of sources."""
        return int(self.name.size)

    def to_table(self) -> Table:
        """Return the results as an astropy Table with the field names as columns."""
        table = Table()
        for column in _RESULT_COLUMNS:
            table[column] = np.array(getattr(self, column))
            if column in _UNITS:
                table[column].unit = _UNITS[column]
        return table


@dataclass(frozen=True, slots=True)
class _PixelGaussian:
    """An elliptical Gaussian in pixel coordinates, ``exp(-d^T C^-1 d / 2)``."""

    cov: NDArray[np.float64]

    @classmethod
    def from_beam(cls, beam: Beam, wcs: WCS) -> _PixelGaussian:
        # Imagers restore with a fixed pixel-space kernel, so the beam maps to
        # pixels through the linear WCS at the reference point.
        cel = wcs.celestial
        to_sky = cel.pixel_scale_matrix[[cel.wcs.lng, cel.wcs.lat], :]
        pa = math.radians(beam.pa_deg)
        major = np.array([math.sin(pa), math.cos(pa)])  # (east, north)
        minor = np.array([math.cos(pa), -math.sin(pa)])
        s_major = beam.major_arcsec / 3600.0 / _FWHM_PER_SIGMA
        s_minor = beam.minor_arcsec / 3600.0 / _FWHM_PER_SIGMA
        sky = s_major**2 * np.outer(major, major) + s_minor**2 * np.outer(minor, minor)
        inv = np.linalg.inv(to_sky)
        return cls(inv @ sky @ inv.T)

    @property
    def major_pix(self) -> float:
        return float(np.sqrt(np.linalg.eigvalsh(self.cov)[-1]) * _FWHM_PER_SIGMA)

    def evaluate(self, dx: NDArray[np.float64], dy: NDArray[np.float64]) -> NDArray:
        a, b, c = np.linalg.inv(self.cov)[[0, 0, 1], [0, 1, 1]]
        return np.exp(-0.5 * (a * dx * dx + 2.0 * b * dx * dy + c * dy * dy))


def _as_image(image: ArrayLike, name: str = "image") -> NDArray[np.float64]:
    array = np.asarray(image, dtype=np.float64)
    if array.ndim != 2:
        msg = f"{name} must be a 2-D array, got shape {array.shape}"
        raise ValueError(msg)
    return array


def _to_pixels(
    wcs: WCS, ra_deg: ArrayLike, dec_deg: ArrayLike
) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    if not (wcs.has_celestial and wcs.naxis == 2):
        msg = f"wcs must be a 2-D celestial WCS, got naxis={wcs.naxis}"
        raise ValueError(msg)
    ra = np.atleast_1d(np.asarray(ra_deg, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec_deg, dtype=np.float64))
    if ra.shape != dec.shape or ra.ndim != 1:
        msg = f"ra_deg and dec_deg must be 1-D of equal length: {ra.shape}, {dec.shape}"
        raise ValueError(msg)
    with np.errstate(invalid="ignore"):
        x, y = wcs.all_world2pix(ra, dec, 0)
    return ra, dec, np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def _nearest_pixel(
    x: NDArray, y: NDArray, shape: tuple[int, ...]
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.bool_]]:
    finite = np.isfinite(x) & np.isfinite(y)
    ix = np.where(finite, np.rint(np.where(finite, x, 0.0)), 0).astype(np.intp)
    iy = np.where(finite, np.rint(np.where(finite, y, 0.0)), 0).astype(np.intp)
    inside = finite & (ix >= 0) & (ix < shape[1]) & (iy >= 0) & (iy < shape[0])
    return ix, iy, inside


def _chunks(n_items: int, n_per_item: int) -> list[slice]:
    step = max(1, _CHUNK_PIXELS // max(1, n_per_item))
    return [slice(start, start + step) for start in range(0, n_items, step)]


def _gather(
    image: NDArray, iy: NDArray, ix: NDArray
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Return ``image[iy, ix]`` (NaN outside) and the in-bounds mask."""
    ny, nx = image.shape
    in_bounds = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    values = image[np.clip(iy, 0, ny - 1), np.clip(ix, 0, nx - 1)]
    return np.where(in_bounds, values, np.nan), in_bounds


def _matched_filter(
    image: NDArray, x: NDArray, y: NDArray, pixel_beam: _PixelGaussian, half: int
) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """Return flux, weight fraction, has-NaN and crosses-edge for each position."""
    n_src = x.size
    ix, iy, _ = _nearest_pixel(x, y, image.shape)
    offsets = np.arange(-half, half + 1)
    flux = np.full(n_src, np.nan)
    fraction = np.zeros(n_src)
    has_nan = np.zeros(n_src, dtype=bool)
    at_edge = np.zeros(n_src, dtype=bool)
    for part in _chunks(n_src, offsets.size**2):
        yy = iy[part, None, None] + offsets[None, :, None]
        xx = ix[part, None, None] + offsets[None, None, :]
        data, in_bounds = _gather(image, yy, xx)
        valid = np.isfinite(data)
        kernel = pixel_beam.evaluate(xx - x[part, None, None], yy - y[part, None, None])
        k_valid = np.where(valid, kernel, 0.0)
        k2_valid = np.sum(k_valid * k_valid, axis=(1, 2))
        k2_full = np.sum(kernel * kernel, axis=(1, 2))
        num = np.sum(np.where(valid, data, 0.0) * k_valid, axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            flux[part] = num / k2_valid
            fraction[part] = k2_valid / k2_full
        has_nan[part] = np.any(in_bounds & ~valid, axis=(1, 2))
        at_edge[part] = ~np.all(in_bounds, axis=(1, 2))
    flux[~(fraction >= _MIN_WEIGHT_FRACTION)] = np.nan
    return flux, fraction, has_nan, at_edge


def _shape_basis(
    pixel_beam: _PixelGaussian, dx: NDArray[np.float64], dy: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Return the beam and its five first and second derivatives, shape (..., 6).

    With ``u = C^-1 d`` the beam ``K = exp(-d^T C^-1 d / 2)`` has derivatives
    ``-K u`` (a shift) and ``K (u u^T - C^-1)`` (a change of width); the
    second derivatives integrate to zero, so a fit with them keeps the
    integrated flux in the amplitude of ``K``.
    """
    inv = np.linalg.inv(pixel_beam.cov)
    kernel = pixel_beam.evaluate(dx, dy)
    u0 = inv[0, 0] * dx + inv[0, 1] * dy
    u1 = inv[1, 0] * dx + inv[1, 1] * dy
    return np.stack(
        [
            kernel,
            kernel * (u0 * u0 - inv[0, 0]),
            kernel * (u1 * u1 - inv[1, 1]),
            kernel * (u0 * u1 - inv[0, 1]),
            kernel * u0,
            kernel * u1,
        ],
        axis=-1,
    )


def _shape_amplitude(
    image: NDArray, x: NDArray, y: NDArray, pixel_beam: _PixelGaussian, half: int
) -> NDArray[np.float64]:
    """Return the beam amplitude of a fit that lets the width and centre vary.

    NaN where the fitting box is incomplete (edge or NaN pixels).
    """
    ix, iy, _ = _nearest_pixel(x, y, image.shape)
    offsets = np.arange(-half, half + 1)
    amp = np.full(x.size, np.nan)
    for part in _chunks(x.size, 6 * offsets.size**2):
        yy = iy[part, None, None] + offsets[None, :, None]
        xx = ix[part, None, None] + offsets[None, None, :]
        data, _ = _gather(image, yy, xx)
        full = np.all(np.isfinite(data), axis=(1, 2))
        basis = _shape_basis(
            pixel_beam, xx - x[part, None, None], yy - y[part, None, None]
        ).reshape(yy.shape[0], -1, 6)
        values = np.where(np.isfinite(data), data, 0.0).reshape(yy.shape[0], -1)
        normal = np.einsum("npi,npj->nij", basis, basis)
        rhs = np.einsum("npi,np->ni", basis, values)
        ok = full & np.all(np.isfinite(normal), axis=(1, 2))
        coef = np.full((yy.shape[0], 6), np.nan)
        if ok.any():
            ok[ok] = np.linalg.cond(normal[ok]) < 1e12
            coef[ok] = np.linalg.solve(normal[ok], rhs[ok][:, :, None])[:, :, 0]
        amp[part] = coef[:, 0]
    return amp


def _estimator_vectors(
    pixel_beam: _PixelGaussian, half: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return the weights of the matched filter and of the shape difference.

    For a box centred on a pixel, the matched filter is ``sum(mf * d)`` and
    the difference of the shape-fit amplitude and the matched filter is
    ``sum(delta * d)``; both have shape (2 half + 1, 2 half + 1).
    """
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    dx, dy = np.meshgrid(offsets, offsets)
    basis = _shape_basis(pixel_beam, dx, dy).reshape(-1, 6)
    kernel = basis[:, 0]
    mf = kernel / np.sum(kernel * kernel)
    shape_row = np.linalg.pinv(basis)[0]
    return mf.reshape(dx.shape), (shape_row - mf).reshape(dx.shape)


def _correlated_factor(vector: NDArray, noise_beam: _PixelGaussian) -> float:
    """Return ``sqrt(v^T rho v)`` for unit-rms noise correlated like ``noise_beam``."""
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
    offsets = np.arange(-half, half + 1)
    mf_vec, delta_vec = vectors
    mf = np.full(iy.size, np.nan)
    delta = np.full(iy.size, np.nan)
    for part in _chunks(iy.size, offsets.size**2):
        boxes = data[
            iy[part, None, None] + offsets[None, :, None],
            ix[part, None, None] + offsets[None, None, :],
        ]
        full = np.all(np.isfinite(boxes), axis=(1, 2))
        mf[part] = np.where(full, np.sum(boxes * mf_vec, axis=(1, 2)), np.nan)
        delta[part] = np.where(full, np.sum(boxes * delta_vec, axis=(1, 2)), np.nan)
    centre = data[iy, ix]
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


def _exclusion_mask(
    shape: tuple[int, ...], x: NDArray, y: NDArray, radius_pix: float
) -> NDArray[np.bool_]:
    """Return a mask of pixels within ``radius_pix`` of any position."""
    mask = np.zeros(shape, dtype=bool)
    r = int(math.ceil(radius_pix))
    oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
    disk = ox**2 + oy**2 <= radius_pix**2
    oy, ox = oy[disk], ox[disk]
    ix, iy, _ = _nearest_pixel(x, y, shape)
    near = np.isfinite(x) & np.isfinite(y)
    near &= (ix > -r - 1) & (ix < shape[1] + r) & (iy > -r - 1) & (iy < shape[0] + r)
    for part in _chunks(int(near.sum()), oy.size):
        yy = iy[near][part, None] + oy[None, :]
        xx = ix[near][part, None] + ox[None, :]
        keep = (yy >= 0) & (yy < shape[0]) & (xx >= 0) & (xx < shape[1])
        mask[yy[keep], xx[keep]] = True
    return mask


def _robust_rms_rows(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return the MAD-based sigma of the finite values of each row (NaN if too few)."""
    n_valid = np.sum(np.isfinite(values), axis=1)
    with warnings.catch_warnings():  # all-NaN rows are answered NaN below
        warnings.simplefilter("ignore", RuntimeWarning)
        sigma = mad_std(values, axis=1, ignore_nan=True)
    return np.where(n_valid >= _MIN_RMS_SAMPLES, sigma, np.nan)


def _annulus_rms(
    image: NDArray,
    x: NDArray,
    y: NDArray,
    radii_pix: tuple[float, float],
    exclude: NDArray[np.bool_],
) -> NDArray[np.float64]:
    """Return the robust rms in an annulus around each position."""
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
    rms = np.full(x.size, np.nan)
    for part in _chunks(x.size, oy.size):
        yy = iy[part, None] + oy[None, :]
        xx = ix[part, None] + ox[None, :]
        values, in_bounds = _gather(image, yy, xx)
        excluded = exclude[
            np.clip(yy, 0, image.shape[0] - 1), np.clip(xx, 0, image.shape[1] - 1)
        ]
        values[excluded & in_bounds] = np.nan
        rms[part] = _robust_rms_rows(values)
    return rms


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
    data = _as_image(image)
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
    flux, fraction, has_nan, at_edge = _matched_filter(data, x, y, pixel_beam, half)
    rms = _local_rms(data, x, y, inside, major_pix, rms_box_beams, rms_map)
    mf_factor, delta_factor = _error_factors(
        data, wcs, x, y, pixel_beam, half, noise_beam, rms_map
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        noise_err = rms * mf_factor / np.sqrt(fraction)
    peak = np.where(
        inside, data[np.where(inside, iy, 0), np.where(inside, ix, 0)], np.nan
    )
    pb_value = _pb_values(pb, data.shape, iy, ix, inside)
    blended = _blended(ra, dec, _BLEND_BEAMS * beam.major_arcsec / 3600.0)
    low_pb = (pb_value < min_pb) | (inside & ~np.isfinite(pb_value))
    flags = _flags(inside, at_edge, has_nan, blended, low_pb)
    flux[~inside] = np.nan
    noise_err[~inside] = np.nan
    delta = _shape_amplitude(data, x, y, pixel_beam, half) - flux
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
    data = _as_image(residual, "residual")
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
    eta = _psf_filter_fraction(_as_image(psf, "psf"), vectors[0])
    if not 0 < eta <= 1:
        return 0.0
    ratio = float(np.mean(at_source**2)) / factors[0] ** 2
    return (1.0 - eta) / eta * math.sqrt(max(ratio - 1.0, 0.0))


def _psf_filter_fraction(psf: NDArray, mf_vec: NDArray) -> float:
    """Return the matched filter of the PSF at its peak (NaN if it does not fit)."""
    half = mf_vec.shape[0] // 2
    cy, cx = np.unravel_index(np.nanargmax(psf), psf.shape)
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
    rms = _annulus_rms(data, x, y, (r_in, r_out), exclude)
    crowded = inside & ~np.isfinite(rms)
    if crowded.any():
        # A dense catalogue (a source every few beams) masks whole annuli; the
        # unmasked annulus still gives the noise, the median absolute deviation
        # being robust to the few pixels of neighbouring sources in it.
        rms[crowded] = _annulus_rms(
            data, x[crowded], y[crowded], (r_in, r_out), np.zeros_like(exclude)
        )
        log.debug(
            "annulus rms without masking for crowded sources",
            extra={"n_sources": int(np.sum(crowded & np.isfinite(rms)))},
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


def fit_peak_position(
    image: ArrayLike,
    wcs: WCS,
    ra_deg: ArrayLike,
    dec_deg: ArrayLike,
    *,
    search_radius_pix: int = 5,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return the sub-pixel position of the brightest pixel near each position.

    Parameters
    ----------
    image : array_like, shape (n_y, n_x)
        Restored image, indexed ``image[y, x]``.
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS of ``image``.
    ra_deg, dec_deg : array_like, shape (n_src,)
        Starting positions, degrees.
    search_radius_pix : int
        Half-width of the square searched for the brightest pixel, pixels.

    Returns
    -------
    ra_deg, dec_deg : ndarray, shape (n_src,)
        Refined positions, degrees; NaN where no finite pixel was found.

    Notes
    -----
    A quadratic surface
    :math:`q(u, v) = c_0 + c_1 u + c_2 v + c_3 u^2 + c_4 u v + c_5 v^2` is
    fitted by least squares to the 3x3 pixels around the brightest one and its
    maximum taken, which refines x and y jointly (a rotated beam couples
    them). The fit is to the logarithm of the pixel values when all nine are
    positive, which is exact for a noiseless Gaussian; otherwise to the values.
    The shift is clipped to one pixel; no refinement is made at the image edge.
    """
    data = _as_image(image)
    _, _, x, y = _to_pixels(wcs, ra_deg, dec_deg)
    r = int(search_radius_pix)
    if r < 0:
        msg = f"search_radius_pix must be >= 0, got {search_radius_pix}"
        raise ValueError(msg)
    ix, iy, inside = _nearest_pixel(x, y, data.shape)
    offsets = np.arange(-r, r + 1)
    stamp, _ = _gather(
        data,
        iy[:, None, None] + offsets[None, :, None],
        ix[:, None, None] + offsets[None, None, :],
    )
    stamp = np.where(np.isfinite(stamp), stamp, -np.inf).reshape(x.size, -1)
    best = np.argmax(stamp, axis=1)
    found = inside & np.isfinite(stamp[np.arange(x.size), best])
    py = iy + best // offsets.size - r
    px = ix + best % offsets.size - r
    du, dv = _quadratic_peak(data, px, py)
    x_peak = np.where(found, px + du, np.nan)
    y_peak = np.where(found, py + dv, np.nan)
    ra_out, dec_out = wcs.all_pix2world(x_peak, y_peak, 0)
    return np.asarray(ra_out, dtype=np.float64) % 360.0, np.asarray(
        dec_out, dtype=np.float64
    )


def _quadratic_peak(
    data: NDArray, px: NDArray[np.intp], py: NDArray[np.intp]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return the sub-pixel offset of the maximum of a quadratic fit to 3x3 pixels."""
    v, u = (a.ravel() for a in np.mgrid[-1:2, -1:2])
    design = np.column_stack([np.ones(9), u, v, u * u, u * v, v * v]).astype(float)
    values, _ = _gather(data, py[:, None] + v[None, :], px[:, None] + u[None, :])
    usable = np.all(np.isfinite(values), axis=1)
    positive = usable & np.all(values > 0, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        surface = np.where(
            positive[:, None], np.log(np.where(values > 0, values, 1.0)), values
        )
    c = np.where(usable[:, None], surface, 0.0) @ np.linalg.pinv(design).T
    # Stationary point: [[2c3, c4], [c4, 2c5]] (u, v) = -(c1, c2).
    h11, h12, h22 = 2.0 * c[:, 3], c[:, 4], 2.0 * c[:, 5]
    det = h11 * h22 - h12 * h12
    is_max = usable & (h11 < 0) & (det > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        du = (-c[:, 1] * h22 + c[:, 2] * h12) / det
        dv = (-c[:, 2] * h11 + c[:, 1] * h12) / det
    du = np.clip(np.where(is_max, du, 0.0), -1.0, 1.0)
    dv = np.clip(np.where(is_max, dv, 0.0), -1.0, 1.0)
    return du, dv
