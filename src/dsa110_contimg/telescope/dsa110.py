"""DSA-110 instrument facts, pinned in one place.

Every constant the pipeline relies on (site, antennas, band, subbands, timing,
file naming) lives here and is tested in ``tests/unit/test_telescope.py``.
Values follow ``DSA110.md`` (checked against real data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from dsa110_contimg.products import ms_name

__all__ = [
    "SITE_LAT_DEG",
    "SITE_LON_DEG",
    "SITE_HEIGHT_M",
    "ARRAY_LAT_DEG",
    "ARRAY_LON_DEG",
    "ARRAY_HEIGHT_M",
    "DISH_DIAMETER_M",
    "SEFD_JY",
    "N_SUBBANDS",
    "N_CHAN_PER_SUBBAND",
    "CHANNEL_WIDTH_HZ",
    "BAND_LOW_HZ",
    "BAND_HIGH_HZ",
    "INTEGRATION_TIME_S",
    "N_TIMES_PER_GROUP",
    "GROUP_DURATION_S",
    "N_ANTENNAS_ACTIVE",
    "N_STATION_SLOTS",
    "TELESCOPE_NAME",
    "CASA_TELESCOPE_NAME",
    "POLARIZATIONS",
    "SubbandFile",
    "subband_frequencies_hz",
    "band_frequencies_hz",
    "subband_filename",
    "parse_subband_filename",
    "ms_filename",
    "antenna_layout_enu",
    "ANTENNA_NAMING_SCHEMES",
    "station_numbers",
    "antenna_names",
    "antenna_numbers",
]

# Site of the OVRO observatory and the array's T-centre (used as telescope location).
SITE_LAT_DEG = 37.2339
SITE_LON_DEG = -118.2825
SITE_HEIGHT_M = 1222.0
ARRAY_LAT_DEG = 37.233386982
ARRAY_LON_DEG = -118.283405115
ARRAY_HEIGHT_M = 1188.0519

DISH_DIAMETER_M = 4.65
SEFD_JY = 6500.0

N_SUBBANDS = 16
N_CHAN_PER_SUBBAND = 48
CHANNEL_WIDTH_HZ = 244_140.625
BAND_LOW_HZ = 1311.25e6
BAND_HIGH_HZ = BAND_LOW_HZ + N_SUBBANDS * N_CHAN_PER_SUBBAND * CHANNEL_WIDTH_HZ

INTEGRATION_TIME_S = 12.884902
N_TIMES_PER_GROUP = 24
GROUP_DURATION_S = INTEGRATION_TIME_S * N_TIMES_PER_GROUP

N_ANTENNAS_ACTIVE = 96
N_STATION_SLOTS = 117

# pyuvdata / UVH5 name, and the name CASA's observatory table knows the site by.
TELESCOPE_NAME = "DSA_110"
CASA_TELESCOPE_NAME = "OVRO_MMA"
POLARIZATIONS = ("XX", "YY")

_EW_SPACING_M = 5.75
_EW_HALF_SPAN_M = 198.0
_NS_SPACING_M = 8.653
_NS_START_M = 7.0
_NS_END_M = 440.0
_N_EW_ACTIVE = 47
_N_NS_ACTIVE = 35
_N_OUTRIGGERS = 14

_FILENAME_RE = re.compile(
    r"^(?P<stamp>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})_sb(?P<sb>\d{2})\.hdf5$"
)


@dataclass(frozen=True, slots=True)
class SubbandFile:
    """One raw file of a subband group, identified from its name."""

    path: Path
    timestamp: datetime
    subband: int


def subband_frequencies_hz(
    subband: int, *, n_chan: int = N_CHAN_PER_SUBBAND
) -> NDArray[np.float64]:
    """Return channel centre frequencies of one subband, in raw-file order.

    sb00 is the highest-frequency subband and, as in the raw files, channels
    within a subband run from high to low frequency. With ``n_chan`` smaller
    than 48 the subband is split into ``n_chan`` wider channels (simulation
    and testing sizes) covering the same 11.72 MHz.

    Parameters
    ----------
    subband : int
        Subband index 0..15.
    n_chan : int
        Channels in the subband.

    Returns
    -------
    ndarray, shape (n_chan,)
        Descending channel centres in Hz.
    """
    if not 0 <= subband < N_SUBBANDS:
        msg = f"subband must be in 0..{N_SUBBANDS - 1}, got {subband}"
        raise ValueError(msg)
    width_hz = N_CHAN_PER_SUBBAND * CHANNEL_WIDTH_HZ / n_chan
    top_hz = BAND_HIGH_HZ - subband * N_CHAN_PER_SUBBAND * CHANNEL_WIDTH_HZ
    return top_hz - (np.arange(n_chan) + 0.5) * width_hz


def band_frequencies_hz(*, n_chan: int = N_CHAN_PER_SUBBAND) -> NDArray[np.float64]:
    """Return all channel centres of the band in ascending order (MS order)."""
    freqs = np.concatenate(
        [subband_frequencies_hz(sb, n_chan=n_chan) for sb in range(N_SUBBANDS)]
    )
    return np.sort(freqs)


def subband_filename(timestamp: datetime, subband: int) -> str:
    """Return the raw file name ``YYYY-MM-DDTHH:MM:SS_sbNN.hdf5``."""
    return f"{timestamp.strftime('%Y-%m-%dT%H:%M:%S')}_sb{subband:02d}.hdf5"


def parse_subband_filename(path: str | Path) -> SubbandFile | None:
    """Parse a raw file name; return None when it is not a subband file."""
    path = Path(path)
    match = _FILENAME_RE.match(path.name)
    if match is None:
        return None
    stamp = datetime.strptime(match["stamp"], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return SubbandFile(path=path, timestamp=stamp, subband=int(match["sb"]))


def ms_filename(timestamp: datetime) -> str:
    """Return the MS name of a group, e.g. ``drift_20230101T000000_00.ms``."""
    return ms_name(timestamp)


def antenna_layout_enu(*, n_antennas: int = N_ANTENNAS_ACTIVE) -> NDArray[np.float64]:
    """Return a DSA-110-like T-shaped layout in local East-North-Up metres.

    The full array (``n_antennas=96``) has 47 antennas on the E-W arm (5.75 m
    slots over +-198 m), 35 on the N-S arm (8.653 m slots, 7-440 m north) and
    14 outriggers at 0.5-2 km. Smaller arrays keep the same shape with fewer
    antennas on each arm (testing sizes); they always keep outriggers so the
    synthesized beam stays DSA-110-like.

    Parameters
    ----------
    n_antennas : int
        Number of active antennas, 8..96.

    Returns
    -------
    ndarray, shape (n_antennas, 3)
        East, north, up offsets from the array centre in metres.
    """
    if not 8 <= n_antennas <= N_ANTENNAS_ACTIVE:
        msg = f"n_antennas must be in 8..{N_ANTENNAS_ACTIVE}, got {n_antennas}"
        raise ValueError(msg)
    n_ew, n_ns, n_out = _arm_counts(n_antennas)

    ew_slots = np.arange(-_EW_HALF_SPAN_M, _EW_HALF_SPAN_M + 1e-6, _EW_SPACING_M)
    ns_slots = np.arange(_NS_START_M, _NS_END_M + 1e-6, _NS_SPACING_M)
    ew = ew_slots[
        np.unique(np.linspace(0, ew_slots.size - 1, n_ew).round().astype(int))
    ]
    ns = ns_slots[
        np.unique(np.linspace(0, ns_slots.size - 1, n_ns).round().astype(int))
    ]

    # Outriggers: fixed, deterministic positions 0.5-2 km from the centre, on a
    # half-turn spiral so that the longest baseline stays ~2.7 km (a full turn
    # put the two farthest outriggers 3.2 km apart, beyond the 3210 m QA gate).
    angles = np.deg2rad(np.linspace(15.0, 195.0, _N_OUTRIGGERS))
    radii = np.linspace(500.0, 2000.0, _N_OUTRIGGERS)
    order = np.linspace(0, _N_OUTRIGGERS - 1, n_out).round().astype(int)
    out_e = radii[order] * np.cos(angles[order])
    out_n = radii[order] * np.sin(angles[order])

    east = np.concatenate([ew, np.zeros(ns.size), out_e])
    north = np.concatenate([np.zeros(ew.size), ns, out_n])
    up = np.zeros(east.size)
    return np.column_stack([east, north, up])


def _arm_counts(n_antennas: int) -> tuple[int, int, int]:
    """Return the antennas on the E-W arm, the N-S arm and the outriggers."""
    frac = n_antennas / N_ANTENNAS_ACTIVE
    n_out = max(3, round(_N_OUTRIGGERS * frac))
    n_ns = max(2, round(_N_NS_ACTIVE * frac))
    return n_antennas - n_out - n_ns, n_ns, n_out


# Station numbers (1-based, DSA-001..117) of each part of the T.
_EW_STATIONS = (1, 51)
_NS_STATIONS = (52, 102)
_OUTRIGGER_STATIONS = (103, N_STATION_SLOTS)

# How antennas are named: "station" as the real correlator writes them
# (antenna_names "1".."117" = str(antenna_number + 1), antenna_numbers 0..116,
# DSA110.md); "pad" the seed simulator's "pad001".. with numbers 1..n.
ANTENNA_NAMING_SCHEMES = ("station", "pad")


def station_numbers(n_antennas: int = N_ANTENNAS_ACTIVE) -> NDArray[np.int_]:
    """Return the 1-based station number of each antenna of `antenna_layout_enu`.

    The layout's E-W arm antennas occupy stations 1-51, the N-S arm 52-102 and
    the outriggers 103-117 (as the real pads, ``dsa110_stations.csv``), spread
    over each range as the antennas are spread over the arm, so a smaller
    array has gaps in its numbering, as the real one has.
    """
    counts = _arm_counts(n_antennas)
    parts = [
        np.linspace(lo, hi, n).round().astype(int)
        for n, (lo, hi) in zip(
            counts, (_EW_STATIONS, _NS_STATIONS, _OUTRIGGER_STATIONS), strict=True
        )
    ]
    return np.concatenate(parts)


def _check_scheme(scheme: str) -> None:
    if scheme not in ANTENNA_NAMING_SCHEMES:
        msg = (
            f"antenna naming scheme must be one of {ANTENNA_NAMING_SCHEMES}, "
            f"got {scheme!r}"
        )
        raise ValueError(msg)


def antenna_names(n_antennas: int, scheme: str = "pad") -> list[str]:
    """Return the antenna names of ``n_antennas`` layout antennas.

    Parameters
    ----------
    n_antennas : int
        Number of antennas of `antenna_layout_enu`.
    scheme : {"pad", "station"}
        ``"pad"``: ``pad001``, ``pad002``...; ``"station"``: the real files'
        station numbers as strings (``"1"`` .. ``"117"``, with gaps).
    """
    _check_scheme(scheme)
    if scheme == "station":
        return [str(int(n)) for n in station_numbers(n_antennas)]
    return [f"pad{i + 1:03d}" for i in range(n_antennas)]


def antenna_numbers(n_antennas: int, scheme: str = "pad") -> NDArray[np.int_]:
    """Return the antenna numbers matching `antenna_names`.

    ``"station"``: station number - 1 (0..116, as the correlator writes);
    ``"pad"``: 1..n.
    """
    _check_scheme(scheme)
    if scheme == "station":
        return station_numbers(n_antennas) - 1
    return np.arange(1, n_antennas + 1)
