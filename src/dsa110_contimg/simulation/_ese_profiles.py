r"""Flux profiles of simulated extreme scattering events (the truth, not the templates).

By default half the simulated ESEs are ray-traced through a one-dimensional
Gaussian plasma lens (Clegg, Fey & Lazio 1998) and smoothed by a Gaussian
source, which gives a dip flanked by brightenings; the other half are
flat-bottomed dips with cosine-tapered edges and no flanks. Gaussian,
asymmetric (skewed) and caustic-flanked dips complete :data:`ESE_SHAPES`.
None of them is the detector's template (``variability._ese_model``).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter1d

__all__ = ["ESE_SHAPES", "ese_profile"]

ESE_SHAPES = ("lens", "box", "gaussian", "asymmetric", "caustic")
"""Dip shapes :func:`ese_profile` draws."""

_LENS_ALPHAS = np.geomspace(0.02, 20.0, 80)
_LENS_BETAS = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
_PROFILE_U = np.linspace(-6.0, 6.0, 2401)  # in units of the dip FWHM


@functools.lru_cache(maxsize=1)
def _lens_profiles() -> tuple[NDArray, NDArray]:
    """Return dip profiles (alpha, beta, u) in units of their FWHM, and depths."""
    u_image = np.linspace(-12.0, 12.0, 240001)
    edges = np.linspace(-6.0, 6.0, 1201)
    centres = 0.5 * (edges[1:] + edges[:-1])
    step = centres[1] - centres[0]
    profiles = np.empty((_LENS_ALPHAS.size, _LENS_BETAS.size, _PROFILE_U.size))
    depths = np.empty((_LENS_ALPHAS.size, _LENS_BETAS.size))
    for i, alpha in enumerate(_LENS_ALPHAS):
        u_source = u_image + alpha * u_image * np.exp(-(u_image**2))
        counts, _ = np.histogram(u_source, bins=edges)
        gain = counts * (u_image[1] - u_image[0]) / step
        for j, beta in enumerate(_LENS_BETAS):
            smooth = gaussian_filter1d(gain, beta / step, mode="nearest")
            depth = 1.0 - smooth.min()
            below = centres[smooth < 1.0 - 0.5 * depth]
            fwhm = below.max() - below.min()
            profiles[i, j] = np.interp(_PROFILE_U * fwhm, centres, smooth, 1.0, 1.0)
            depths[i, j] = depth
    return profiles, depths


def ese_profile(
    time_mjd: NDArray[np.float64],
    *,
    center_mjd: float,
    duration_days: float,
    depth: float,
    shape: str = "lens",
    source_size: float = 0.7,
    taper_frac: float = 0.4,
    skew: float = 0.5,
    caustic_height: float = 0.3,
    caustic_width_frac: float = 0.06,
) -> NDArray[np.float64]:
    """Return the flux gain of an ESE (1 outside the event).

    Parameters
    ----------
    time_mjd : ndarray, shape (n,)
        Times, MJD.
    center_mjd : float
        Centre of the dip, MJD.
    duration_days : float
        Full width of the dip at half its depth, days.
    depth : float
        Fractional depth of the dip, 0 to 0.8.
    shape : {"lens", "box", "gaussian", "asymmetric", "caustic"}
        ``"lens"``: Gaussian plasma lens ray-traced and smoothed by a
        Gaussian source (dip with broad flanking brightenings). ``"box"``:
        flat bottom, cosine-tapered edges, no flanks. ``"gaussian"``: a
        Gaussian dip. ``"asymmetric"``: a Gaussian dip whose half-widths
        before and after the minimum are ``D (1 -+ skew) / 2`` (a fast
        ingress and a slow egress for skew > 0). ``"caustic"``: a
        flat-bottomed dip with narrow brightenings (caustics) just outside
        its edges.
    source_size : float
        Lens only: source sigma in units of the lens scale, 0.5 to 1.0.
    taper_frac : float
        Box and caustic: width of each cosine edge as a fraction of the duration.
    skew : float
        Asymmetric only: in (-1, 1).
    caustic_height : float
        Caustic only: height of each brightening as a fraction of the depth.
    caustic_width_frac : float
        Caustic only: Gaussian sigma of each brightening, fraction of the duration.

    Returns
    -------
    ndarray, shape (n,)
        Multiplicative gain.

    Notes
    -----
    The lens maps image position :math:`u_i` to source position
    :math:`u_s = u_i + \\alpha u_i e^{-u_i^2}` (a diverging Gaussian lens,
    Clegg, Fey & Lazio 1998, https://doi.org/10.1086/305344); the gain is
    the density of images, smoothed by the source. The lens strength
    :math:`\\alpha` is interpolated to give the requested depth after smoothing.
    """
    if not 0 < depth < 0.8:
        msg = f"depth must be in (0, 0.8), got {depth}"
        raise ValueError(msg)
    u = (np.asarray(time_mjd, dtype=np.float64) - center_mjd) / duration_days
    if shape in ("box", "caustic"):
        half_flat = 0.5 - 0.5 * taper_frac
        x = np.clip((np.abs(u) - half_flat) / taper_frac, 0.0, 1.0)
        gain = 1.0 - depth * 0.5 * (1.0 + np.cos(np.pi * x))
        if shape == "caustic":
            edge = 0.5 + 0.5 * taper_frac + caustic_width_frac
            spike = np.exp(-0.5 * ((np.abs(u) - edge) / caustic_width_frac) ** 2)
            gain = gain + caustic_height * depth * spike
        return gain
    if shape in ("gaussian", "asymmetric"):
        if not -1 < skew < 1:
            msg = f"skew must be in (-1, 1), got {skew}"
            raise ValueError(msg)
        s = skew if shape == "asymmetric" else 0.0
        half = np.where(u < 0, 0.5 * (1.0 - s), 0.5 * (1.0 + s))
        return 1.0 - depth * np.exp(-math.log(2.0) * (u / half) ** 2)
    if shape != "lens":
        msg = (
            "shape must be 'lens', 'box', 'gaussian', 'asymmetric' or 'caustic', "
            f"got {shape!r}"
        )
        raise ValueError(msg)
    profiles, depths = _lens_profiles()
    j = int(np.argmin(np.abs(_LENS_BETAS - source_size)))
    k = int(np.clip(np.searchsorted(depths[:, j], depth), 1, _LENS_ALPHAS.size - 1))
    lam = (depth - depths[k - 1, j]) / (depths[k, j] - depths[k - 1, j])
    profile = (1.0 - lam) * profiles[k - 1, j] + lam * profiles[k, j]
    return np.interp(u, _PROFILE_U, profile, 1.0, 1.0)
