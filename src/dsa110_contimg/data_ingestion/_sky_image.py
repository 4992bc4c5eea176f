"""Restored-like images of a model sky: point sources, a Gaussian beam, noise.

Pure functions on arrays and WCSs, used by the fake imager
(`dsa110_contimg.tools.fake`) and by the synthetic test images
(`dsa110_contimg.testing.images`).
"""

from __future__ import annotations

import math

import numpy as np
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray

from dsa110_contimg.data_ingestion.photometry import Beam, _PixelGaussian

__all__ = ["add_point_sources", "correlated_noise", "psf_beam"]

_SOURCE_SIGMAS = 6.0
_KERNEL_SIGMAS = 4.0
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_MAX_UV_SAMPLES = 20_000
_PSF_GRID = 41


def add_point_sources(
    image: NDArray[np.float64],
    wcs: WCS,
    ra_deg: ArrayLike,
    dec_deg: ArrayLike,
    flux_jy: ArrayLike,
    *,
    beam: Beam,
) -> None:
    """Add copies of ``beam`` with peaks ``flux_jy`` at sky positions, in place.

    Parameters
    ----------
    image : ndarray, shape (n_y, n_x)
        Image in Jy/beam, indexed ``image[y, x]``.
    wcs : astropy.wcs.WCS
        Its 2-D celestial WCS.
    ra_deg, dec_deg, flux_jy : array_like, shape (n,)
        Positions (ICRS, degrees) and peak fluxes (Jy/beam) of point sources;
        each is centred at its exact (sub-pixel) position, those off the
        image are skipped.
    beam : Beam
        Restoring beam.
    """
    pixel_beam = _PixelGaussian.from_beam(beam, wcs)
    half = math.ceil(_SOURCE_SIGMAS * pixel_beam.major_pix / _FWHM_PER_SIGMA)
    x, y = wcs.all_world2pix(np.asarray(ra_deg), np.asarray(dec_deg), 0)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y, flux = x[ok], y[ok], np.asarray(flux_jy, dtype=np.float64)[ok]
    offsets = np.arange(-half, half + 1)
    xx = np.rint(x)[:, None, None].astype(np.intp) + offsets[None, None, :]
    yy = np.rint(y)[:, None, None].astype(np.intp) + offsets[None, :, None]
    values = flux[:, None, None] * pixel_beam.evaluate(
        xx - x[:, None, None], yy - y[:, None, None]
    )
    xx, yy = np.broadcast_arrays(xx, yy)
    keep = (xx >= 0) & (xx < image.shape[1]) & (yy >= 0) & (yy < image.shape[0])
    flat = np.ravel_multi_index((yy[keep], xx[keep]), image.shape)
    image += np.bincount(flat, weights=values[keep], minlength=image.size).reshape(
        image.shape
    )


def correlated_noise(
    shape: tuple[int, int], wcs: WCS, beam: Beam, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Return unit-rms Gaussian noise whose autocorrelation is ``beam``.

    White noise is convolved with a Gaussian of half the beam's covariance,
    as the residual noise of a CLEAN image is correlated like the dirty
    beam's main lobe.
    """
    from scipy.signal import oaconvolve  # 0.4 s to import: tests and demos only

    noise = _PixelGaussian.from_beam(beam, wcs)
    kernel_gauss = _PixelGaussian(noise.cov / 2.0)
    half = max(1, math.ceil(_KERNEL_SIGMAS * kernel_gauss.major_pix / _FWHM_PER_SIGMA))
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    kernel = kernel_gauss.evaluate(offsets[None, :], offsets[:, None])
    kernel /= math.sqrt(np.sum(kernel * kernel))
    white = rng.standard_normal((shape[0] + 2 * half, shape[1] + 2 * half))
    return oaconvolve(white, kernel, mode="valid")


def psf_beam(uv_lambda: ArrayLike, weights: ArrayLike) -> Beam:
    r"""Return the Gaussian fit to the main lobe of a naturally weighted PSF.

    Parameters
    ----------
    uv_lambda : array_like, shape (n, 2)
        Baseline ``(u, v)`` coordinates, wavelengths (``u`` east, ``v``
        north), each sample once (its conjugate is implied).
    weights : array_like, shape (n,)
        Non-negative weight of each sample.

    Returns
    -------
    Beam
        FWHM axes (arcsec) and position angle (degrees east of north) of a
        Gaussian fitted to :math:`\ln` PSF where the PSF exceeds one half.

    Raises
    ------
    ValueError
        No sample has positive weight and non-zero length.

    Notes
    -----
    The PSF :math:`\sum_k w_k \cos 2\pi(u_k l + v_k m) / \sum_k w_k` is
    evaluated directly on a grid spanning the main lobe (at most 20000
    samples, evenly chosen); the fit is linear least squares of
    :math:`\ln P = -\tfrac12 x^T A x`, the Gaussian's covariance is
    :math:`A^{-1}`.
    """
    uv = np.asarray(uv_lambda, dtype=np.float64).reshape(-1, 2)
    w = np.asarray(weights, dtype=np.float64).ravel()
    good = (w > 0) & (np.hypot(uv[:, 0], uv[:, 1]) > 0) & np.all(np.isfinite(uv), 1)
    if not good.any():
        msg = "no unflagged baseline with positive weight to form a PSF from"
        raise ValueError(msg)
    uv, w = uv[good], w[good]
    if w.size > _MAX_UV_SAMPLES:
        step = math.ceil(w.size / _MAX_UV_SAMPLES)
        uv, w = uv[::step], w[::step]
    # curvature at the centre sets the grid: P ~ 1 - 2 pi^2 x^T <uu^T> x
    moment = (uv * w[:, None]).T @ uv / w.sum()
    extent = 1.6 / (2.0 * math.pi * math.sqrt(np.linalg.eigvalsh(moment)[0]))
    axis = np.linspace(-extent, extent, _PSF_GRID)
    ll, mm = (g.ravel() for g in np.meshgrid(axis, axis))
    phase = 2.0 * math.pi * (np.outer(ll, uv[:, 0]) + np.outer(mm, uv[:, 1]))
    psf = np.cos(phase) @ w / w.sum()
    lobe = (psf > 0.5) & (np.hypot(ll, mm) < extent)
    lx, my = ll[lobe], mm[lobe]
    design = -0.5 * np.column_stack([lx**2, 2 * lx * my, my**2])
    (a11, a12, a22), *_ = np.linalg.lstsq(design, np.log(psf[lobe]), rcond=None)
    values, vectors = np.linalg.eigh(np.linalg.inv([[a11, a12], [a12, a22]]))
    east, north = vectors[:, 1]
    pa = math.degrees(math.atan2(east, north))
    pa = (pa + 90.0) % 180.0 - 90.0
    fwhm = _FWHM_PER_SIGMA * np.sqrt(values) * (180.0 / math.pi) * 3600.0
    return Beam(float(fwhm[1]), float(fwhm[0]), pa)
