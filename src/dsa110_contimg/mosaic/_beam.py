"""Primary-beam images of drift-scan group images.

The DSA-110 beam stays on the meridian while the sky drifts through it, so
the effective primary beam of one group's image is the Airy beam averaged over
the group's integrations and channels. The pointing track is recorded in the
image header by the imaging stage (``DSAPTDEC``, ``DSAT0MJD``, ``DSADTSEC``,
``DSANTIME``, ``DSAFMIN``, ``DSAFMAX``), with the relative weight of each
integration (``DSATW001``...) and of each of the 8 beam frequencies
(``DSAFW001``...) in the image: the unflagged visibility weight, so that an
integration or channel lost to RFI does not count in the beam
(`drift_track_cards`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.coordinates import EarthLocation
from astropy.io import fits
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray
from scipy.interpolate import BSpline, RectBivariateSpline

from dsa110_contimg.data_ingestion import _phasing
from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.telescope.beam_models import drift_averaged_beam

__all__ = [
    "DriftTrack",
    "drift_track_cards",
    "image_frequency_hz",
    "primary_beam_at",
    "primary_beam_image",
    "primary_beam_key",
]

TRACK_KEYS = ("DSAPTDEC", "DSAT0MJD", "DSADTSEC", "DSANTIME", "DSAFMIN", "DSAFMAX")
_N_BEAM_FREQS = 8
_MAX_GRID_POINTS = 65
_CHUNK_POSITIONS = 4096
_TIME_WEIGHT_CARD = "DSATW"  # DSATW001..: weight of each integration
_FREQ_WEIGHT_CARD = "DSAFW"  # DSAFW001..008: weight of each beam frequency
_MAX_WEIGHT_CARDS = 999  # three digits in an 8-character FITS keyword
_SAME_TIME_S = 0.5  # TIME values closer than this are one integration
# bump when the beam model or its evaluation changes: old maps are then remade
_BEAM_MODEL_VERSION = f"airy-drift-1 D={dsa110.DISH_DIAMETER_M} nf={_N_BEAM_FREQS}"


@dataclass(frozen=True, slots=True)
class DriftTrack:
    """The pointing track and band of one drift-scan group.

    Parameters
    ----------
    pointing_dec_deg : float
        Apparent declination of the beam centre (the strip), degrees.
    start_mjd : float
        Mid-time of the first integration, UTC MJD.
    step_s : float
        Time between integrations, seconds.
    n_time : int
        Number of integrations.
    freq_min_hz, freq_max_hz : float
        Lowest and highest channel frequency, Hz.
    time_weights : tuple of float, optional
        Relative weight of each integration in the image (``n_time``
        entries; zero for one that is missing or flagged); equal if None.
    freq_weights : tuple of float, optional
        Relative weight of each of the beam frequencies (`freqs_hz`); equal
        if None.
    """

    pointing_dec_deg: float
    start_mjd: float
    step_s: float
    n_time: int
    freq_min_hz: float
    freq_max_hz: float
    time_weights: tuple[float, ...] | None = None
    freq_weights: tuple[float, ...] | None = None

    @classmethod
    def from_header(cls, header: fits.Header | Mapping[str, float]) -> DriftTrack:
        """Read the track from the ``DSA*`` cards of an image header.

        Raises
        ------
        InputDataError
            A card is missing (the image was not made by this pipeline), or
            the weight cards are incomplete.
        """
        missing = [k for k in TRACK_KEYS if k not in header]
        if missing:
            msg = (
                f"image header lacks {missing}: the pointing track is unknown, so "
                "the primary beam cannot be computed; re-image the MS with this "
                "pipeline"
            )
            raise InputDataError(msg)
        n_time = int(header["DSANTIME"])
        return cls(
            float(header["DSAPTDEC"]),
            float(header["DSAT0MJD"]),
            float(header["DSADTSEC"]),
            n_time,
            float(header["DSAFMIN"]),
            float(header["DSAFMAX"]),
            _weight_cards(header, _TIME_WEIGHT_CARD, n_time),
            _weight_cards(header, _FREQ_WEIGHT_CARD, _N_BEAM_FREQS),
        )

    @property
    def times_mjd(self) -> NDArray[np.float64]:
        """Return the integration mid-times, UTC MJD, shape (n_time,)."""
        return self.start_mjd + np.arange(self.n_time) * self.step_s / 86400.0

    @property
    def mid_mjd(self) -> float:
        """Return the mid-time of the group, UTC MJD."""
        return float(self.start_mjd + 0.5 * (self.n_time - 1) * self.step_s / 86400.0)

    @property
    def mean_mjd(self) -> float:
        """Return the weighted mean time of the integrations, UTC MJD.

        With equal weights this is `mid_mjd`; with part of the drift flagged
        it is the time of what the image holds (the epoch of its fluxes).
        """
        if self.time_weights is None:
            return self.mid_mjd
        offsets = np.arange(self.n_time) * self.step_s / 86400.0
        return float(self.start_mjd + np.average(offsets, weights=self.time_weights))

    def freqs_hz(self, n_freq: int = _N_BEAM_FREQS) -> NDArray[np.float64]:
        """Return ``n_freq`` frequencies spanning the band, Hz."""
        return np.linspace(self.freq_min_hz, self.freq_max_hz, n_freq)

    @property
    def mean_freq_hz(self) -> float:
        """Return the weighted mean of the beam frequencies, Hz.

        With equal (or trapezoid) weights this is the band centre; with part of
        the band flagged it is the centre of what the image holds.
        """
        freqs = self.freqs_hz()
        if self.freq_weights is None:
            return float(freqs.mean())
        return float(np.average(freqs, weights=self.freq_weights))

    def beam_centres_deg(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Return the ICRS RA and Dec of the beam centre at each integration."""
        location = EarthLocation.from_geodetic(
            dsa110.ARRAY_LON_DEG * u.deg,
            dsa110.ARRAY_LAT_DEG * u.deg,
            dsa110.ARRAY_HEIGHT_M * u.m,
        )
        return _phasing.meridian_icrs_deg(
            math.radians(self.pointing_dec_deg), self.times_mjd + 2400000.5, location
        )


