"""Read and validate the raw UVH5 files of one subband group.

Raw DSA-110 files fail pyuvdata's default checks, so they are read with the
checks off and validated here instead: every file must open, carry the same
integration times and pointing, and have a sane shape. Quirks are fixed on
read: baselines stored as ant1 > ant2 are conjugated, frequencies are sorted
ascending with positive widths, uvw is promoted to float64.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pyuvdata import UVData
from pyuvdata.uvdata.uvh5 import FastUVH5Meta

from dsa110_contimg.data_ingestion.grouping import SubbandGroup
from dsa110_contimg.exceptions import InputDataError, ResourceError
from dsa110_contimg.telescope.dsa110 import subband_frequencies_hz
from dsa110_contimg.utils.storage import is_resource_exhaustion

__all__ = [
    "GroupHeader",
    "read_group_header",
    "read_group",
    "flag_corrupt_visibilities",
]

log = logging.getLogger(__name__)

_TIME_TOLERANCE_S = 0.5
# A visibility this many robust amplitude scales above its subband's typical
# amplitude cannot be sky signal at DSA-110 (the brightest source in the beam
# is ~100 times the per-visibility noise): it is bit rot or a correlator fault.
_ABSURD_FACTOR = 1.0e4
_MAD_STD_SCALE = 1.482602218505602  # astropy.stats.mad_std: 1 / Phi^-1(3/4)
_REQUIRED = ("time_array", "freq_array", "ant_1_array", "ant_2_array", "Nblts")


@dataclass(frozen=True, slots=True)
class GroupHeader:
    """Header facts of a group, checked consistent across its files."""

    times_jd: NDArray[np.float64]
    pointing_dec_rad: float
    n_blts: int
    n_freq_per_subband: int


def _read_file_header(path: Path) -> dict[str, object]:
    """Return the header facts of one file, read with pyuvdata's `FastUVH5Meta`."""
    meta = FastUVH5Meta(path)
    try:
        try:
            header, data = meta.header, meta.datagrp
        except KeyError as err:
            msg = f"{path}: not a UVH5 file (no Header/Data groups); re-transfer it"
            raise InputDataError(msg) from err
        missing = [k for k in _REQUIRED if k not in header]
        if missing:
            msg = f"{path}: UVH5 header lacks {missing}; the file is incomplete"
            raise InputDataError(msg)
        dec = meta.extra_keywords.get("phase_center_dec")
        return {
            "times": np.unique(meta.time_array),
            "n_blts": meta.Nblts,
            "n_freq": int(np.asarray(meta.freq_array).size),
            "dec": None if dec is None else float(dec),
            "data_shape": tuple(data["visdata"].shape) if "visdata" in data else None,
        }
    except InputDataError:
        raise
    except Exception as err:
        _raise_read_error(path, "cannot read HDF5 header", err)
    finally:
        meta.close()


def _raise_read_error(path: Path, step: str, err: Exception) -> None:
    """Raise the error class that routes a raw-file read failure correctly.

    A machine problem (out of memory, an I/O or permission error, a stale
    network mount, too many open files) is a retryable `ResourceError`: the
    file may be fine. Anything else (h5py's "truncated file", a missing
    dataset, a wrong dtype) means the file itself is bad: `InputDataError`,
    which quarantines the group until the file is replaced.
    """
    if is_resource_exhaustion(err):
        msg = (
            f"{path}: {step} ({type(err).__name__}: {err}); this is a "
            "machine problem (memory, I/O, permissions or the mount), not a bad "
            "file: fix it and the job is retried"
        )
        raise ResourceError(msg) from err
    msg = (
        f"{path}: {step} ({type(err).__name__}: {err}); the file is "
        "truncated or corrupt; re-transfer it or remove it from the incoming "
        "directory"
    )
    raise InputDataError(msg) from err


