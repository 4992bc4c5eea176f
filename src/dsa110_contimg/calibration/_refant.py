"""Choose the reference antenna of a calibration solve, whatever the naming scheme.

Real DSA-110 files name antennas by station number (``"1"`` .. ``"117"``), the
seed simulator ``pad001``...; an operator must not need to know which. The
configured antenna (``calibration.gcal_refant``, then ``refant_fallback``) is
used when it exists in the MS and has good data; otherwise the antenna is
chosen from the data: among those with nearly the most unflagged
cross-correlations and stable gains (the scatter over time of DATA/MODEL on
their baselines), the one nearest the array centre. The choice, how it was
made and why are returned for the solution's provenance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from dsa110_contimg._optional import require
from dsa110_contimg.exceptions import CalibrationError

__all__ = [
    "AntennaStats",
    "RefantChoice",
    "antenna_stats",
    "choose_refant",
    "pick_refant",
]

log = logging.getLogger(__name__)

# An antenna's data are "good" when it has at least this fraction of the best
# antenna's unflagged data ...
GOOD_UNFLAGGED_RATIO = 0.9
# ... and its gain instability is at most this many times the array median.
GOOD_INSTABILITY_RATIO = 1.5
_CHUNK_ROWS = 50_000
_MAX_CHANNELS = 16  # channels read per row for the gain scatter


@dataclass(frozen=True, slots=True)
class AntennaStats:
    """Per-antenna figures of an MS, indexed like its ANTENNA table.

    Attributes
    ----------
    names : list of str
        ANTENNA NAME per row ("" for padding rows without an antenna).
    unflagged_fraction : ndarray
        Fraction of the antenna's cross-correlation visibilities not flagged
        (0 for antennas without data).
    instability : ndarray
        Median over the antenna's baselines of the scatter over time of the
        channel-averaged DATA/MODEL ratio (circular phase std in radians plus
        the amplitude's coefficient of variation); NaN without data.
    distance_m : ndarray
        Distance from the array centre (median position of the antennas with
        data), metres.
    """

    names: list[str]
    unflagged_fraction: NDArray[np.float64]
    instability: NDArray[np.float64]
    distance_m: NDArray[np.float64]

    def figures(self, index: int) -> dict[str, float]:
        """Return the figures of antenna row ``index``."""
        return {
            "unflagged_fraction": round(float(self.unflagged_fraction[index]), 4),
            "instability": round(float(self.instability[index]), 4),
            "distance_m": round(float(self.distance_m[index]), 1),
        }


@dataclass(frozen=True, slots=True)
class RefantChoice:
    """The reference antenna chosen and its provenance.

    ``how`` is ``"configured"`` (``gcal_refant``), ``"fallback"`` (one of
    ``refant_fallback``) or ``"automatic"`` (chosen from the data).
    """

    name: str
    how: str
    reason: str
    unflagged_fraction: float
    instability: float
    distance_m: float

    def provenance(self) -> dict[str, float | str]:
        """Return the choice as flat key/values for the solution's quality record."""
        return {
            "refant": self.name,
            "refant_how": self.how,
            "refant_reason": self.reason,
            "refant_unflagged_fraction": self.unflagged_fraction,
            "refant_instability": self.instability,
            "refant_distance_m": self.distance_m,
        }


def _baseline_scatter(
    key: NDArray[np.int64], ratio: NDArray[np.complex128]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Return each baseline key and the scatter over time of its ratios."""
    order = np.argsort(key, kind="stable")
    key, ratio = key[order], ratio[order]
    uniq, start = np.unique(key, return_index=True)
    bounds = np.append(start, key.size)
    scatter = np.full(uniq.size, np.nan)
    for k in range(uniq.size):
        r = ratio[bounds[k] : bounds[k + 1]]
        r = r[np.isfinite(r) & (r != 0)]
        if r.size < 2:
            continue
        amp = np.abs(r)
        coherence = np.abs(np.mean(r / amp))
        phase_std = np.sqrt(-2.0 * np.log(max(coherence, 1e-12)))
        amp_cv = float(np.std(amp) / np.median(amp))
        scatter[k] = phase_std + amp_cv
    return uniq, scatter


def antenna_stats(ms_path: Path) -> AntennaStats:
    """Measure every antenna of an MS (read in row chunks; MODEL_DATA optional).

    Parameters
    ----------
    ms_path : Path
        Measurement Set; with MODEL_DATA (the calibrator model) the gain
        scatter is that of DATA/MODEL, else that of DATA.
    """
    tables = require("casacore.tables", "casa")
    with tables.table(f"{ms_path}/ANTENNA", ack=False) as ant:
        names = [str(n) for n in ant.getcol("NAME")]
        positions = np.asarray(ant.getcol("POSITION"), dtype=np.float64)
    n_ant = len(names)
    total = np.zeros(n_ant)
    good = np.zeros(n_ant)
    keys, ratios = [], []
    with tables.table(str(ms_path), ack=False) as ms:
        has_model = "MODEL_DATA" in ms.colnames()
        for start in range(0, ms.nrows(), _CHUNK_ROWS):
            n = min(_CHUNK_ROWS, ms.nrows() - start)
            a1 = ms.getcol("ANTENNA1", start, n)
            a2 = ms.getcol("ANTENNA2", start, n)
            cross = a1 != a2
            if not cross.any():
                continue
            a1, a2 = a1[cross], a2[cross]
            flags = ms.getcol("FLAG", start, n)[cross]
            ok = ~flags
            size = float(flags.shape[1] * flags.shape[2])
            np.add.at(total, a1, size)
            np.add.at(total, a2, size)
            per_row = ok.sum(axis=(1, 2)).astype(np.float64)
            np.add.at(good, a1, per_row)
            np.add.at(good, a2, per_row)
            # the gain scatter needs only a few channels: read every step-th
            step = max(1, flags.shape[1] // _MAX_CHANNELS)
            window = ([0, 0], [flags.shape[1] - 1, flags.shape[2] - 1], [step, 1])
            ok = ok[:, ::step, :]
            data = ms.getcolslice("DATA", *window, start, n)[cross]
            if has_model:
                model = ms.getcolslice("MODEL_DATA", *window, start, n)[cross]
                with np.errstate(invalid="ignore", divide="ignore"):
                    data = np.where(np.abs(model) > 0, data / model, np.nan)
            num = np.where(ok, data, 0).sum(axis=(1, 2))
            with np.errstate(invalid="ignore", divide="ignore"):
                ratios.append(num / ok.sum(axis=(1, 2)))
            keys.append(a1.astype(np.int64) * n_ant + a2)
    with np.errstate(invalid="ignore", divide="ignore"):
        unflagged = np.where(total > 0, good / total, 0.0)
    instability = np.full(n_ant, np.nan)
    if keys:
        uniq, scatter = _baseline_scatter(np.concatenate(keys), np.concatenate(ratios))
        b1, b2 = uniq // n_ant, uniq % n_ant
        for a in range(n_ant):
            mine = scatter[((b1 == a) | (b2 == a)) & np.isfinite(scatter)]
            if mine.size:
                instability[a] = float(np.median(mine))
    with_data = total > 0
    centre = np.median(positions[with_data], axis=0) if with_data.any() else np.zeros(3)
    distance = np.linalg.norm(positions - centre, axis=1)
    return AntennaStats(names, unflagged, instability, distance)


def _good_mask(stats: AntennaStats) -> NDArray[np.bool_]:
    """Return the antennas with nearly the most unflagged data and stable gains."""
    frac = stats.unflagged_fraction
    named = np.array([bool(n) for n in stats.names])
    best = float(frac[named].max()) if named.any() else 0.0
    usable = named & (frac > 0) & (frac >= GOOD_UNFLAGGED_RATIO * best)
    inst = stats.instability
    finite = usable & np.isfinite(inst)
    if not finite.any():
        return usable
    limit = GOOD_INSTABILITY_RATIO * float(np.median(inst[finite]))
    return finite & (inst <= limit)


def pick_refant(stats: AntennaStats, candidates: list[str]) -> RefantChoice:
    """Choose the reference antenna from measured figures.

    The first of ``candidates`` (``gcal_refant``, then ``refant_fallback``;
    ``"auto"`` and empty names are skipped) that exists and has good data
    wins; otherwise the good antenna nearest the array centre (ties: more
    unflagged data, then more stable gains).

    Raises
    ------
    CalibrationError
        No antenna of the MS has unflagged cross-correlations.
    """
    good = _good_mask(stats)
    if not good.any():
        msg = (
            "no antenna has unflagged cross-correlation data; nothing to "
            "reference the gains to (is the whole MS flagged?)"
        )
        raise CalibrationError(msg)
    index = {name: i for i, name in enumerate(stats.names) if name}
    rejected = []
    for k, name in enumerate(candidates):
        if not name or name.lower() == "auto":
            continue
        i = index.get(name)
        if i is None:
            rejected.append(f"{name} (not in the MS)")
            continue
        if not good[i]:
            fig = stats.figures(i)
            rejected.append(
                f"{name} (unflagged {fig['unflagged_fraction']:.2f}, "
                f"instability {fig['instability']:.3f})"
            )
            continue
        how = "configured" if k == 0 else "fallback"
        reason = "configured reference antenna" if k == 0 else "configured fallback"
        if rejected:
            reason += "; rejected " + ", ".join(rejected)
        return RefantChoice(name, how, reason, **stats.figures(i))
    idx = np.flatnonzero(good)
    order = np.lexsort(
        (
            np.nan_to_num(stats.instability[idx], nan=np.inf),
            -stats.unflagged_fraction[idx],
            np.round(stats.distance_m[idx], 1),
        )
    )
    i = int(idx[order[0]])
    reason = (
        f"chosen from the data: nearest the array centre of {idx.size} antennas "
        "with the most unflagged data and stable gains"
    )
    if rejected:
        reason += "; rejected " + ", ".join(rejected)
    return RefantChoice(stats.names[i], "automatic", reason, **stats.figures(i))


def choose_refant(ms_path: Path, candidates: list[str]) -> RefantChoice:
    """Return the reference antenna for solving on ``ms_path``, and why.

    See `pick_refant`; the choice is logged.

    Raises
    ------
    CalibrationError
        No antenna has usable data (the message names the MS).
    """
    stats = antenna_stats(Path(ms_path))
    try:
        choice = pick_refant(stats, list(candidates))
    except CalibrationError as err:
        msg = f"{ms_path}: {err}"
        raise CalibrationError(msg) from err
    log.info(
        "reference antenna chosen",
        extra={"ms": str(ms_path), **choice.provenance()},
    )
    return choice
