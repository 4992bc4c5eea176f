"""Measurement Set metadata that pyuvdata does not write the way CASA expects.

pyuvdata's ``write_ms`` indexes the ANTENNA table by antenna number (blank
rows for unused numbers), leaves the mount empty, points every antenna at the
zenith (as the north celestial pole in J2000), leaves OBSERVATION.TIME_RANGE
at zero and writes ``nsamples`` as the weights. This module fixes each of
those, before the write (antenna numbering, weights) and after it (mount,
pointing, observation).

Conventions
-----------
- ANTENNA rows are the antennas that have baselines in the raw files, in
  ascending raw antenna number; the raw names (DSA-110 writes the station
  number, "1".."117") are kept in NAME and STATION. The raw number of each row
  is in the ``DSA110_RAW_ANTENNA_NUMBERS`` keyword of the ANTENNA table, so a
  file whose numbers have gaps maps back losslessly.
- WEIGHT_SPECTRUM, WEIGHT and SIGMA follow the radiometer equation and CASA's
  per-channel convention (CASA >= 4.2.2): ``SIGMA`` is the rms of the real (or
  imaginary) part of one channel's visibility, ``SEFD / sqrt(2 dnu tau n)``,
  and ``WEIGHT = 1 / SIGMA**2``, with ``dnu`` the channel width after
  averaging, ``tau`` the integration time and ``n`` the raw ``nsamples``.
- POINTING: DSA-110 does not track; every antenna points at the meridian at
  the strip's (apparent) declination. Each integration's row holds that
  direction in ICRS, the frame of the FIELD table.
"""

from __future__ import annotations

import numpy as np
from astropy.coordinates import EarthLocation
from astropy.time import Time
from numpy.typing import NDArray
from pyuvdata import UVData

from dsa110_contimg._optional import require
from dsa110_contimg.data_ingestion import _phasing
from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.telescope import dsa110

__all__ = [
    "RAW_NUMBERS_KEY",
    "INSTRUMENT_KEY",
    "compact_antennas",
    "radiometer_sigma_jy",
    "set_radiometer_weights",
    "write_ms_metadata",
]

RAW_NUMBERS_KEY = "DSA110_RAW_ANTENNA_NUMBERS"
INSTRUMENT_KEY = "DSA110_INSTRUMENT"
_CASA_MOUNT = "ALT-AZ"


def compact_antennas(uv: UVData) -> NDArray[np.int_]:
    """Keep only antennas with data and number them 0..N-1, in place.

    The MS uses antenna numbers as ANTENNA row indices, so raw numbers that do
    not start at 0 or have gaps (unused station slots) would leave blank rows
    that CASA counts as antennas. The mount becomes alt-az and the dish
    diameter DSA-110's, whatever the raw files say.

    Parameters
    ----------
    uv : UVData
        Group data.

    Returns
    -------
    ndarray of int
        The raw antenna number of each new antenna (row) index.
    """
    tel = uv.telescope
    numbers = np.asarray(tel.antenna_numbers)
    used = np.unique(np.concatenate([uv.ant_1_array, uv.ant_2_array]))
    unknown = np.setdiff1d(used, numbers)
    if unknown.size:
        msg = (
            f"baselines use antenna numbers {unknown.tolist()} that the file's "
            "antenna table does not list; the raw files are inconsistent"
        )
        raise InputDataError(msg)
    keep = np.flatnonzero(np.isin(numbers, used))
    keep = keep[np.argsort(numbers[keep])]
    raw = numbers[keep]
    tel._select_along_param_axis({"Nants": keep})
    index = np.full(int(numbers.max()) + 1, -1)
    index[raw] = np.arange(raw.size)
    uv.ant_1_array = index[uv.ant_1_array]
    uv.ant_2_array = index[uv.ant_2_array]
    tel.antenna_numbers = np.arange(raw.size)
    tel.antenna_diameters = np.full(raw.size, dsa110.DISH_DIAMETER_M)
    tel.mount_type = ["alt-az"] * raw.size
    uv.baseline_array = uv.antnums_to_baseline(uv.ant_1_array, uv.ant_2_array)
    return raw


def radiometer_sigma_jy(
    channel_width_hz: NDArray[np.float64] | float,
    integration_time_s: NDArray[np.float64] | float,
    *,
    sefd_jy: float = dsa110.SEFD_JY,
    nsamples: NDArray[np.floating] | float = 1.0,
) -> NDArray[np.float64]:
    """Return the rms of one component of a cross-correlation, Jy.

    ``sigma = SEFD / sqrt(2 dnu tau n)`` (Wrobel & Walker 1999, eq. 9-14, for
    two antennas of equal SEFD); ``nsamples`` of 0 give ``inf``.
    """
    dof = 2.0 * np.asarray(channel_width_hz) * np.asarray(integration_time_s)
    with np.errstate(divide="ignore"):
        return sefd_jy / np.sqrt(dof * np.asarray(nsamples, dtype=np.float64))