def flag_corrupt_visibilities(uv: UVData) -> int:
    """Flag (and zero) non-finite and absurd visibilities in place.

    Absurd means more than ``1e4`` robust amplitude scales above the median
    amplitude of the same kind of product (auto- or cross-correlation) in
    ``uv``: values no sky can produce, as left by bit rot (random bytes read
    as float32 span 1e-38 to 3e38) or a correlator fault. Subtler outliers
    are the flagging stage's job.

    Returns
    -------
    int
        Number of visibilities newly flagged.
    """
    data = uv.data_array
    bad = ~np.isfinite(data)
    auto = (uv.ant_1_array == uv.ant_2_array)[:, None, None]
    with np.errstate(invalid="ignore", over="ignore"):
        amp = np.abs(data)
    good = ~bad & ~uv.flag_array & (amp > 0)
    for sel in (np.broadcast_to(auto, data.shape), np.broadcast_to(~auto, data.shape)):
        vals = amp[good & sel]
        if vals.size == 0:
            continue
        med = float(np.median(vals))
        # the scale is at least the median: when no finite amplitude reaches
        # med + 1e4 * med, none is absurd and the MAD is not needed (the
        # usual case; it saves two more medians of every visibility)
        floor = med + _ABSURD_FACTOR * max(med, 1e-30)
        if float(np.max(amp, where=sel & ~bad, initial=0.0)) <= floor:
            continue
        # astropy's mad_std on the median already taken
        mad = float(np.median(np.abs(vals - med))) * _MAD_STD_SCALE
        scale = max(mad, med, 1e-30)
        with np.errstate(invalid="ignore"):
            bad |= sel & (amp > med + _ABSURD_FACTOR * scale)
    new = bad & ~uv.flag_array
    n_new = int(np.count_nonzero(new))
    if np.any(bad):
        data[bad] = 0.0
        uv.flag_array |= bad
        uv.nsample_array[bad] = 0.0
    return n_new


def read_group_header(group: SubbandGroup) -> GroupHeader:
    """Validate the headers of a group's files against each other.

    Raises
    ------
    InputDataError
        A file is unreadable, lacks the pointing declination, or disagrees
        with the first file on times, baselines or channels.
    """
    ref_path: Path | None = None
    ref: dict[str, object] | None = None
    for sb in sorted(group.files):
        path = group.files[sb]
        info = _read_file_header(path)
        if info["dec"] is None:
            msg = (
                f"{path}: extra_keywords.phase_center_dec (pointing declination) "
                "is missing; the pipeline reads the pointing from each file"
            )
            raise InputDataError(msg)
        if info["data_shape"] is None:
            msg = f"{path}: no Data/visdata dataset; the file is incomplete"
            raise InputDataError(msg)
        if ref is None:
            ref, ref_path = info, path
            continue
        times, ref_times = info["times"], ref["times"]
        if (
            times.shape != ref_times.shape
            or np.max(np.abs(times - ref_times)) * 86400.0 > _TIME_TOLERANCE_S
        ):
            msg = (
                f"{path}: integration times differ from {ref_path.name} "
                f"({times.size} vs {ref_times.size} times, first "
                f"{times[0]:.6f} vs {ref_times[0]:.6f} JD); the files do not belong "
                "to one group; check the grouping tolerance or remove the stray file"
            )
            raise InputDataError(msg)
        if info["n_blts"] != ref["n_blts"]:
            msg = (
                f"{path}: {info['n_blts']} baseline-times, {ref_path.name} has "
                f"{ref['n_blts']}; inconsistent group"
            )
            raise InputDataError(msg)
        if abs(info["dec"] - ref["dec"]) > np.deg2rad(1.0 / 3600):
            msg = (
                f"{path}: pointing dec {np.degrees(info['dec']):.4f} deg differs from "
                f"{ref_path.name} ({np.degrees(ref['dec']):.4f} deg)"
            )
            raise InputDataError(msg)
    if ref is None:
        msg = f"group {group.group_id}: no files"
        raise InputDataError(msg)
    return GroupHeader(
        ref["times"], float(ref["dec"]), int(ref["n_blts"]), int(ref["n_freq"])
    )


