"""What downstream stages read from a converted MS, without the converter.

Imaging and calibration need the group's times, channels and pointing; they
read them here (python-casacore only), not through `ms_creation`, whose
pyuvdata import costs a fresh worker process over a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsa110_contimg._optional import require
from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.telescope import dsa110

__all__ = ["MsInfo", "WeightProfile", "read_ms_info", "read_weight_profile"]

_PT_DEC_KEY = "DSA110_PT_DEC_RAD"
_GROUP_KEY = "DSA110_GROUP_ID"
_MISSING_KEY = "DSA110_MISSING_SUBBANDS"


def _read_ms_summary(path: Path) -> tuple[float, float, float, int]:
    tables = require("casacore.tables", "casa")
    with tables.table(str(path), ack=False) as ms:
        kw = ms.getkeywords()
    with tables.table(f"{path}/FIELD", ack=False) as field:
        ra, dec = np.rad2deg(field.getcol("PHASE_DIR")[0, 0])
    missing = [s for s in str(kw.get(_MISSING_KEY, "")).split(",") if s]
    return (
        float(ra % 360),
        float(dec),
        float(np.degrees(kw.get(_PT_DEC_KEY, np.nan))),
        dsa110.N_SUBBANDS - len(missing),
    )


@dataclass(frozen=True, slots=True)
class MsInfo:
    """What downstream stages need to know about a converted MS."""

    group_id: str
    times_mjd: np.ndarray
    freqs_hz: np.ndarray
    pointing_dec_deg: float
    phase_center_ra_deg: float
    phase_center_dec_deg: float


def read_ms_info(path: Path) -> MsInfo:
    """Return integration times, channel frequencies and pointing of an MS."""
    tables = require("casacore.tables", "casa")
    with tables.table(str(path), ack=False) as ms:
        kw = ms.getkeywords()
        times_s = np.unique(ms.getcol("TIME"))
    with tables.table(f"{path}/SPECTRAL_WINDOW", ack=False) as spw:
        freqs = np.concatenate([np.atleast_1d(f) for f in spw.getcol("CHAN_FREQ")])
    ra, dec, pt_dec, _ = _read_ms_summary(path)
    if not np.isfinite(pt_dec):
        pt_dec = dec  # MS not written by this pipeline: the meridian centre's dec
    return MsInfo(
        str(kw.get(_GROUP_KEY, Path(path).stem)),
        times_s / 86400.0,
        freqs,
        pt_dec,
        ra,
        dec,
    )


@dataclass(frozen=True, slots=True)
class WeightProfile:
    """Unflagged visibility weight of an MS per integration and per channel.

    ``time_weight[i]`` sums WEIGHT_SPECTRUM (or WEIGHT per channel) over the
    unflagged cross-correlations of integration ``times_mjd[i]``;
    ``chan_weight[k]`` the same over every integration for channel
    ``freqs_hz[k]``. Autocorrelations are left out (the imagers do not use
    them).
    """

    times_mjd: np.ndarray
    time_weight: np.ndarray
    freqs_hz: np.ndarray
    chan_weight: np.ndarray


_WEIGHT_CHUNK_ROWS = 16384


def read_weight_profile(path: Path) -> WeightProfile:
    """Return the unflagged weight of each integration and channel of an MS.

    Reads FLAG, ANTENNA1/2, TIME, DATA_DESC_ID and WEIGHT_SPECTRUM (WEIGHT
    where the MS has none) in chunks of 16384 rows (a full-size group: a few
    tenths of a second, about 30 MB at a time). Channels are those of every
    spectral window in order, as `read_ms_info` lists them.

    Raises
    ------
    InputDataError
        The MS has no weight column.
    """
    tables = require("casacore.tables", "casa")
    with tables.table(f"{path}/SPECTRAL_WINDOW", ack=False) as spw:
        chans = [np.atleast_1d(f) for f in spw.getcol("CHAN_FREQ")]
    with tables.table(f"{path}/DATA_DESCRIPTION", ack=False) as dd:
        dd_spw = np.asarray(dd.getcol("SPECTRAL_WINDOW_ID"), dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum([c.size for c in chans])])
    freqs = np.concatenate(chans)
    with tables.table(str(path), ack=False) as ms:
        names = set(ms.colnames())
        spectrum = "WEIGHT_SPECTRUM" in names and ms.iscelldefined("WEIGHT_SPECTRUM", 0)
        if not spectrum and "WEIGHT" not in names:
            msg = f"{path}: neither WEIGHT_SPECTRUM nor WEIGHT; convert the group again"
            raise InputDataError(msg)
        times = np.unique(ms.getcol("TIME"))
        time_weight = np.zeros(times.size)
        chan_weight = np.zeros(freqs.size)
        for start in range(0, ms.nrows(), _WEIGHT_CHUNK_ROWS):
            n = min(_WEIGHT_CHUNK_ROWS, ms.nrows() - start)
            rows = ms.getcol("ANTENNA1", start, n) != ms.getcol("ANTENNA2", start, n)
            if not rows.any():
                continue
            flag = ms.getcol("FLAG", start, n)[rows]  # (rows, chan, pol)
            if spectrum:
                weight = ms.getcol("WEIGHT_SPECTRUM", start, n)[rows]
            else:
                weight = ms.getcol("WEIGHT", start, n)[rows][:, None, :]
            good = np.where(flag, 0.0, weight).sum(axis=2)  # (rows, chan)
            slot = np.searchsorted(times, ms.getcol("TIME", start, n)[rows])
            time_weight += np.bincount(
                slot, weights=good.sum(axis=1), minlength=times.size
            )
            spw = dd_spw[ms.getcol("DATA_DESC_ID", start, n)[rows]]
            for s in np.unique(spw):
                chan_weight[offsets[s] : offsets[s] + good.shape[1]] += good[
                    spw == s
                ].sum(axis=0)
    return WeightProfile(times / 86400.0, time_weight, freqs, chan_weight)