def set_radiometer_weights(uv: UVData, *, sefd_jy: float = dsa110.SEFD_JY) -> None:
    """Turn ``uv.nsample_array`` into radiometer weights ``1 / sigma**2``, in place.

    pyuvdata's ``write_ms`` writes ``nsample_array`` as WEIGHT_SPECTRUM and its
    channel median as WEIGHT, with ``SIGMA = WEIGHT**-0.5``; so after this call
    all three columns mean what CASA and WSClean take them to mean. Call it
    just before writing: the object's ``nsample_array`` no longer holds
    sample counts afterwards.
    """
    width = np.abs(np.asarray(uv.channel_width, dtype=np.float64))
    tau = np.asarray(uv.integration_time, dtype=np.float64)
    per_sample = 2.0 * width[None, :] * tau[:, None] / sefd_jy**2
    uv.nsample_array *= per_sample[:, :, None].astype(uv.nsample_array.dtype)


def write_ms_metadata(
    ms_path: str,
    *,
    pointing_dec_rad: float,
    location: EarthLocation,
    raw_antenna_numbers: NDArray[np.int_],
    instrument: str,
    observer: str,
    project: str,
) -> None:
    """Fix ANTENNA.MOUNT, POINTING and OBSERVATION of an MS written by pyuvdata.

    Parameters
    ----------
    ms_path : str
        The MS (written by ``UVData.write_ms`` after `compact_antennas`).
    pointing_dec_rad : float
        Apparent pointing declination from the raw files.
    location : EarthLocation
        Array centre.
    raw_antenna_numbers : ndarray of int
        Raw number of each ANTENNA row (from `compact_antennas`).
    instrument : str
        Instrument name of the raw files (kept when the telescope name is
        set to the one CASA knows the site by).
    observer, project : str
        OBSERVATION.OBSERVER and PROJECT.
    """
    tables = require("casacore.tables", "casa")
    with tables.table(f"{ms_path}/ANTENNA", readonly=False, ack=False) as ant:
        ant.putcol("MOUNT", [_CASA_MOUNT] * ant.nrows())
        ant.putkeyword(RAW_NUMBERS_KEY, np.asarray(raw_antenna_numbers, dtype=np.int32))
    with tables.table(ms_path, readonly=False, ack=False) as ms:
        times_s = np.unique(ms.getcol("TIME"))
        interval_s = float(np.median(ms.getcol("INTERVAL")))
        ms.putkeyword(INSTRUMENT_KEY, instrument)
    _write_pointing(ms_path, pointing_dec_rad=pointing_dec_rad, location=location)
    with tables.table(f"{ms_path}/OBSERVATION", readonly=False, ack=False) as obs:
        span = [times_s[0] - 0.5 * interval_s, times_s[-1] + 0.5 * interval_s]
        obs.putcell("TIME_RANGE", 0, np.array(span))
        obs.putcell("RELEASE_DATE", 0, float(span[1]))
        obs.putcell("OBSERVER", 0, observer)
        obs.putcell("PROJECT", 0, project)
        obs.putcell("SCHEDULE_TYPE", 0, "drift scan")
        obs.putcell("SCHEDULE", 0, np.array([f"instrument={instrument}"]))
        obs.putcell(
            "LOG", 0, np.array([f"meridian drift scan, instrument {instrument}"])
        )


def _write_pointing(
    ms_path: str, *, pointing_dec_rad: float, location: EarthLocation
) -> None:
    """Point every POINTING row at the meridian at its time (ICRS)."""
    tables = require("casacore.tables", "casa")
    with tables.table(f"{ms_path}/POINTING", readonly=False, ack=False) as pt:
        times_s = pt.getcol("TIME")
        uniq, inverse = np.unique(times_s, return_inverse=True)
        jd = Time(uniq / 86400.0, format="mjd", scale="utc").jd
        ra_deg, dec_deg = _phasing.meridian_icrs_deg(pointing_dec_rad, jd, location)
        direction = np.zeros((times_s.size, 2, 1))
        direction[:, 0, 0] = np.deg2rad(ra_deg)[inverse]
        direction[:, 1, 0] = np.deg2rad(dec_deg)[inverse]
        for col in ("DIRECTION", "TARGET"):
            pt.putcol(col, direction)
            info = pt.getcolkeyword(col, "MEASINFO")
            info["Ref"] = "ICRS"
            pt.putcolkeyword(col, "MEASINFO", info)
        pt.putcol("NAME", ["MERIDIAN"] * times_s.size)
        pt.putcol("TRACKING", np.zeros(times_s.size, dtype=bool))
