"""Calibration registry in the pipeline database: provenance and validity.

Tables are valid only for the declination strip they were solved on (another
strip's tables made fluxes 20x too low in an incumbent, silently) and within
``validity_hours`` of the calibrator transit.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import warnings
from dataclasses import dataclass
from pathlib import Path

from dsa110_contimg.exceptions import CalibrationError, DataQualityWarning
from dsa110_contimg.state.db import to_iso_utc

__all__ = [
    "RegisteredSolution",
    "register_solution",
    "find_solution",
    "select_solution",
    "record_application",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RegisteredSolution:
    """A row of the ``cal_solutions`` table."""

    id: int
    calibrator: str
    group_id: str
    bandpass_table: Path
    gain_table: Path
    refant: str
    dec_strip_deg: float
    transit_mjd: float
    valid_from_mjd: float
    valid_to_mjd: float
    # quality figures, durations and the reference antenna's provenance
    # (``refant_how``: configured | fallback | automatic, ``refant_reason``...)
    quality: dict[str, float | str]

    @property
    def tables(self) -> list[Path]:
        """Return the tables in application order."""
        return [self.bandpass_table, self.gain_table]

    def describe(self) -> str:
        """Return a short provenance string for headers and histories."""
        how = self.quality.get("refant_how")
        refant = f"refant {self.refant}" + (f" ({how})" if how else "")
        return (
            f"{self.calibrator}@{self.group_id} dec {self.dec_strip_deg:.2f} "
            f"{refant} [{self.bandpass_table.name}, {self.gain_table.name}]"
        )


def _row(row: sqlite3.Row) -> RegisteredSolution:
    return RegisteredSolution(
        row["id"],
        row["calibrator"],
        row["group_id"],
        Path(row["bandpass_table"]),
        Path(row["gain_table"]),
        row["refant"],
        row["dec_strip_deg"],
        row["transit_mjd"],
        row["valid_from_mjd"],
        row["valid_to_mjd"],
        json.loads(row["quality_json"]),
    )


def register_solution(
    conn: sqlite3.Connection,
    *,
    calibrator: str,
    group_id: str,
    ms_path: Path,
    tables: list[Path],
    refant: str,
    dec_strip_deg: float,
    transit_mjd: float,
    validity_hours: float,
    quality: dict[str, float | str],
) -> RegisteredSolution:
    """Insert (or replace) the solution of a calibrator transit."""
    half_days = validity_hours / 24.0
    with conn:
        conn.execute(
            "INSERT INTO cal_solutions (calibrator, group_id, ms_path, bandpass_table, "
            "gain_table, refant, dec_strip_deg, transit_mjd, valid_from_mjd, "
            "valid_to_mjd, quality_json, solved_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (calibrator, group_id) DO UPDATE SET "
            "ms_path=excluded.ms_path, "
            "bandpass_table=excluded.bandpass_table, gain_table=excluded.gain_table, "
            "refant=excluded.refant, dec_strip_deg=excluded.dec_strip_deg, "
            "transit_mjd=excluded.transit_mjd, valid_from_mjd=excluded.valid_from_mjd, "
            "valid_to_mjd=excluded.valid_to_mjd, quality_json=excluded.quality_json, "
            "solved_at=excluded.solved_at",
            (
                calibrator,
                group_id,
                str(ms_path),
                str(tables[0]),
                str(tables[1]),
                refant,
                dec_strip_deg,
                transit_mjd,
                transit_mjd - half_days,
                transit_mjd + half_days,
                json.dumps(quality),
                to_iso_utc(),
            ),
        )
    found = find_solution(conn, calibrator=calibrator, group_id=group_id)
    assert found is not None  # noqa: S101 - just inserted in this transaction
    return found


def find_solution(
    conn: sqlite3.Connection, *, calibrator: str, group_id: str
) -> RegisteredSolution | None:
    """Return the solution solved on ``group_id`` for ``calibrator``, if any."""
    row = conn.execute(
        "SELECT * FROM cal_solutions WHERE calibrator=? AND group_id=?",
        (calibrator, group_id),
    ).fetchone()
    return _row(row) if row else None


def select_solution(
    conn: sqlite3.Connection,
    *,
    time_mjd: float,
    dec_deg: float,
    dec_tolerance_deg: float,
    aging_warn_hours: float,
    what: str,
) -> RegisteredSolution:
    """Return the valid solution nearest in time on the same declination strip.

    Raises
    ------
    CalibrationError
        No solution of this strip is valid at ``time_mjd``; the message names
        ``what`` (the block or MS), the strip and the nearest table of any strip.
    """
    rows = [_row(r) for r in conn.execute("SELECT * FROM cal_solutions")]
    same_strip = [
        r for r in rows if abs(r.dec_strip_deg - dec_deg) <= dec_tolerance_deg
    ]
    valid = [r for r in same_strip if r.valid_from_mjd <= time_mjd <= r.valid_to_mjd]
    if not valid:
        nearest = min(
            rows,
            key=lambda r: (
                abs(r.dec_strip_deg - dec_deg),
                abs(r.transit_mjd - time_mjd),
            ),
            default=None,
        )
        hint = (
            "no calibration tables registered at all"
            if nearest is None
            else f"nearest table: {nearest.describe()}, transit MJD "
            f"{nearest.transit_mjd:.4f}"
            f" ({24 * abs(nearest.transit_mjd - time_mjd):.1f} h away)"
        )
        msg = (
            f"{what}: no valid calibration for declination strip {dec_deg:.2f} deg at "
            f"MJD {time_mjd:.4f}; {hint}. Process a block containing a calibrator "
            "transit on this strip first, or set calibration.enabled: false"
        )
        raise CalibrationError(msg)
    best = min(valid, key=lambda r: abs(r.transit_mjd - time_mjd))
    age_h = 24 * abs(best.transit_mjd - time_mjd)
    if age_h > aging_warn_hours:
        warnings.warn(
            f"{what}: calibration {best.describe()} is {age_h:.1f} h from its "
            "transit (aging)",
            DataQualityWarning,
            stacklevel=2,
        )
    return best


def record_application(
    conn: sqlite3.Connection, *, ms_path: Path, solution_id: int
) -> None:
    """Record that a solution was applied to an MS."""
    with conn:
        conn.execute(
            "INSERT OR REPLACE INTO cal_applications VALUES (?,?,?)",
            (str(ms_path), solution_id, to_iso_utc()),
        )