def _read_one(path: Path) -> UVData:
    uv = UVData()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            uv.read(
                str(path),
                file_type="uvh5",
                run_check=False,
                run_check_acceptability=False,
                check_extra=False,
                fix_autos=False,
            )
    except Exception as err:  # h5py/pyuvdata raise many types on bad data
        _raise_read_error(path, "reading visibilities failed", err)
    uv.uvw_array = np.asarray(uv.uvw_array, dtype=np.float64)
    return uv


def _fix_quirks(uv: UVData) -> None:
    """Conjugate ant1 > ant2 baselines; make frequencies ascending, widths positive."""
    if np.any(uv.ant_1_array > uv.ant_2_array):
        uv.conjugate_bls("ant1<ant2")
    uv.channel_width = np.abs(np.asarray(uv.channel_width, dtype=np.float64))
    order = np.argsort(uv.freq_array)
    if np.any(order != np.arange(order.size)):
        uv.reorder_freqs(channel_order="freq", run_check=False)


def read_group(
    group: SubbandGroup,
    *,
    fill_missing: bool = False,
    chan_average: int = 1,
    corrupt_counts: dict[int, int] | None = None,
) -> UVData:
    """Read a group's files into one UVData, ascending in frequency.

    Parameters
    ----------
    group : SubbandGroup
        The group; its headers should have passed `read_group_header`.
    fill_missing : bool
        Insert missing subbands as flagged zeros (keeps the 16-subband
        layout) instead of failing.
    chan_average : int
        Average this many adjacent channels of each subband as it is read
        (must divide the channels per subband, so no average crosses a
        subband edge). Averaging before the subbands are joined makes the
        join (a copy of every visibility) ``chan_average`` times cheaper.
    corrupt_counts : dict, optional
        Filled with the number of non-finite or absurd visibilities flagged
        per subband (`flag_corrupt_visibilities`, before averaging).

    Raises
    ------
    InputDataError
        A subband is missing and ``fill_missing`` is false, or a file fails to
        read.
    """
    if group.missing_subbands and not fill_missing:
        missing = ", ".join(f"sb{sb:02d}" for sb in group.missing_subbands)
        msg = (
            f"group {group.group_id}: missing subband(s) {missing}; wait for the "
            "files or set conversion.incomplete_policy: flag to convert with "
            "those channels flagged"
        )
        raise InputDataError(msg)
    parts: dict[int, UVData] = {}
    for sb in sorted(group.files):
        uv = _read_one(group.files[sb])
        _fix_quirks(uv)
        n_bad = flag_corrupt_visibilities(uv)
        if corrupt_counts is not None:
            corrupt_counts[sb] = n_bad
        if n_bad:
            log.warning(
                "corrupt visibilities flagged",
                extra={
                    "group": group.group_id,
                    "path": str(group.files[sb]),
                    "n_flagged": n_bad,
                    "fraction": round(n_bad / max(uv.data_array.size, 1), 6),
                },
            )
        if chan_average > 1:
            uv.frequency_average(n_chan_to_avg=chan_average, propagate_flags=True)
        parts[sb] = uv
    template = parts[min(parts)]
    for sb in group.missing_subbands:
        parts[sb] = _flagged_subband(template, sb)
    # Concatenate in ascending frequency: sb15 (lowest) first.
    ordered = [parts[sb] for sb in sorted(parts, key=lambda s: parts[s].freq_array[0])]
    combined = ordered[0]
    if len(ordered) > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            combined = ordered[0].fast_concat(ordered[1:], axis="freq", run_check=False)
    combined.flex_spw_id_array = np.zeros(combined.Nfreqs, dtype=int)
    combined.spw_array = np.array([0])
    combined.Nspws = 1
    return combined


def _flagged_subband(template: UVData, subband: int) -> UVData:
    """Return a copy of ``template`` moved to ``subband``'s channels, all flagged."""
    uv = template.copy()
    uv.freq_array = np.sort(subband_frequencies_hz(subband, n_chan=template.Nfreqs))
    uv.data_array = np.zeros_like(template.data_array)
    uv.flag_array = np.ones_like(template.flag_array)
    uv.nsample_array = np.zeros_like(template.nsample_array)
    return uv
