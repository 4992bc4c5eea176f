"""Drift-scan geometry: hour angles, baseline projections and phase rotation.

DSA-110 raw visibilities are fringe-stopped, integration by integration, to the
meridian at the pointing declination (HA = 0, Dec = pointing dec, apparent
coordinates). Imaging a group needs one common phase centre, so each
integration is rotated from its own meridian centre to the common one.

Conventions follow pyuvdata: baseline vector ``b = x_ant2 - x_ant1`` and
``V = sum S exp(+2 pi i b.(s - s0) / lambda)``; rotating from centre ``s0`` to
``s1`` multiplies by ``exp(-2 pi i (w1 - w0) / lambda)``.
"""

from __future__ import annotations

import numpy as np
from astropy import units as u
from astropy.coordinates import EarthLocation, HADec, SkyCoord
from astropy.time import Time
from numpy.typing import NDArray

__all__ = [
    "baseline_xyz_m",
    "icrs_to_hadec_rad",
    "meridian_icrs_deg",
    "warm_up",
    "uvw_for_hadec_m",
    "direction_lmn",
    "rotate_phase_center",
]

_C_M_S = 299_792_458.0


def baseline_xyz_m(
    antenna_positions_m: NDArray[np.float64],
    ant1_index: NDArray[np.int_],
    ant2_index: NDArray[np.int_],
    lon_rad: float,
) -> NDArray[np.float64]:
    """Return baselines ``ant2 - ant1`` in the local equatorial (X, Y, Z) frame.

    Parameters
    ----------
    antenna_positions_m : ndarray, shape (n_ant, 3)
        ECEF positions relative to the telescope location, metres.
    ant1_index, ant2_index : ndarray of int, shape (n_bl,)
        Row indices into ``antenna_positions_m``.
    lon_rad : float
        Telescope longitude.

    Returns
    -------
    ndarray, shape (n_bl, 3)
        X towards (HA=0, Dec=0), Y towards HA=-6 h, Z towards the pole.
    """
    d = antenna_positions_m[ant2_index] - antenna_positions_m[ant1_index]
    cos_l, sin_l = np.cos(lon_rad), np.sin(lon_rad)
    x = cos_l * d[:, 0] + sin_l * d[:, 1]
    y = -sin_l * d[:, 0] + cos_l * d[:, 1]
    return np.column_stack([x, y, d[:, 2]])


