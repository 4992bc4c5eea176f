"""FITS header cards of images and mosaics, written in one place.

Every image (WSClean's or CASA's) and every mosaic carries the same standard
cards, so that astropy, DS9, CARTA and TOPCAT read them without guessing:

- ``RADESYS = 'ICRS'`` and ``EQUINOX = 2000.0`` (without RADESYS astropy
  assumes FK5, while the phase centres and the mosaic grid are ICRS);
- ``TELESCOP`` (the MS's OBSERVATION.TELESCOPE_NAME, i.e. the configured
  ``conversion.ms_telescope_name``) and ``INSTRUME`` (the raw files'
  instrument name);
- ``DATE-OBS``/``DATE-AVG``/``DATE-END``, ``MJD-OBS``/``MJD-AVG``/``MJD-END``
  and ``TIMESYS = 'UTC'``: start, mid-point and end of the data (the MS's
  OBSERVATION.TIME_RANGE; for a mosaic, of all its images);
- the frequency: a FREQ axis in images, ``RESTFRQ`` (the mean image
  frequency, Hz) in the 2-D mosaics;
- ``OBSRA``/``OBSDEC``: the pointing (meridian) direction at mid-time;
- ``OBSGEO-X/Y/Z`` and ``-L/B/H``: the array centre (images);
- ``BUNIT`` and the restoring beam ``BMAJ``/``BMIN``/``BPA`` (the imagers
  write these; mosaics take the members' median).

Provenance values are never cut: long strings go into standard 8-character
keys, which astropy continues over ``CONTINUE`` cards; a long value of a
HIERARCH key (which cannot be continued) is also written in full as
``HISTORY`` lines.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import erfa
import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS, FITSFixedWarning

from dsa110_contimg._optional import require

__all__ = [
    "celestial_wcs",
    "set_header_cards",
    "apply_header_cards",
    "ms_observation_cards",
    "mosaic_observation_cards",
]

_INSTRUMENT_KEY = "DSA110_INSTRUMENT"  # written by data_ingestion._ms_metadata
_CARD = 80  # characters of one header card
_IAU1976_ELLIPSOID = (6378140.0, 1.0 / 298.257)  # equatorial radius (m), flattening


def set_header_cards(path: Path, cards: Mapping[str, object]) -> None:
    """Set header cards of the primary HDU of a FITS file in place.

    See `apply_header_cards` for how keys and values are written.
    """
    with fits.open(path, mode="update") as hdul:
        apply_header_cards(hdul[0].header, cards)


def apply_header_cards(header: fits.Header, cards: Mapping[str, object]) -> None:
    """Set cards in ``header``.

    Keys longer than 8 characters become HIERARCH cards; values that are not
    numbers or booleans are stored as strings, never truncated; a
    ``HISTORY`` key may hold a list of lines; a ``(value, comment)`` tuple
    sets the comment too.
    """
    for key, value in cards.items():
        if key == "HISTORY":
            for line in value if isinstance(value, list | tuple) else [value]:
                header.add_history(str(line))
            continue
        comment = None
        if isinstance(value, tuple):
            value, comment = value
        if not isinstance(value, bool | int | float):
            value = str(value)
        if len(key) <= 8:
            header[key] = value if comment is None else (value, comment)
            continue
        # "HIERARCH KEY = 'value'" must fit one 80-character card
        room = _CARD - len("HIERARCH ") - len(key) - len(" = ''")
        if isinstance(value, str) and len(value) > room:
            header[f"HIERARCH {key}"] = value[: room - 3] + "..."
            header.add_history(f"{key} = {value}")
        else:
            header[f"HIERARCH {key}"] = value


def _date_cards(start_mjd: float, end_mjd: float) -> dict[str, object]:
    start, end = Time(start_mjd, format="mjd"), Time(end_mjd, format="mjd")
    mid = Time(0.5 * (start_mjd + end_mjd), format="mjd")
    return {
        "TIMESYS": "UTC",
        "DATE-OBS": (start.isot, "start of the data (UTC)"),
        "DATE-AVG": (mid.isot, "mid-point of the data (UTC)"),
        "DATE-END": (end.isot, "end of the data (UTC)"),
        "MJD-OBS": (float(start_mjd), "[d] start of the data"),
        "MJD-AVG": (float(mid.mjd), "[d] mid-point of the data"),
        "MJD-END": (float(end_mjd), "[d] end of the data"),
    }


def ms_observation_cards(ms_path: Path) -> dict[str, object]:
    """Return the standard cards of an image made from one MS.

    Read from the MS: telescope name and time range (OBSERVATION), the
    instrument (keyword ``DSA110_INSTRUMENT``, else the telescope name) and
    the pointing at mid-time (POINTING, else the phase centre).
    """
    tables = require("casacore.tables", "casa")
    p = str(ms_path)
    with tables.table(f"{p}/OBSERVATION", ack=False) as obs:
        telescope = str(obs.getcell("TELESCOPE_NAME", 0))
        t0_s, t1_s = (float(v) for v in obs.getcell("TIME_RANGE", 0))
        centre = (
            obs.getcell("TELESCOPE_LOCATION", 0)
            if "TELESCOPE_LOCATION" in obs.colnames()
            else None
        )
    if centre is None:
        with tables.table(f"{p}/ANTENNA", ack=False) as ant:
            centre = ant.getcol("POSITION").mean(axis=0)
    with tables.table(p, ack=False) as ms:
        instrument = str(ms.getkeywords().get(_INSTRUMENT_KEY, telescope))
        if t1_s <= t0_s:  # an MS not written by this pipeline
            times = ms.getcol("TIME")
            half = 0.5 * float(np.median(ms.getcol("INTERVAL")))
            t0_s, t1_s = float(times.min()) - half, float(times.max()) + half
    ra_deg, dec_deg = _mid_pointing_deg(p, 0.5 * (t0_s + t1_s))
    return {
        "RADESYS": "ICRS",
        "EQUINOX": 2000.0,
        "TELESCOP": telescope,
        "INSTRUME": instrument,
        **_date_cards(t0_s / 86400.0, t1_s / 86400.0),
        "OBSRA": (ra_deg, "[deg] pointing RA at DATE-AVG (ICRS)"),
        "OBSDEC": (dec_deg, "[deg] pointing Dec at DATE-AVG (ICRS)"),
        **_obsgeo_cards(np.asarray(centre, dtype=np.float64)),
    }


def _obsgeo_cards(itrf_m: np.ndarray) -> dict[str, object]:
    """OBSGEO-X/Y/Z and -L/B/H of the array centre (ITRF, metres).

    Written from the MS's own array centre because CASA's ``exportfits``
    writes the position of the observatory named TELESCOP from its
    Observatories table, whose ``OVRO_MMA`` row is unusable (a geodetic height
    stored as an ITRF radius: OBSGEO-X/Y/Z within 1.2 km of the Earth's
    centre).
    """
    # The FITS standard (and wcslib's consistency check) takes OBSGEO-L/B/H
    # on the IAU 1976 ellipsoid; WGS84 heights differ by 3 m.
    lon, lat, height = erfa.gc2gde(*_IAU1976_ELLIPSOID, itrf_m)
    return {
        "OBSGEO-X": (float(itrf_m[0]), "[m] array centre, ITRF"),
        "OBSGEO-Y": (float(itrf_m[1]), "[m] array centre, ITRF"),
        "OBSGEO-Z": (float(itrf_m[2]), "[m] array centre, ITRF"),
        "OBSGEO-L": (float(np.degrees(lon)), "[deg] array centre longitude"),
        "OBSGEO-B": (float(np.degrees(lat)), "[deg] array centre latitude"),
        "OBSGEO-H": (float(height), "[m] array centre height (IAU 1976)"),
    }


def _mid_pointing_deg(ms_path: str, t_mid_s: float) -> tuple[float, float]:
    tables = require("casacore.tables", "casa")
    with tables.table(f"{ms_path}/POINTING", ack=False) as pt:
        if pt.nrows():
            times = pt.getcol("TIME")
            direction = pt.getcol("DIRECTION")[:, :, 0]
            order = np.argsort(times)
            ra = np.interp(t_mid_s, times[order], np.unwrap(direction[order, 0]))
            dec = np.interp(t_mid_s, times[order], direction[order, 1])
            return float(np.degrees(ra) % 360.0), float(np.degrees(dec))
    with tables.table(f"{ms_path}/FIELD", ack=False) as field:
        ra, dec = field.getcol("PHASE_DIR")[0, 0]
    return float(np.degrees(ra) % 360.0), float(np.degrees(dec))


def mosaic_observation_cards(
    members: Sequence[fits.Header], *, freq_hz: float
) -> dict[str, object]:
    """Return the standard cards of a mosaic of images with headers ``members``.

    Times span the members' (``MJD-OBS`` .. ``MJD-END``, else their drift
    track's ``DSAT0MJD``, ``DSADTSEC``, ``DSANTIME``); telescope and
    instrument are the members' (comma-joined when they differ); ``RESTFRQ``
    is ``freq_hz``, the mean image frequency.
    """
    spans = [_time_span_mjd(h) for h in members]
    starts = [s[0] for s in spans if s is not None]
    ends = [s[1] for s in spans if s is not None]
    cards: dict[str, object] = {
        "RADESYS": "ICRS",
        "EQUINOX": 2000.0,
        "TELESCOP": _joined(members, "TELESCOP"),
        "INSTRUME": _joined(members, "INSTRUME"),
        "RESTFRQ": (float(freq_hz), "[Hz] mean image frequency"),
    }
    if starts and ends:
        cards.update(_date_cards(min(starts), max(ends)))
    for key in ("OBSGEO-X", "OBSGEO-Y", "OBSGEO-Z", "OBSGEO-L", "OBSGEO-B", "OBSGEO-H"):
        values = [float(h[key]) for h in members if key in h]
        if values:
            cards[key] = float(np.mean(values))
    ras = [float(h["OBSRA"]) for h in members if "OBSRA" in h]
    decs = [float(h["OBSDEC"]) for h in members if "OBSDEC" in h]
    if ras and decs:
        rad = np.deg2rad(ras)  # circular mean: the RA 0/360 wrap
        ra = np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())) % 360.0
        cards["OBSRA"] = (float(ra), "[deg] mean pointing RA of the images (ICRS)")
        cards["OBSDEC"] = (float(np.mean(decs)), "[deg] mean pointing Dec (ICRS)")
    return cards


def _time_span_mjd(header: fits.Header) -> tuple[float, float] | None:
    """Start and end MJD of an image: its cards, else its drift track's cards."""
    if "MJD-OBS" in header and "MJD-END" in header:
        return float(header["MJD-OBS"]), float(header["MJD-END"])
    if all(k in header for k in ("DSAT0MJD", "DSADTSEC", "DSANTIME")):
        t0, step_d = float(header["DSAT0MJD"]), float(header["DSADTSEC"]) / 86400.0
        return t0 - 0.5 * step_d, t0 + (int(header["DSANTIME"]) - 0.5) * step_d
    return None


def _joined(members: Sequence[fits.Header], key: str) -> str:
    values = sorted({str(h[key]) for h in members if key in h})
    return ",".join(values) or "UNKNOWN"


def celestial_wcs(header: fits.Header) -> WCS:
    """Return the 2-D celestial WCS of an image header (quietly fixing dates)."""
    with warnings.catch_warnings():  # WSClean's DATE-OBS gets a harmless 'datfix'
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header).celestial
