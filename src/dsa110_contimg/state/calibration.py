"""Calibration solutions registry: provenance and validity of the tables.

Tables are valid only for the declination strip they were solved on (another
strip's tables made fluxes 20x too low in an incumbent, silently) and within
``validity_hours`` of the calibrator transit.

`calibrate_block` talks to a `SolutionRegistry`: `SqliteSolutionRegistry`
keeps the solutions in the pipeline database (tables ``cal_solutions`` and
``cal_applications``; `open_solution_registry` opens one on a file), and
`InMemorySolutionRegistry` keeps them in a dict (tests, a dry run without a
database). Both choose with the same rule, `choose_solution`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa

from dsa110_contimg.exceptions import (
    CalibrationError,
    DataQualityWarning,
    StateError,
)
from dsa110_contimg.state import schema_core as core
from dsa110_contimg.state._core import Query, upsert
from dsa110_contimg.state.claims import fenced_write
from dsa110_contimg.state.db import Connection, open_db, resolve_target, to_iso_utc

__all__ = [
    "InMemorySolutionRegistry",
    "RegisteredSolution",
    "SolutionRegistry",
    "SqliteSolutionRegistry",
    "choose_solution",
    "open_solution_registry",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RegisteredSolution:
    """A registered solution (a row of the ``cal_solutions`` table)."""

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


class SolutionRegistry(Protocol):
    """Where `calibrate_block` finds, registers and records solutions."""

    def find(self, *, calibrator: str, group_id: str) -> RegisteredSolution | None:
        """Return the solution solved on ``group_id`` for ``calibrator``, if any."""
        ...

    def register(
        self,
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
        """Insert (or replace) the solution of a calibrator transit.

        ``tables`` are the bandpass and gain tables; the solution is valid
        ``validity_hours`` either side of ``transit_mjd`` (MJD, days).
        """
        ...

    def select(
        self,
        *,
        time_mjd: float,
        dec_deg: float,
        dec_tolerance_deg: float,
        aging_warn_hours: float,
        what: str,
    ) -> RegisteredSolution:
        """Return the valid solution nearest in time on the same strip.

        The rule is `choose_solution`; `CalibrationError` when none is valid.
        """
        ...

    def record_application(self, *, ms_path: Path, solution_id: int) -> None:
        """Record that a solution was applied to an MS."""
        ...


def choose_solution(
    solutions: Iterable[RegisteredSolution],
    *,
    time_mjd: float,
    dec_deg: float,
    dec_tolerance_deg: float,
    aging_warn_hours: float,
    what: str,
) -> RegisteredSolution:
    """Return the valid solution nearest in time on the same declination strip.

    Parameters
    ----------
    solutions : iterable of RegisteredSolution
        The candidates, in registration (id) order: ties go to the first.
    time_mjd : float
        Time to calibrate (MJD, days).
    dec_deg : float
        Declination of the data's strip (deg).
    dec_tolerance_deg : float
        Largest strip difference accepted (deg).
    aging_warn_hours : float
        A `DataQualityWarning` is issued when the chosen transit is farther
        than this from ``time_mjd`` (hours).
    what : str
        The block or MS, for the messages.

    Raises
    ------
    CalibrationError
        No solution of this strip is valid at ``time_mjd``; the message names
        ``what`` (the block or MS), the strip and the nearest table of any strip.
    """
    rows = list(solutions)
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
            stacklevel=3,
        )
    return best


class _ChoosingRegistry:
    """What both registries share: `select` is `choose_solution` over `solutions`."""

    def solutions(self) -> list[RegisteredSolution]:
        """Return every registered solution, in id order."""
        raise NotImplementedError

    def select(
        self,
        *,
        time_mjd: float,
        dec_deg: float,
        dec_tolerance_deg: float,
        aging_warn_hours: float,
        what: str,
    ) -> RegisteredSolution:
        """Return the valid solution nearest in time on the same strip.

        Raises
        ------
        CalibrationError
            None valid (see `choose_solution`).
        """
        return choose_solution(
            self.solutions(),
            time_mjd=time_mjd,
            dec_deg=dec_deg,
            dec_tolerance_deg=dec_tolerance_deg,
            aging_warn_hours=aging_warn_hours,
            what=what,
        )


# ------------------------------------------------------------------- in memory


class InMemorySolutionRegistry(_ChoosingRegistry):
    """A `SolutionRegistry` in a dict: same choices as the database, no file.

    Solutions get ids 1, 2, ... in registration order; re-registering a
    calibrator transit (same calibrator and group) replaces it and keeps its
    id, as the database does. ``applications`` maps each MS path (str) to the
    id of the solution last applied to it.

    Parameters
    ----------
    solutions : iterable of RegisteredSolution, optional
        Solutions to start with (e.g. read from a database).
    """

    def __init__(self, solutions: Iterable[RegisteredSolution] = ()) -> None:
        self._solutions: dict[tuple[str, str], RegisteredSolution] = {}
        self.applications: dict[str, int] = {}
        for solution in solutions:
            self._solutions[(solution.calibrator, solution.group_id)] = solution
        self._next_id = 1 + max((s.id for s in self._solutions.values()), default=0)

    def solutions(self) -> list[RegisteredSolution]:
        """Return every registered solution, in id order."""
        return sorted(self._solutions.values(), key=lambda s: s.id)

    def find(self, *, calibrator: str, group_id: str) -> RegisteredSolution | None:
        """Return the solution solved on ``group_id`` for ``calibrator``, if any."""
        return self._solutions.get((calibrator, group_id))

    def register(
        self,
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
        key = (calibrator, group_id)
        old = self._solutions.get(key)
        if old is None:
            solution_id, self._next_id = self._next_id, self._next_id + 1
        else:
            solution_id = old.id
        half_days = validity_hours / 24.0
        transit = float(transit_mjd)
        solution = RegisteredSolution(  # as the database would return it
            solution_id,
            str(calibrator),
            str(group_id),
            Path(str(tables[0])),
            Path(str(tables[1])),
            str(refant),
            float(dec_strip_deg),
            transit,
            transit - half_days,
            transit + half_days,
            json.loads(json.dumps(quality)),
        )
        self._solutions[key] = solution
        return solution

    def record_application(self, *, ms_path: Path, solution_id: int) -> None:
        """Record that a solution was applied to an MS.

        Raises
        ------
        StateError
            No registered solution has ``solution_id`` (the database refuses
            it too: ``cal_applications`` references ``cal_solutions``).
        """
        if all(s.id != solution_id for s in self._solutions.values()):
            msg = (
                f"no registered calibration solution with id {solution_id} to "
                f"record as applied to {ms_path}; register it first"
            )
            raise StateError(msg)
        self.applications[str(ms_path)] = solution_id


# ---------------------------------------------------------------------- SQLite


_S = core.cal_solutions
_SOLUTION_COLUMNS = (
    "calibrator",
    "group_id",
    "ms_path",
    "bandpass_table",
    "gain_table",
    "refant",
    "dec_strip_deg",
    "transit_mjd",
    "valid_from_mjd",
    "valid_to_mjd",
    "quality_json",
    "solved_at",
)
_SOLUTIONS = Query(sa.select(_S).order_by(_S.c.id))
_FIND = Query(
    sa.select(_S).where(
        _S.c.calibrator == sa.bindparam("calibrator"),
        _S.c.group_id == sa.bindparam("group_id"),
    )
)
_REGISTER = Query(upsert(_S, _SOLUTION_COLUMNS, ("calibrator", "group_id")))
_APPLY = Query(
    upsert(
        core.cal_applications, ("ms_path", "solution_id", "applied_at"), ("ms_path",)
    )
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


class SqliteSolutionRegistry(_ChoosingRegistry):
    """A `SolutionRegistry` in the pipeline database.

    Solutions are rows of ``cal_solutions`` (``state/schema/0003_calibration.sql``),
    applications rows of ``cal_applications``.

    Parameters
    ----------
    conn : Connection
        A writable, migrated connection (`state.db.open_db`); the caller
        closes it (or use `open_solution_registry`).
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def solutions(self) -> list[RegisteredSolution]:
        """Return every registered solution, in id order."""
        rows = _SOLUTIONS.execute(self.conn)
        return [_row(r) for r in rows]

    def find(self, *, calibrator: str, group_id: str) -> RegisteredSolution | None:
        """Return the solution solved on ``group_id`` for ``calibrator``, if any."""
        params = {"calibrator": calibrator, "group_id": group_id}
        row = _FIND.execute(self.conn, params).fetchone()
        return _row(row) if row else None

    def register(
        self,
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
        """Insert (or replace) the solution of a calibrator transit.

        Under `state.claims.hold_claims` the row is written only while the
        claims are held (`state.claims.fenced_write`): a worker whose claim on
        the MS was taken over registers nothing (`ClaimLostError`).
        """
        half_days = validity_hours / 24.0
        with fenced_write(self.conn):
            row = (
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
            )
            params = dict(zip(_SOLUTION_COLUMNS, row, strict=True))
            _REGISTER.execute(self.conn, params)
        found = self.find(calibrator=calibrator, group_id=group_id)
        assert found is not None  # noqa: S101 - just inserted
        return found

    def record_application(self, *, ms_path: Path, solution_id: int) -> None:
        """Record that a solution was applied to an MS (fenced as `register`)."""
        with fenced_write(self.conn):
            params = {
                "ms_path": str(ms_path),
                "solution_id": solution_id,
                "applied_at": to_iso_utc(),
            }
            _APPLY.execute(self.conn, params)


@contextmanager
def open_solution_registry(db_path: Path) -> Iterator[SqliteSolutionRegistry]:
    """Yield the registry of the database at ``db_path``, closed afterwards.

    The database is created and migrated when needed (`state.db.open_db`).
    """
    conn = open_db(resolve_target(db_path))
    try:
        yield SqliteSolutionRegistry(conn)
    finally:
        conn.close()