def primary_beam_at(
    track: DriftTrack, ra_deg: ArrayLike, dec_deg: ArrayLike
) -> NDArray[np.float64]:
    """Return the drift-averaged primary beam at sky positions.

    Parameters
    ----------
    track : DriftTrack
        Pointing track and band of the group.
    ra_deg, dec_deg : array_like, shape (n_pos,)
        ICRS positions, degrees.

    Returns
    -------
    ndarray, shape (n_pos,)
        Power response averaged over the integrations and 8 frequencies
        spanning the band (NaN for non-finite positions).
    """
    ra = np.atleast_1d(np.asarray(ra_deg, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec_deg, dtype=np.float64))
    track_ra, track_dec = track.beam_centres_deg()
    freqs = track.freqs_hz()
    out = np.full(ra.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec))
    for start in range(0, finite.size, _CHUNK_POSITIONS):
        sel = finite[start : start + _CHUNK_POSITIONS]
        out[sel] = drift_averaged_beam(
            ra[sel],
            dec[sel],
            track_ra,
            track_dec,
            freqs,
            time_weights=track.time_weights,
            freq_weights=track.freq_weights,
        )
    return out


def primary_beam_image(
    wcs: WCS, shape: tuple[int, int], track: DriftTrack, *, n_grid: int | None = None
) -> NDArray[np.float64]:
    """Return the drift-averaged primary beam on an image's pixel grid.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS of the image.
    shape : (int, int)
        Image shape ``(n_y, n_x)``.
    track : DriftTrack
        Pointing track and band of the group.
    n_grid : int, optional
        Points per axis of the coarse grid on which the beam is evaluated
        exactly; default ``min(n_pix, 65)``.

    Returns
    -------
    ndarray of float32, shape (n_y, n_x)
        Primary-beam power response.

    Notes
    -----
    The beam (a few degrees wide) is evaluated exactly on a coarse grid of
    pixels spanning the image, including its edges, and interpolated to
    every pixel with a bicubic spline; for a 4800 x 3" image the grid spacing
    is 75 pixels (3.75') and the interpolation error is below 1e-5. The
    pixel-sized product is taken in float32 (the map is stored as float32):
    within 3e-7 of the float64 spline.
    """
    ny, nx = shape
    n_y = min(ny, n_grid or _MAX_GRID_POINTS)
    n_x = min(nx, n_grid or _MAX_GRID_POINTS)
    yg = np.linspace(0.0, ny - 1.0, n_y)
    xg = np.linspace(0.0, nx - 1.0, n_x)
    xx, yy = np.meshgrid(xg, yg)
    ra, dec = wcs.celestial.pixel_to_world_values(xx.ravel(), yy.ravel())
    pb_grid = primary_beam_at(track, ra, dec).reshape(n_y, n_x)
    if not np.all(np.isfinite(pb_grid)) or min(n_y, n_x) < 4:
        # Off-sky pixels or a tiny image: evaluate every pixel directly.
        xx, yy = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float))
        ra, dec = wcs.celestial.pixel_to_world_values(xx.ravel(), yy.ravel())
        return primary_beam_at(track, ra, dec).reshape(ny, nx).astype(np.float32)
    return _spline_on_pixels(RectBivariateSpline(yg, xg, pb_grid, kx=3, ky=3), ny, nx)


