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
from dsa110_contimg.telescope import dsa110

__all__ = ["MsInfo", "read_ms_info"]

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
