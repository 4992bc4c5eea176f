"""CASA's process environment: its terminal output and its leap-second table.

CASA's C++ layer prints its WARN and SEVERE messages on the process's standard
error whatever ``casalog.showconsole`` says; `casa_stderr_to` sends them to a
file for the duration of a CASA call (they are also in CASA's own log). The
leap-second table (``geodetic/TAI_UTC``) makes CASA print three SEVERE lines
once per process when the table was written more than 180 days before *today*,
even for data it fully covers; `leap_second_status` answers the question that
matters, whether the table covers the data's times, and
`warn_leap_seconds_once` says so in one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from astropy.time import Time

from dsa110_contimg._optional import require

__all__ = [
    "LeapSecondStatus",
    "casa_stderr_to",
    "leap_second_status",
    "leap_second_table_path",
    "warn_leap_seconds_once",
]

log = logging.getLogger(__name__)

_CASA_STALE_DAYS = 180.0
"""CASA's own limit: a TAI_UTC table older than this (vs. today) gets SEVERE."""
_COVERAGE_DAYS = 180.0
"""Leap seconds are announced (IERS Bulletin C) at least ~5 months ahead, so a
table covers data up to about this long after it was written."""
_WARNED: set[str] = set()


@contextlib.contextmanager
def casa_stderr_to(path: Path) -> Iterator[None]:
    """Send this process's standard error (file descriptor 2) to ``path``.

    Parameters
    ----------
    path : Path
        Appended to; its directory is created.

    Notes
    -----
    Redirects the descriptor, so C++ output (CASA's console copies of its
    WARN/SEVERE messages) is caught; Python's ``sys.stderr`` is flushed
    before and after. Use around CASA calls in a worker process.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab", buffering=0) as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


@dataclass(frozen=True, slots=True)
class LeapSecondStatus:
    """What the TAI_UTC table says about a span of data.

    Attributes
    ----------
    table_path : str
        The table read.
    table_date_mjd : float
        When it was written (its ``VS_DATE`` keyword), MJD.
    covered_until_mjd : float
        Data up to this time are safe (``table_date_mjd`` + 180 days), MJD.
    data_end_mjd : float
        Latest time of the data, MJD.
    age_days : float
        Age of the table today (days); CASA complains above 180.
    """

    table_path: str
    table_date_mjd: float
    covered_until_mjd: float
    data_end_mjd: float
    age_days: float

    @property
    def covers_data(self) -> bool:
        """Return True when every data time is within the table's reach."""
        return self.data_end_mjd <= self.covered_until_mjd

    @property
    def casa_complains(self) -> bool:
        """Return True when CASA will print its 'out-of-date' SEVERE lines."""
        return self.age_days > _CASA_STALE_DAYS


def leap_second_table_path() -> Path | None:
    """Return the TAI_UTC table CASA (casatools) uses, or None without CASA."""
    try:
        casatools = require("casatools", "casa")
    except ImportError:
        return None
    resolved = casatools.ctsys.resolve("geodetic/TAI_UTC")
    return Path(resolved) if Path(resolved).is_dir() else None


def _vs_date_mjd(value: str) -> float:
    """Parse a casacore ``VS_DATE`` such as ``2025/09/16/15:15`` to MJD."""
    date, _, clock = value.strip().rpartition("/")
    if ":" not in clock:  # date only
        date, clock = value.strip(), "00:00"
    return float(Time(date.replace("/", "-") + "T" + clock, scale="utc").mjd)


def leap_second_status(
    table_path: Path, data_end_mjd: float, *, now_mjd: float
) -> LeapSecondStatus:
    """Read a TAI_UTC table's date and compare it with the data and today.

    Parameters
    ----------
    table_path : Path
        A casacore ``TAI_UTC`` table directory.
    data_end_mjd : float
        Latest time of the data (MJD, UTC).
    now_mjd : float
        Today (MJD, UTC).
    """
    tables = require("casacore.tables", "casa")
    with tables.table(str(table_path), ack=False) as tab:
        written = _vs_date_mjd(str(tab.getkeyword("VS_DATE")))
    return LeapSecondStatus(
        table_path=str(table_path),
        table_date_mjd=written,
        covered_until_mjd=written + _COVERAGE_DAYS,
        data_end_mjd=float(data_end_mjd),
        age_days=float(now_mjd) - written,
    )


def warn_leap_seconds_once(data_end_mjd: float) -> LeapSecondStatus | None:
    """Log the leap-second table's state once per process and table.

    A WARNING when the table does not cover the data (times derived from UTC
    could be off by a second: update it); an INFO line when only CASA's
    today-based check fails (its SEVERE lines then go to CASA's log, not the
    console). Returns the status, or None without CASA.
    """
    path = leap_second_table_path()
    if path is None:
        return None
    status = leap_second_status(path, data_end_mjd, now_mjd=Time.now().mjd)
    if str(path) in _WARNED:
        return status
    _WARNED.add(str(path))
    written = Time(status.table_date_mjd, format="mjd").iso[:10]
    if not status.covers_data:
        log.warning(
            f"leap-second table {path} (written {written}) does not cover data at "
            f"MJD {data_end_mjd:.2f}; times derived from UTC may be off by 1 s; "
            "fix: pip install -U casadata (or update casacore-data-tai-utc and "
            "point ~/.casa/config.py measurespath at it)",
            extra={"age_days": round(status.age_days, 1)},
        )
    elif status.casa_complains:
        log.info(
            f"leap-second table {path} is {status.age_days:.0f} days old (CASA "
            f"reports it as out of date in its log) but covers these data; "
            "update casadata when convenient",
        )
    return status