def primary_beam_key(
    wcs: WCS, shape: tuple[int, int], track: DriftTrack, *, n_grid: int | None = None
) -> str:
    """Return a key that names one `primary_beam_image` exactly.

    The map is a function of the pixel grid (shape and the celestial WCS:
    projection, reference pixel and value, cell), the pointing track (strip
    declination, start time, cadence, number of integrations, band, and the
    integration and frequency weights), the
    coarse-grid size and the beam model; the key hashes all of them, so two
    maps with the same key are the same map, and a change of any of them
    gives another key.

    Returns
    -------
    str
        16 hexadecimal digits.

    Notes
    -----
    The track's start time is part of the key on purpose: the beam centres
    are the meridian in apparent coordinates, so in the image's ICRS frame
    the track tilts with precession, nutation and aberration. Measured at
    Dec +30.5 on a 4800 x 3" grid, maps of groups 5 min apart differ by
    1.5e-6 of the peak, 12 h apart by 5.5e-5 (2.6e-4 relative at pb > 0.2):
    one map per strip would not equal the map of each group to 1e-6.
    """
    header = wcs.celestial.to_header()
    cards = {k: header[k] for k in sorted(header) if k not in ("DATE-OBS", "MJD-OBS")}
    record = {
        "model": _BEAM_MODEL_VERSION,
        "shape": [int(n) for n in shape],
        "wcs": {k: repr(v) for k, v in cards.items()},
        "track": [
            repr(v)
            for v in (
                track.pointing_dec_deg,
                track.start_mjd,
                track.step_s,
                track.n_time,
                track.freq_min_hz,
                track.freq_max_hz,
                track.time_weights,
                track.freq_weights,
            )
        ],
        "n_grid": n_grid,
    }
    text = json.dumps(record, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def image_frequency_hz(header: fits.Header | Mapping[str, object]) -> float:
    """Return the frequency a group image's fluxes refer to, Hz.

    The weighted mean frequency of the track (`DriftTrack.mean_freq_hz`)
    where the header has the weight cards: an MFS image of a source with
    spectral index alpha holds its flux at the weighted mean frequency of the
    unflagged channels (to first order), which moves by up to half the band
    when part of it is flagged, while the imager's reference frequency stays
    at the band centre. Otherwise the FREQ axis' reference value, else the
    centre of ``DSAFMIN``..``DSAFMAX``.
    """
    if f"{_FREQ_WEIGHT_CARD}001" in header:
        return DriftTrack.from_header(header).mean_freq_hz
    for axis in range(1, int(header.get("NAXIS", 0)) + 1):
        if str(header.get(f"CTYPE{axis}", "")).startswith("FREQ"):
            return float(header[f"CRVAL{axis}"])
    return 0.5 * (float(header["DSAFMIN"]) + float(header["DSAFMAX"]))


def drift_track_cards(
    times_mjd: ArrayLike,
    time_weight: ArrayLike,
    freqs_hz: ArrayLike,
    chan_weight: ArrayLike,
) -> dict[str, float | int]:
    """Return the track cards of an image made from integrations and channels.

    Parameters
    ----------
    times_mjd : array_like, shape (n,)
        Mid-times of the integrations present in the MS, UTC MJD, in any
        order; an integration the correlator dropped is simply absent.
    time_weight : array_like, shape (n,)
        Unflagged visibility weight of each integration.
    freqs_hz : array_like, shape (n_chan,)
        Channel frequencies, Hz.
    chan_weight : array_like, shape (n_chan,)
        Unflagged visibility weight of each channel.

    Returns
    -------
    dict
        ``DSAT0MJD``, ``DSADTSEC``, ``DSANTIME``, ``DSAFMIN``, ``DSAFMAX`` and
        the weight cards ``DSATWnnn`` (one per integration on the regular grid
        from the first to the last, zero where one is missing) and
        ``DSAFWnnn`` (each channel's weight shared linearly between the two
        nearest of the 8 beam frequencies), each normalised to a largest
        value of 1. With no unflagged weight at all, or over 999
        integrations, the weight cards are left out (equal weights).

    Raises
    ------
    ValueError
        Empty or mismatched inputs.

    Notes
    -----
    Times closer than 0.5 s are one integration. The cadence is the median
    spacing of the integrations; each is put on the nearest step of it from
    the first (timestamps jitter by a fraction of a step), so a gap of k
    integrations leaves k zero weights and the track still ends at the last
    one.
    """
    times = np.asarray(times_mjd, dtype=np.float64).ravel()
    w_time = np.asarray(time_weight, dtype=np.float64).ravel()
    freqs = np.asarray(freqs_hz, dtype=np.float64).ravel()
    w_chan = np.asarray(chan_weight, dtype=np.float64).ravel()
    if times.size == 0 or times.size != w_time.size or freqs.size != w_chan.size:
        msg = (
            f"need matching non-empty times/weights ({times.size}/{w_time.size}) "
            f"and channels/weights ({freqs.size}/{w_chan.size})"
        )
        raise ValueError(msg)
    order = np.argsort(times)
    times, w_time = times[order], w_time[order]
    # rows of one integration whose TIME differs by less than 0.5 s (another
    # writer's per-baseline stamps) are one integration
    start = np.r_[True, np.diff(times) * 86400.0 >= _SAME_TIME_S]
    cluster = np.cumsum(start) - 1
    w_time = np.bincount(cluster, weights=np.nan_to_num(w_time))
    times = np.bincount(cluster, weights=times) / np.bincount(cluster)
    diffs = np.diff(times)
    step_d = float(np.median(diffs[diffs > 0])) if np.any(diffs > 0) else 0.0
    index = (
        np.rint((times - times[0]) / step_d).astype(np.int64)
        if step_d > 0
        else np.zeros(times.size, dtype=np.int64)
    )
    grid = np.bincount(
        index, weights=np.maximum(np.nan_to_num(w_time), 0.0), minlength=index[-1] + 1
    )
    # each channel's weight shared linearly between its two neighbouring beam
    # frequencies (an even band gives the trapezoid rule's weights)
    w_chan = np.maximum(np.nan_to_num(w_chan), 0.0)
    span = freqs.max() - freqs.min()
    pos = (freqs - freqs.min()) / span * (_N_BEAM_FREQS - 1) if span > 0 else 0 * freqs
    lower = np.minimum(np.floor(pos).astype(np.int64), _N_BEAM_FREQS - 2)
    frac = pos - lower
    w_freq = np.bincount(
        lower, weights=(1.0 - frac) * w_chan, minlength=_N_BEAM_FREQS
    ) + np.bincount(lower + 1, weights=frac * w_chan, minlength=_N_BEAM_FREQS)
    cards: dict[str, float | int] = {
        "DSAT0MJD": float(times[0]),
        "DSADTSEC": step_d * 86400.0,
        "DSANTIME": int(grid.size),
        "DSAFMIN": float(freqs.min()),
        "DSAFMAX": float(freqs.max()),
    }
    if grid.max() > 0 and w_freq.max() > 0 and grid.size <= _MAX_WEIGHT_CARDS:
        for prefix, values in ((_TIME_WEIGHT_CARD, grid), (_FREQ_WEIGHT_CARD, w_freq)):
            for i, v in enumerate(values / values.max(), start=1):
                cards[f"{prefix}{i:03d}"] = float(f"{v:.6g}")
    return cards


def _weight_cards(
    header: fits.Header | Mapping[str, float], prefix: str, n: int
) -> tuple[float, ...] | None:
    """Return the ``prefix001..`` weights of a header, None where there are none."""
    present = [k for k in header if str(k).startswith(prefix)]
    if not present:
        return None
    names = [f"{prefix}{i:03d}" for i in range(1, n + 1)]
    if sorted(present) != names:
        msg = (
            f"image header has weight cards {sorted(present)[:3]}... but needs "
            f"exactly {names[0]}..{names[-1]}: the header was edited or truncated; "
            "re-image the MS"
        )
        raise InputDataError(msg)
    values = tuple(float(header[k]) for k in names)
    if not all(math.isfinite(v) and v >= 0 for v in values) or not sum(values) > 0:
        msg = f"image header's {prefix}nnn weights are not usable: {values}"
        raise InputDataError(msg)
    return values


def _spline_on_pixels(
    spline: RectBivariateSpline, ny: int, nx: int, *, dtype: type = np.float32
) -> NDArray:
    """Evaluate a bicubic spline on every pixel as ``By @ C @ Bx.T``.

    The tensor-product spline is the coefficient matrix ``C`` between the
    B-spline basis matrices of the two axes; two matrix products evaluate it
    on the whole pixel grid, about 5x faster than ``spline(y, x)`` (a 4800^2
    image: 0.5 s instead of 3 s). ``By @ C`` is taken in float64; the
    pixel-sized product in ``dtype``: float64 gives ``spline(y, x)`` to
    1e-15, float32 to a few 1e-8 of the beam's peak, 3x faster again.
    """
    ty, tx, coeffs = spline.tck
    by = BSpline.design_matrix(np.arange(ny, dtype=float), ty, 3).toarray()
    bx = BSpline.design_matrix(np.arange(nx, dtype=float), tx, 3).toarray()
    left = by @ coeffs.reshape(by.shape[1], bx.shape[1])
    return left.astype(dtype) @ bx.T.astype(dtype)
