"""Flux calibrators: the shipped list, flux models, transits and ranking."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import EarthLocation
from astropy.time import Time

from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.telescope.beam_models import airy_beam

__all__ = [
    "Calibrator",
    "CalibratorTransit",
    "load_calibrators",
    "transit_time",
    "find_transits",
]

_SIDEREAL_DEG_PER_DAY = 360.98564736629
_REF_FREQ_HZ = 1.4e9


@dataclass(frozen=True, slots=True)
class Calibrator:
    """A flux calibrator with its published spectral model."""

    name: str
    ra_deg: float
    dec_deg: float
    model: str  # "pb17" or "powerlaw"
    coefficients: tuple[float, ...] = ()
    flux_jy: float = 0.0
    spectral_index: float = 0.0
    ref_freq_hz: float = _REF_FREQ_HZ

    def flux_at(self, freq_hz: float | np.ndarray) -> np.ndarray:
        """Return the flux density in Jy at ``freq_hz``.

        Notes
        -----
        Perley & Butler (2017) model: :math:`\\log_{10} S = \\sum_k a_k x^k`,
        :math:`x = \\log_{10}(\\nu / \\mathrm{GHz})`.
        """
        freq = np.asarray(freq_hz, dtype=np.float64)
        if self.model == "pb17":
            x = np.log10(freq / 1e9)
            return 10.0 ** sum(a * x**k for k, a in enumerate(self.coefficients))
        return self.flux_jy * (freq / self.ref_freq_hz) ** self.spectral_index

    def as_sky(self) -> SkyCatalog:
        """Return a one-source power-law sky (local spectral index at 1.4 GHz)."""
        s1, s2 = self.flux_at(np.array([1.3e9, 1.5e9]))
        alpha = float(np.log(s2 / s1) / np.log(1.5 / 1.3))
        return SkyCatalog(
            name=np.array([self.name]),
            ra_deg=np.array([self.ra_deg]),
            dec_deg=np.array([self.dec_deg]),
            flux_jy=np.array([float(self.flux_at(_REF_FREQ_HZ))]),
            spectral_index=np.array([alpha]),
            ref_freq_hz=np.array([_REF_FREQ_HZ]),
        )


@dataclass(frozen=True, slots=True)
class CalibratorTransit:
    """A calibrator crossing the meridian within the strip's beam."""

    calibrator: Calibrator
    transit_time: Time
    beam_weighted_flux_jy: float
    offset_deg: float


def load_calibrators(path: Path | None = None) -> list[Calibrator]:
    """Load a calibrator list (default: the shipped ``data/calibrators.csv``).

    Raises
    ------
    InputDataError
        A row is malformed; the message names the file and line.
    """
    if path is None:
        text = (
            resources.files("dsa110_contimg")
            .joinpath("data/calibrators.csv")
            .read_text()
        )
        source = "dsa110_contimg/data/calibrators.csv"
    else:
        try:
            text = Path(path).read_text()
        except OSError as err:
            msg = f"calibrator list {path} cannot be read: {err}"
            raise InputDataError(msg) from err
        source = str(path)
    lines = [
        (i + 1, ln)
        for i, ln in enumerate(text.splitlines())
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    reader = csv.DictReader([ln for _, ln in lines])
    out = []
    for (line_no, _), row in zip(lines[1:], reader, strict=True):
        try:
            model = row["model"].strip()
            if model == "pb17":
                coeffs = tuple(float(row[f"a{k}"] or 0.0) for k in range(6))
                cal = Calibrator(
                    row["name"],
                    float(row["ra_deg"]),
                    float(row["dec_deg"]),
                    model,
                    coefficients=coeffs,
                )
            elif model == "powerlaw":
                cal = Calibrator(
                    row["name"],
                    float(row["ra_deg"]),
                    float(row["dec_deg"]),
                    model,
                    flux_jy=float(row["flux_jy"]),
                    spectral_index=float(row["spectral_index"]),
                    ref_freq_hz=float(row["ref_freq_hz"] or _REF_FREQ_HZ),
                )
            else:
                msg = f"unknown model {model!r} (pb17 or powerlaw)"
                raise ValueError(msg)
        except (KeyError, ValueError, TypeError) as err:
            msg = f"{source}, line {line_no}: bad calibrator row ({err})"
            raise InputDataError(msg) from err
        out.append(cal)
    return out


def _location() -> EarthLocation:
    return EarthLocation.from_geodetic(
        dsa110.ARRAY_LON_DEG * u.deg,
        dsa110.ARRAY_LAT_DEG * u.deg,
        dsa110.ARRAY_HEIGHT_M * u.m,
    )


def transit_time(ra_deg: float, after: Time) -> Time:
    """Return the first transit of ``ra_deg`` at DSA-110 at or after ``after``."""
    t = Time(after, location=_location())
    for _ in range(3):
        lst = t.sidereal_time("apparent").deg
        dra = (ra_deg - lst) % 360.0
        if dra > 359.999:
            dra = 0.0
        t = t + dra / _SIDEREAL_DEG_PER_DAY * u.day
    return Time(t.utc.isot, scale="utc")


def find_transits(
    calibrators: list[Calibrator],
    dec_strip_deg: float,
    start: Time,
    end: Time,
    *,
    min_flux_jy: float = 5.0,
    max_offset_deg: float | None = None,
) -> list[CalibratorTransit]:
    """Return calibrator transits in ``[start, end)`` seen by the strip's beam.

    Ranked by beam-weighted flux (catalogue flux at 1.4 GHz times the Airy
    beam at the calibrator's declination offset from the strip).
    ``max_offset_deg`` defaults to the half-power radius at 1.4 GHz.
    """
    from dsa110_contimg.telescope.beam_models import fwhm_deg

    limit = (
        max_offset_deg if max_offset_deg is not None else 0.5 * fwhm_deg(_REF_FREQ_HZ)
    )
    found = []
    for cal in calibrators:
        offset = abs(cal.dec_deg - dec_strip_deg)
        flux = float(cal.flux_at(_REF_FREQ_HZ))
        if offset > limit or flux < min_flux_jy:
            continue
        weighted = flux * float(airy_beam(np.deg2rad(offset), _REF_FREQ_HZ))
        t = transit_time(cal.ra_deg, start - 1 * u.s)
        while t < end:
            if t >= start:
                found.append(CalibratorTransit(cal, t, weighted, offset))
            t = transit_time(cal.ra_deg, t + 1 * u.hour)
    return sorted(found, key=lambda c: -c.beam_weighted_flux_jy)