def icrs_to_hadec_rad(
    ra_deg: NDArray[np.float64],
    dec_deg: NDArray[np.float64],
    times_jd: NDArray[np.float64],
    location: EarthLocation,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return apparent topocentric hour angle and declination.

    Returns arrays of shape ``(n_time, n_src)`` in radians.
    """
    ra = np.atleast_1d(np.asarray(ra_deg, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec_deg, dtype=np.float64))
    times = Time(np.atleast_1d(times_jd), format="jd", scale="utc")
    src = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs")
    frame = HADec(obstime=times[:, None], location=location)
    hadec = src[None, :].transform_to(frame)
    return hadec.ha.to_value(u.rad), hadec.dec.to_value(u.rad)


# the last few meridian tracks (see `meridian_icrs_deg`), oldest first
_MERIDIAN_CACHE: dict[tuple, tuple[NDArray[np.float64], NDArray[np.float64]]] = {}
_MERIDIAN_CACHE_SIZE = 16


def meridian_icrs_deg(
    dec_app_rad: float, times_jd: NDArray[np.float64], location: EarthLocation
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return the ICRS position of (HA=0, apparent Dec) at each time, degrees.

    The transform (~0.1-0.5 s through astropy) is the same for every caller
    of a group (the beam track, the model predictions, the photometry), so
    the last few results are kept (`_MERIDIAN_CACHE`; copies are returned).
    """
    jd = np.ascontiguousarray(np.atleast_1d(times_jd), dtype=np.float64)
    key = (
        float(dec_app_rad),
        jd.tobytes(),
        tuple(float(c.to_value(u.m)) for c in location.geocentric),
    )
    hit = _MERIDIAN_CACHE.get(key)
    if hit is None:
        times = Time(jd, format="jd", scale="utc")
        n = times.size
        coord = SkyCoord(
            ha=np.zeros(n) * u.rad,
            dec=np.full(n, dec_app_rad) * u.rad,
            frame=HADec(obstime=times, location=location),
        )
        icrs = coord.transform_to("icrs")
        hit = (np.asarray(icrs.ra.deg), np.asarray(icrs.dec.deg))
        _MERIDIAN_CACHE[key] = hit
        while len(_MERIDIAN_CACHE) > _MERIDIAN_CACHE_SIZE:
            _MERIDIAN_CACHE.pop(next(iter(_MERIDIAN_CACHE)))
    return hit[0].copy(), hit[1].copy()


def warm_up(location: EarthLocation, time_jd: float) -> None:
    """Load what the first sky-frame transform loads (IERS tables, erfa).

    A new process pays ~1 s for it on its first transform; calling this
    while something else (the subband readers) has the CPUs moves that off
    the critical path. The result is discarded.
    """
    meridian_icrs_deg(0.0, np.atleast_1d(time_jd), location)


def uvw_for_hadec_m(
    xyz_m: NDArray[np.float64],
    ha_rad: NDArray[np.float64],
    dec_rad: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Project baselines onto (u, v, w) for a phase centre at (HA, Dec).

    Parameters
    ----------
    xyz_m : ndarray, shape (n, 3)
        Local equatorial baselines.
    ha_rad, dec_rad : ndarray, shape (n,) or scalar
        Apparent hour angle and declination of the phase centre per row.

    Notes
    -----
    Thompson, Moran & Swenson (2017), eq. 4.1. The (u, v) axes are those of
    the apparent frame; ``w`` does not depend on that choice.
    """
    x, y, z = xyz_m[:, 0], xyz_m[:, 1], xyz_m[:, 2]
    sh, ch = np.sin(ha_rad), np.cos(ha_rad)
    sd, cd = np.sin(dec_rad), np.cos(dec_rad)
    uu = sh * x + ch * y
    vv = -sd * ch * x + sd * sh * y + cd * z
    ww = cd * ch * x - cd * sh * y + sd * z
    return np.column_stack([uu, vv, ww])


def direction_lmn(
    ha_rad: NDArray[np.float64],
    dec_rad: NDArray[np.float64],
    ha0_rad: NDArray[np.float64],
    dec0_rad: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Return direction cosines (l, m, n) of (HA, Dec) about centre (HA0, Dec0)."""
    sx = np.cos(dec_rad) * np.cos(ha_rad)
    sy = -np.cos(dec_rad) * np.sin(ha_rad)
    sz = np.sin(dec_rad)
    sh, ch = np.sin(ha0_rad), np.cos(ha0_rad)
    sd, cd = np.sin(dec0_rad), np.cos(dec0_rad)
    ll = sh * sx + ch * sy
    mm = -sd * ch * sx + sd * sh * sy + cd * sz
    nn = cd * ch * sx - cd * sh * sy + sd * sz
    return ll, mm, nn


def rotate_phase_center(
    data: NDArray[np.complexfloating],
    w_old_m: NDArray[np.float64],
    w_new_m: NDArray[np.float64],
    freq_hz: NDArray[np.float64],
) -> None:
    """Rotate visibilities in place from one phase centre to another.

    Parameters
    ----------
    data : ndarray, shape (n_blt, n_freq, n_pol)
        Visibilities phased to the old centre; modified in place.
    w_old_m, w_new_m : ndarray, shape (n_blt,)
        ``w`` of each row towards the old and the new centre, metres.
    freq_hz : ndarray, shape (n_freq,)
        Channel frequencies.
    """
    phase = (w_new_m - w_old_m)[:, None] * (freq_hz[None, :] / _C_M_S)
    phase *= -2.0 * np.pi
    # exp(i phase) as cos + i sin straight into the data's precision: the
    # same values as np.exp of the complex phase, without its complex128
    # intermediates (the phase itself stays float64: it reaches 1e4 rad)
    rotation = np.empty(phase.shape, dtype=data.dtype)
    np.cos(phase, out=rotation.real)
    np.sin(phase, out=rotation.imag)
    data *= rotation[:, :, None]
