"""Apply solved bandpass and gain tables to an MS, writing CORRECTED_DATA.

Two engines give the same CORRECTED_DATA and FLAG (to 1e-6 relative,
``tests/integration/test_apply_engines.py``):

- ``"arrays"``: the tables are read with python-casacore, the gains of every
  antenna are interpolated to the MS times once (a cube of
  ``n_time x n_antenna x n_chan x n_receptor``), and DATA is divided by
  ``g_i g_j*`` over the whole column in row chunks: one read of DATA and FLAG,
  one write of CORRECTED_DATA and FLAG.
- ``"applycal"``: CASA's ``applycal``.

Both apply what the pipeline solves (``_solve.py``): a ``B Jones`` table of
per-channel solutions (time interpolation ``nearest``) and a ``G Jones`` table
of one solution per interval (``linear``), with ``calwt=False`` (WEIGHT and
WEIGHT_SPECTRUM are left as they are) and ``applymode="calflag"``. The
arrays engine does what applycal does (measured against it, not read from
its source):

- in time, ``linear`` interpolates amplitude and phase (the shorter way
  round) between the solutions either side and holds the first and last
  beyond them; ``nearest`` takes the closest;
- a flagged solution is not skipped: the data it reaches (either antenna, in
  its receptor; for ``linear`` both solutions either side) are flagged and
  that table's gain is taken as 1 (the other tables still apply), so their
  CORRECTED_DATA is DATA corrected by the rest;
- in frequency, a bandpass solution's flagged channels are interpolated
  over (amplitude and phase, linear in channel between the nearest unflagged
  channels, the end values held beyond them) and flag nothing; a solution
  with every channel flagged flags its receptor;
- data flagged before are calibrated as any other. An antenna with no row in
  a table is flagged (CASA writes a row, flagged, for every antenna).

The arrays engine applies only tables whose channels are those of the MS (or
have one channel) on an MS of one spectral window (what the converter
writes); anything else (another Jones type, other channels, several windows)
is applied by ``applycal``, said in the log.

A half-written CORRECTED_DATA is detectable: `apply_calibration` marks the
MS (keyword ``DSA110_CAL_INCOMPLETE``) before it writes and records the
tables (``DSA110_CALTABLES``) and removes the mark only after the last row is
written; `recorded_calibration` raises on a marked MS, so imaging never reads
a column a crashed or concurrent apply left half done. The arrays engine
also holds the table's write lock for the whole apply, so a second casacore
writer (or reader) waits instead of interleaving.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from dsa110_contimg._optional import require
from dsa110_contimg.calibration._casa_log import _casa_log, _casatasks
from dsa110_contimg.exceptions import CalibrationError

__all__ = [
    "APPLY_ENGINES",
    "CALTABLES_KEY",
    "INCOMPLETE_KEY",
    "apply_calibration",
    "recorded_calibration",
]

log = logging.getLogger(__name__)

APPLY_ENGINES = ("arrays", "applycal")
CALTABLES_KEY = "DSA110_CALTABLES"
"""MS keyword: the calibration whose CORRECTED_DATA is complete."""
INCOMPLETE_KEY = "DSA110_CAL_INCOMPLETE"
"""MS keyword present while CORRECTED_DATA is being written (who, since when)."""

_INTERP = {"B Jones": "nearest", "G Jones": "linear"}
_CHUNK_ROWS = 8192
_FREQ_MATCH_HZ = 1.0


class _UnsupportedError(Exception):
    """A table the arrays engine does not apply (applycal does)."""


@dataclass(frozen=True, slots=True)
class _CalTable:
    path: Path
    kind: str
    time: NDArray[np.float64]  # (n_sol,) s (MJD seconds)
    antenna: NDArray[np.int_]
    spw: NDArray[np.int_]
    cparam: NDArray[np.complex64]  # (n_sol, n_chan, n_receptor)
    flag: NDArray[np.bool_]
    chan_freq: dict[int, NDArray[np.float64]]


def recorded_calibration(ms_path: Path) -> str | None:
    """Return the calibration recorded in an MS (None when uncalibrated).

    Raises
    ------
    CalibrationError
        CORRECTED_DATA was being written and not completed (a crashed or
        running apply): imaging it would mix two calibrations.
    """
    tables = require("casacore.tables", "casa")
    with tables.table(str(ms_path), ack=False) as ms:
        keywords = ms.getkeywords()
    if keywords.get(INCOMPLETE_KEY):
        msg = (
            f"{ms_path}: CORRECTED_DATA is incomplete (keyword {INCOMPLETE_KEY} = "
            f"{keywords[INCOMPLETE_KEY]!r}: an apply crashed or is running); "
            "calibrate the MS again before imaging it"
        )
        raise CalibrationError(msg)
    value = keywords.get(CALTABLES_KEY)
    return str(value) if value else None


def apply_calibration(
    ms_path: Path,
    tables: list[Path],
    *,
    engine: str = "arrays",
    record: str | None = None,
) -> float:
    """Apply tables (bandpass then gains) to DATA, writing CORRECTED_DATA.

    Parameters
    ----------
    ms_path : Path
        The MS, written in place.
    tables : list of Path
        Calibration tables in application order (``CalSolution.tables``).
    engine : {"arrays", "applycal"}
        Who computes CORRECTED_DATA (module docstring).
    record : str, optional
        Written as the MS keyword ``DSA110_CALTABLES`` once CORRECTED_DATA is
        complete; default the tables' names.

    Returns
    -------
    float
        The time taken (s).

    Raises
    ------
    CalibrationError
        A table is missing or unreadable, or the apply failed.
    """
    if engine not in APPLY_ENGINES:
        msg = f"calibration.apply_engine must be one of {APPLY_ENGINES}, got {engine!r}"
        raise CalibrationError(msg)
    for tab in tables:
        if not Path(tab).exists():
            msg = f"calibration table {tab} does not exist; cannot calibrate {ms_path}"
            raise CalibrationError(msg)
    record = record or ",".join(Path(t).name for t in tables)
    t0 = time.perf_counter()
    if engine == "arrays":
        try:
            cal = [_read_table(Path(t)) for t in tables]
        except _UnsupportedError as why:
            log.info(
                "arrays engine cannot apply these tables; using applycal",
                extra={"ms": str(ms_path), "reason": str(why)},
            )
        else:
            try:
                _apply_arrays(Path(ms_path), cal, record)
            except _UnsupportedError as why:
                log.info(
                    "arrays engine cannot apply these tables; using applycal",
                    extra={"ms": str(ms_path), "reason": str(why)},
                )
            else:
                return time.perf_counter() - t0
    _set_incomplete(Path(ms_path))
    _applycal(Path(ms_path), [Path(t) for t in tables])
    _mark_complete(Path(ms_path), record)
    return time.perf_counter() - t0


# ------------------------------------------------------------------ markers


def _incomplete_token() -> str:
    return f"pid {os.getpid()} {uuid.uuid4().hex[:8]} since {time.time():.0f}"


def _set_incomplete(ms_path: Path) -> None:
    tables = require("casacore.tables", "casa")
    with tables.table(str(ms_path), readonly=False, ack=False) as ms:
        ms.putkeyword(INCOMPLETE_KEY, _incomplete_token())
        if CALTABLES_KEY in ms.getkeywords():
            ms.removekeyword(CALTABLES_KEY)


def _mark_complete(ms_path: Path, record: str) -> None:
    tables = require("casacore.tables", "casa")
    with tables.table(str(ms_path), readonly=False, ack=False) as ms:
        ms.putkeyword(CALTABLES_KEY, record)
        ms.removekeyword(INCOMPLETE_KEY)


# ------------------------------------------------------------------ applycal


def _applycal(ms_path: Path, tables: list[Path]) -> None:
    ct = _casatasks()
    interp = [_INTERP.get(_vis_cal(t), "linear") for t in tables]
    try:
        with _casa_log(ms_path.with_suffix(".applycal.log")):
            ct.applycal(
                vis=str(ms_path),
                gaintable=[str(t) for t in tables],
                interp=interp,
                calwt=[False],
                flagbackup=False,
                applymode="calflag",
            )
    except Exception as err:
        msg = f"{ms_path}: applycal failed ({type(err).__name__}: {err})"
        raise CalibrationError(msg) from err


def _vis_cal(path: Path) -> str:
    tables = require("casacore.tables", "casa")
    try:
        with tables.table(str(path), ack=False) as tab:
            return str(tab.getkeywords().get("VisCal", ""))
    except RuntimeError as err:
        msg = f"calibration table {path} is unreadable ({err}); solve it again"
        raise CalibrationError(msg) from err


# ------------------------------------------------------------------ arrays


def _read_table(path: Path) -> _CalTable:
    tables = require("casacore.tables", "casa")
    try:
        tab = tables.table(str(path), ack=False)
    except RuntimeError as err:
        msg = f"calibration table {path} is unreadable ({err}); solve it again"
        raise CalibrationError(msg) from err
    with tab:
        keywords = tab.getkeywords()
        kind = str(keywords.get("VisCal", ""))
        if kind not in _INTERP or keywords.get("ParType") != "Complex":
            msg = f"{path.name}: {kind or 'unknown'} table"
            raise _UnsupportedError(msg)
        columns = {
            k: tab.getcol(k)
            for k in ("TIME", "ANTENNA1", "SPECTRAL_WINDOW_ID", "CPARAM", "FLAG")
        }
    with tables.table(f"{path}/SPECTRAL_WINDOW", ack=False) as sw:
        chan_freq = {
            i: np.asarray(sw.getcell("CHAN_FREQ", i), dtype=np.float64)
            for i in np.unique(columns["SPECTRAL_WINDOW_ID"])
        }
    return _CalTable(
        path=path,
        kind=kind,
        time=columns["TIME"].astype(np.float64),
        antenna=columns["ANTENNA1"].astype(np.int64),
        spw=columns["SPECTRAL_WINDOW_ID"].astype(np.int64),
        cparam=columns["CPARAM"],
        flag=columns["FLAG"].astype(bool),
        chan_freq=chan_freq,
    )


def _fill_flagged_channels(
    cparam: NDArray[np.complexfloating], flag: NDArray[np.bool_]
) -> tuple[NDArray[np.complex128], NDArray[np.bool_]]:
    """Interpolate each solution's flagged channels from its unflagged ones.

    As applycal's ``linear`` frequency interpolation: amplitude and phase
    (the shorter way round between neighbours) linear in channel between the
    nearest unflagged channels either side, the end values held beyond them;
    a solution with no unflagged channel stays flagged.
    """
    value = cparam.astype(np.complex128)
    flag = flag.copy()
    n_chan = value.shape[1]
    if n_chan == 1:
        return value, flag
    chan = np.arange(n_chan)
    partly = flag.any(axis=1) & ~flag.all(axis=1)  # (n_sol, n_rec)
    for s, r in zip(*np.nonzero(partly), strict=True):
        good = ~flag[s, :, r]
        amp = np.interp(chan, chan[good], np.abs(value[s, good, r]))
        phase = np.interp(chan, chan[good], np.unwrap(np.angle(value[s, good, r])))
        value[s, :, r] = amp * np.exp(1j * phase)
        flag[s, :, r] = False
    return value, flag


def _interp_times(
    sol_time: NDArray[np.float64],
    sol_value: NDArray[np.complex128],
    sol_flag: NDArray[np.bool_],
    times: NDArray[np.float64],
    mode: str,
) -> tuple[NDArray[np.complex128], NDArray[np.bool_]]:
    """Interpolate one antenna's solutions to ``times`` as applycal does.

    ``sol_value`` and ``sol_flag`` have shape ``(n_sol, ...)``, solutions in
    time order. ``nearest`` takes the closest solution; ``linear``
    interpolates amplitude and phase (the shorter way round) between the two
    solutions either side and holds the first and last beyond them. A result
    is flagged when a solution it uses is flagged, and its gain is then 1
    (applycal divides by 1 where it flags).
    """
    n_sol = sol_time.size
    if n_sol == 1:
        shape = (times.size, *sol_value.shape[1:])
        value = np.broadcast_to(sol_value[0], shape).copy()
        flag = np.broadcast_to(sol_flag[0], shape).copy()
    else:
        right = np.clip(np.searchsorted(sol_time, times), 1, n_sol - 1)
        left = right - 1
        if mode == "nearest":
            pick = np.where(
                times - sol_time[left] <= sol_time[right] - times, left, right
            )
            value, flag = sol_value[pick], sol_flag[pick]
        else:
            frac = (times - sol_time[left]) / (sol_time[right] - sol_time[left])
            frac = np.clip(frac, 0.0, 1.0)
            v0, v1 = sol_value[left], sol_value[right]
            f0, f1 = sol_flag[left], sol_flag[right]
            # beyond the ends only the end solution is used
            f0 = f0 & (frac < 1.0).reshape(-1, *([1] * (f0.ndim - 1)))
            f1 = f1 & (frac > 0.0).reshape(-1, *([1] * (f1.ndim - 1)))
            frac = frac.reshape(-1, *([1] * (sol_value.ndim - 1)))
            amp = (1 - frac) * np.abs(v0) + frac * np.abs(v1)
            phase = np.angle(v0) + frac * np.angle(v1 * np.conj(v0))
            value, flag = amp * np.exp(1j * phase), f0 | f1
    value[flag] = 1.0
    return value, flag


def _gain_cube(
    cal: _CalTable,
    spw: int,
    ms_freq: NDArray[np.float64],
    times: NDArray[np.float64],
    n_ant: int,
) -> tuple[NDArray[np.complex128], NDArray[np.bool_]]:
    """Return gains ``(n_time, n_ant, n_chan, n_receptor)`` and their flags.

    Flagged gains are 1. An antenna without solutions is flagged.
    """
    rows = np.flatnonzero(cal.spw == spw)
    n_chan_tab, n_rec = cal.cparam.shape[1:]
    shape = (times.size, n_ant, n_chan_tab, n_rec)
    gains = np.ones(shape, np.complex128)
    flags = np.ones(shape, bool)
    if rows.size == 0:
        # no solution for this window: applycal flags its data
        return gains, flags
    if n_chan_tab != 1:
        tab_freq = cal.chan_freq.get(spw)
        if (
            tab_freq is None
            or tab_freq.size != ms_freq.size
            or np.max(np.abs(tab_freq - ms_freq)) > _FREQ_MATCH_HZ
        ):
            msg = f"{cal.path.name}: channels of window {spw} differ from the MS's"
            raise _UnsupportedError(msg)
    value, flag = _fill_flagged_channels(cal.cparam[rows], cal.flag[rows])
    ant_of = cal.antenna[rows]
    mode = _INTERP[cal.kind]
    for ant in np.unique(ant_of):
        if ant >= n_ant:
            continue
        mine = np.flatnonzero(ant_of == ant)
        mine = mine[np.argsort(cal.time[rows][mine], kind="stable")]
        gains[:, ant], flags[:, ant] = _interp_times(
            cal.time[rows][mine], value[mine], flag[mine], times, mode
        )
    return gains, flags


def _apply_arrays(ms_path: Path, cal: list[_CalTable], record: str) -> None:
    tables = require("casacore.tables", "casa")
    with tables.table(
        str(ms_path), readonly=False, ack=False, lockoptions="permanentwait"
    ) as ms:
        corr_product, spw_of_ddid = _ms_layout(ms_path)
        with tables.table(f"{ms_path}/SPECTRAL_WINDOW", ack=False) as sw:
            ms_freq = {
                i: np.asarray(sw.getcell("CHAN_FREQ", i), dtype=np.float64)
                for i in range(sw.nrows())
            }
        with tables.table(f"{ms_path}/ANTENNA", ack=False) as ant:
            n_ant = ant.nrows()
        ddid = ms.getcol("DATA_DESC_ID")
        if np.unique(ddid).size != 1:
            # the pipeline writes one window; several are left to applycal
            msg = "more than one data description"
            raise _UnsupportedError(msg)
        spw = int(spw_of_ddid[ddid[0]])
        times, t_index = np.unique(ms.getcol("TIME"), return_inverse=True)
        a1 = ms.getcol("ANTENNA1")
        a2 = ms.getcol("ANTENNA2")
        # the inverse Jones of every (time, antenna), before anything is written
        inv, bad = _inverse_cube(cal, spw, ms_freq[spw], times, n_ant)
        _set_incomplete_open(ms)
        data = ms.getcol("DATA")
        flag = ms.getcol("FLAG")
        has_bad = bool(bad.any())
        corrected = data  # corrected in place, block by block
        for s in range(0, data.shape[0], _CHUNK_ROWS):
            sel = slice(s, s + _CHUNK_ROWS)
            corrected[sel], bad_rows = _correct_chunk(
                data[sel], inv, bad, t_index[sel], a1[sel], a2[sel], corr_product
            )
            if has_bad:
                flag[sel] |= bad_rows
        if "CORRECTED_DATA" not in ms.colnames():
            _add_corrected_column(ms, tables)
        ms.putcol("CORRECTED_DATA", corrected)
        ms.putcol("FLAG", flag)
        ms.flush()
        ms.putkeyword(CALTABLES_KEY, record)
        ms.removekeyword(INCOMPLETE_KEY)


def _correct_chunk(
    data: NDArray[np.complex64],
    inv: NDArray[np.complex64],
    bad: NDArray[np.bool_],
    t_index: NDArray[np.int_],
    a1: NDArray[np.int_],
    a2: NDArray[np.int_],
    corr_product: NDArray[np.int_],
) -> tuple[NDArray[np.complex64], NDArray[np.bool_]]:
    """Return ``V_ij / (g_i g_j*)`` and the solution flags of a block of rows.

    ``inv`` and ``bad`` are ``(n_time, n_ant, n_chan, n_receptor)``; each
    correlation ``k`` uses receptor ``corr_product[k, 0]`` of ANTENNA1 and
    ``corr_product[k, 1]`` of ANTENNA2.
    """
    p, q = corr_product[:, 0], corr_product[:, 1]
    g1 = inv[t_index, a1]  # (rows, chan, receptor)
    g2 = inv[t_index, a2]
    if not _identity(p, inv.shape[3]):
        g1 = g1[..., p]  # (rows, chan, corr)
    if not _identity(q, inv.shape[3]):
        g2 = g2[..., q]
    np.conjugate(g2, out=g2)
    g1 *= g2
    g1 *= data
    if not bad.any():
        return g1, np.zeros(g1.shape, dtype=bool)
    return g1, bad[t_index, a1][..., p] | bad[t_index, a2][..., q]


def _identity(index: NDArray[np.int_], n: int) -> bool:
    return index.size == n and bool(np.all(index == np.arange(n)))


def _set_incomplete_open(ms) -> None:
    ms.putkeyword(INCOMPLETE_KEY, _incomplete_token())
    if CALTABLES_KEY in ms.getkeywords():
        ms.removekeyword(CALTABLES_KEY)
    ms.flush()


def _inverse_cube(
    cal: list[_CalTable],
    spw: int,
    ms_freq: NDArray[np.float64],
    times: NDArray[np.float64],
    n_ant: int,
) -> tuple[NDArray[np.complex64], NDArray[np.bool_]]:
    """Return ``1 / prod(gains)`` and the combined flags, per (time, ant, chan, rec)."""
    total = None
    bad = None
    for table in cal:
        g, f = _gain_cube(table, spw, ms_freq, times, n_ant)
        if g.shape[3] == 1:  # one receptor: both hands
            g, f = np.repeat(g, 2, axis=3), np.repeat(f, 2, axis=3)
        total = g if total is None else total * g
        bad = f if bad is None else bad | f
    bad = np.broadcast_to(bad, (*bad.shape[:2], ms_freq.size, bad.shape[3]))
    total = np.broadcast_to(total, bad.shape)
    zero = total == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(zero, 0, 1 / np.where(zero, 1, total))
    return inv.astype(np.complex64), bad | zero


def _ms_layout(ms_path: Path) -> tuple[NDArray[np.int_], NDArray[np.int_]]:
    """Return the receptor pair of each correlation and the window of each DDID."""
    tables = require("casacore.tables", "casa")
    with tables.table(f"{ms_path}/DATA_DESCRIPTION", ack=False) as dd:
        spw = dd.getcol("SPECTRAL_WINDOW_ID")
        pol_id = dd.getcol("POLARIZATION_ID")
    if np.unique(pol_id).size != 1:
        msg = "several polarization setups"
        raise _UnsupportedError(msg)
    with tables.table(f"{ms_path}/POLARIZATION", ack=False) as pol:
        product = np.asarray(pol.getcell("CORR_PRODUCT", int(pol_id[0])))
    # CORR_PRODUCT is (n_corr, 2) as python-casacore returns it
    return product.reshape(-1, 2).astype(np.int64), spw


def _add_corrected_column(ms, tables) -> None:
    """Add CORRECTED_DATA beside DATA, tiled as DATA is (as CASA adds it)."""
    desc = ms.getcoldesc("DATA")
    desc.pop("comment", None)
    dminfo = ms.getdminfo("DATA")
    dminfo["NAME"] = "TiledCorrected"
    ms.addcols(tables.makecoldesc("CORRECTED_DATA", desc), dminfo)
