"""Primary beam of the DSA-110 4.65 m dish.

The beam is an Airy pattern, ``(2 J1(x) / x)**2`` with
``x = pi * D * sin(theta) / lambda``. It is fixed on the meridian at the
pointing declination while the sky drifts through it, so an image of one group
sees the beam averaged over the group's integrations.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import j1

from dsa110_contimg.telescope.dsa110 import DISH_DIAMETER_M

__all__ = ["airy_beam", "fwhm_deg", "angular_separation_rad", "drift_averaged_beam"]

_C_M_S = 299_792_458.0


def airy_beam(
    theta_rad: ArrayLike, freq_hz: ArrayLike, *, diameter_m: float = DISH_DIAMETER_M
) -> NDArray[np.float64]:
    """Return the Airy power response at angle ``theta_rad`` from the pointing.

    Parameters
    ----------
    theta_rad : array_like
        Angular distance from the beam centre, radians.
    freq_hz : array_like
        Frequency in Hz; broadcast against ``theta_rad``.
    diameter_m : float
        Dish diameter.

    Returns
    -------
    ndarray
        Power response, 1 at the centre.

    Notes
    -----
    :math:`A(\\theta) = (2 J_1(x)/x)^2`, :math:`x = \\pi D \\sin\\theta / \\lambda`.

    Examples
    --------
    >>> round(float(airy_beam(0.0, 1.4e9)), 6)
    1.0
    """
    theta = np.asarray(theta_rad, dtype=np.float64)
    freq = np.asarray(freq_hz, dtype=np.float64)
    x = np.pi * diameter_m * np.sin(theta) * freq / _C_M_S
    x_safe = np.where(np.abs(x) < 1e-8, 1.0, x)
    pattern = np.where(np.abs(x) < 1e-8, 1.0, 2.0 * j1(x_safe) / x_safe)
    return pattern**2


def fwhm_deg(freq_hz: float, *, diameter_m: float = DISH_DIAMETER_M) -> float:
    """Return the full width at half maximum of the Airy beam in degrees."""
    # (2 J1(x)/x)^2 = 0.5 at x = 1.6163399; FWHM = 2 * asin(x lambda / (pi D)).
    x_half = 1.616339948310703
    lam = _C_M_S / freq_hz
    return float(2.0 * np.degrees(np.arcsin(x_half * lam / (np.pi * diameter_m))))


def angular_separation_rad(
    ra1_rad: ArrayLike, dec1_rad: ArrayLike, ra2_rad: ArrayLike, dec2_rad: ArrayLike
) -> NDArray[np.float64]:
    """Return the great-circle separation (Vincenty formula), radians."""
    ra1, dec1, ra2, dec2 = (
        np.asarray(a, dtype=np.float64) for a in (ra1_rad, dec1_rad, ra2_rad, dec2_rad)
    )
    dra = ra2 - ra1
    num = np.hypot(
        np.cos(dec2) * np.sin(dra),
        np.cos(dec1) * np.sin(dec2) - np.sin(dec1) * np.cos(dec2) * np.cos(dra),
    )
    den = np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(dra)
    return np.arctan2(num, den)


def drift_averaged_beam(
    ra_deg: ArrayLike,
    dec_deg: ArrayLike,
    pointing_ra_deg: ArrayLike,
    pointing_dec_deg: ArrayLike,
    freq_hz: ArrayLike,
    *,
    time_weights: ArrayLike | None = None,
    freq_weights: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Return the primary beam averaged over a drift scan's pointings and channels.

    Parameters
    ----------
    ra_deg, dec_deg : array_like, shape (n_pos,)
        Sky positions.
    pointing_ra_deg : array_like, shape (n_time,)
        RA of the meridian (beam centre) at each integration.
    pointing_dec_deg : float or array_like, shape (n_time,)
        Declination of the beam centre (the strip), scalar or per integration.
    freq_hz : array_like, shape (n_chan,)
        Channel frequencies averaged over.
    time_weights : array_like, shape (n_time,), optional
        Relative weight of each integration in the image (its unflagged
        visibility weight); equal weights if omitted.
    freq_weights : array_like, shape (n_chan,), optional
        Relative weight of each frequency; equal weights if omitted.

    Returns
    -------
    ndarray, shape (n_pos,)
        Weighted mean power response: the beam that a source's flux in the
        image was multiplied by, with the image a weighted sum of the
        integrations and channels.

    Raises
    ------
    ValueError
        A weight vector has the wrong length, a negative or non-finite
        entry, or no positive entry.
    """
    ra = np.deg2rad(np.atleast_1d(np.asarray(ra_deg, dtype=np.float64)))
    dec = np.deg2rad(np.atleast_1d(np.asarray(dec_deg, dtype=np.float64)))
    p_ra = np.deg2rad(np.atleast_1d(np.asarray(pointing_ra_deg, dtype=np.float64)))
    freqs = np.atleast_1d(np.asarray(freq_hz, dtype=np.float64))
    p_dec = np.deg2rad(np.asarray(pointing_dec_deg, dtype=np.float64))
    p_dec = np.broadcast_to(p_dec, p_ra.shape)
    sep = angular_separation_rad(
        ra[:, None], dec[:, None], p_ra[None, :], p_dec[None, :]
    )
    resp = airy_beam(sep[:, :, None], freqs[None, None, :])
    w_t = _weights(time_weights, p_ra.size, "time_weights")
    w_f = _weights(freq_weights, freqs.size, "freq_weights")
    return np.einsum("ptf,t,f->p", resp, w_t, w_f)


def _weights(values: ArrayLike | None, n: int, name: str) -> NDArray[np.float64]:
    """Return ``values`` normalised to sum 1 (equal weights for None)."""
    if values is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(values, dtype=np.float64).ravel()
    if w.size != n:
        msg = f"{name} has {w.size} entries for {n} beam samples"
        raise ValueError(msg)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        msg = f"{name} must be finite, >= 0 and not all zero, got {w.tolist()}"
        raise ValueError(msg)
    return w / w.sum()
