"""Bandpass and gain solutions with CASA (casatasks).

Their application is `calibration._apply.apply_calibration`.

Sequence (``DSA110.md``, Calibration): a short phase-only solve to line up the
phases, a bandpass solve (per channel, one solution over the calibrator
transit) applying it, then amplitude+phase gains on ``gcal_solint`` applying
the bandpass. The reference antenna comes from `choose_refant`
(``_refant.py``).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dsa110_contimg._optional import require
from dsa110_contimg.calibration._casa_log import _casa_log, _casatasks
from dsa110_contimg.exceptions import CalibrationError
from dsa110_contimg.utils.storage import replace_into_place

__all__ = [
    "CalSolution",
    "solve_calibration",
    "publish_tables",
    "read_gain_table",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CalSolution:
    """A solved table set and its quality figures."""

    bandpass_table: Path
    gain_table: Path
    refant: str
    quality: dict[str, float] = field(default_factory=dict)
    durations_s: dict[str, float] = field(default_factory=dict)

    @property
    def tables(self) -> list[Path]:
        """Return the tables in application order (bandpass, then gains)."""
        return [self.bandpass_table, self.gain_table]


def solve_calibration(
    ms_path: Path,
    table_prefix: Path,
    *,
    refant: str,
    gcal_mode: str = "ap",
    gcal_solint: str = "30min",
    uvrange: str = ">1klambda",
    minsnr: float = 5.0,
) -> CalSolution:
    """Solve bandpass and gains on a calibrator MS whose MODEL_DATA is set.

    Tables are written as ``<table_prefix>.B`` and ``<table_prefix>.G``
    (through temporary names, renamed over any older ones when complete, by
    `utils.storage.replace_into_place`: under `state.claims.hold_claims`
    only while the claims are still held).

    Raises
    ------
    CalibrationError
        CASA failed or produced no table, or too many solutions are flagged.
    ClaimLostError
        The worker's claim on the MS was taken over before the tables were
        renamed into place: its tables are deleted, the successor's kept.
    """
    ct = _casatasks()
    table_prefix = Path(table_prefix)
    table_prefix.parent.mkdir(parents=True, exist_ok=True)
    tmp = table_prefix.parent / f".tmp-{table_prefix.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    g0, b_tab, g_tab = tmp / "G0", tmp / "B", tmp / "G"
    durations: dict[str, float] = {}
    vis = str(ms_path)
    try:
        with _casa_log(table_prefix.with_suffix(".casa.log")):
            t0 = time.perf_counter()
            ct.gaincal(
                vis=vis,
                caltable=str(g0),
                solint="int",
                calmode="p",
                refant=refant,
                minsnr=3.0,
                uvrange=uvrange,
                gaintype="G",
            )
            durations["prebandpass_phase_s"] = time.perf_counter() - t0
            _require_table(g0, ms_path, "pre-bandpass phase")
            t0 = time.perf_counter()
            ct.bandpass(
                vis=vis,
                caltable=str(b_tab),
                solint="inf",
                combine="scan",
                refant=refant,
                minsnr=minsnr,
                uvrange=uvrange,
                solnorm=False,
                bandtype="B",
                gaintable=[str(g0)],
            )
            durations["bandpass_s"] = time.perf_counter() - t0
            _require_table(b_tab, ms_path, "bandpass")
            t0 = time.perf_counter()
            ct.gaincal(
                vis=vis,
                caltable=str(g_tab),
                solint=gcal_solint,
                calmode=gcal_mode,
                refant=refant,
                minsnr=3.0,
                uvrange=uvrange,
                gaintype="G",
                gaintable=[str(b_tab)],
            )
            durations["gaincal_s"] = time.perf_counter() - t0
            _require_table(g_tab, ms_path, "gain")
    except CalibrationError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as err:  # CASA raises RuntimeError and friends
        shutil.rmtree(tmp, ignore_errors=True)
        msg = f"{ms_path}: CASA calibration failed ({type(err).__name__}: {err})"
        raise CalibrationError(msg) from err
    quality = {
        "bandpass_flagged_fraction": _flagged_fraction(b_tab, ms_path),
        "gain_flagged_fraction": _flagged_fraction(g_tab, ms_path),
    }
    if quality["bandpass_flagged_fraction"] > 0.5:
        shutil.rmtree(tmp, ignore_errors=True)
        msg = (
            f"{ms_path}: {100 * quality['bandpass_flagged_fraction']:.0f}% of bandpass "
            "solutions flagged (low SNR); is the calibrator in the beam?"
        )
        raise CalibrationError(msg)
    final_b = table_prefix.with_name(table_prefix.name + ".B")
    final_g = table_prefix.with_name(table_prefix.name + ".G")
    try:
        publish_tables([(b_tab, final_b), (g_tab, final_g)])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "calibration solved",
        extra={
            "ms": str(ms_path),
            "refant": refant,
            **{k: round(v, 2) for k, v in durations.items()},
        },
    )
    return CalSolution(final_b, final_g, refant, quality, durations)


def publish_tables(moves: Sequence[tuple[Path, Path]]) -> None:
    """Rename each solved table directory ``(written, final)`` over ``final``.

    Through `utils.storage.replace_into_place`, so under
    `state.claims.hold_claims` (the calibration job holds its MSs' claims)
    each rename happens only while the claims are held: a worker whose claim
    was taken over has its table deleted and `ClaimLostError` raised, and the
    successor's table stays. An older table at ``final`` is replaced whole.
    When one rename fails, the tables not yet renamed are deleted too.
    """
    moves = list(moves)
    for i, (src, dst) in enumerate(moves):
        try:
            replace_into_place(src, dst)
        except BaseException:
            for rest, _dst in moves[i + 1 :]:
                shutil.rmtree(rest, ignore_errors=True)
            raise


def _require_table(path: Path, ms_path: Path, what: str) -> None:
    if not path.exists():
        msg = (
            f"{ms_path}: CASA wrote no {what} table (too few unflagged data or no "
            "model?); see the .casa.log beside the tables"
        )
        raise CalibrationError(msg)


def _flagged_fraction(table_path: Path, ms_path: Path) -> float:
    """Return the flagged fraction of a table's solutions for antennas with data.

    A caltable has a row for every ANTENNA-table row, including the empty
    rows an MS gets when antenna numbers have gaps (real files number
    antennas by station, 0..116, with ~21 unused); those are not counted.
    """
    tables = require("casacore.tables", "casa")
    with tables.table(str(ms_path), ack=False) as ms:
        present = np.union1d(ms.getcol("ANTENNA1"), ms.getcol("ANTENNA2"))
    with tables.table(str(table_path), ack=False) as tab:
        flags = tab.getcol("FLAG")
        ant = tab.getcol("ANTENNA1")
    flags = flags[np.isin(ant, present)]
    return float(flags.mean()) if flags.size else 1.0


def read_gain_table(table_path: Path) -> dict[str, np.ndarray]:
    """Return ANTENNA1, TIME, CPARAM (n_row, n_chan, n_pol) and FLAG of a table."""
    tables = require("casacore.tables", "casa")
    with tables.table(str(table_path), ack=False) as tab:
        return {k: tab.getcol(k) for k in ("ANTENNA1", "TIME", "CPARAM", "FLAG")}
