"""Checks of raw UVH5 files shared by both readers of a group.

The header facts `read_group_header` compares between files, the routing of
read failures to `InputDataError` (a bad file) or `ResourceError` (the
machine), and the flagging of corrupt visibilities. Used by the group reader
(`_uvh5_reader`) and the subband reader processes (`_uvh5_subband`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pyuvdata import UVData
from pyuvdata.uvdata.uvh5 import FastUVH5Meta

from dsa110_contimg.exceptions import InputDataError, ResourceError
from dsa110_contimg.utils.storage import is_resource_exhaustion

__all__ = [
    "header_facts",
    "raise_read_error",
    "flag_corrupt_visibilities",
]

# A visibility this many robust amplitude scales above its subband's typical
# amplitude cannot be sky signal at DSA-110 (the brightest source in the beam
# is ~100 times the per-visibility noise): it is bit rot or a correlator fault.
_ABSURD_FACTOR = 1.0e4
_MAD_STD_SCALE = 1.482602218505602  # astropy.stats.mad_std: 1 / Phi^-1(3/4)
_REQUIRED = ("time_array", "freq_array", "ant_1_array", "ant_2_array", "Nblts")


def header_facts(meta: FastUVH5Meta, path: Path) -> dict[str, object]:
    """Return the header facts of an open file (see `read_group_header`)."""
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
        raise_read_error(path, "cannot read HDF5 header", err)


def raise_read_error(path: Path, step: str, err: Exception) -> None:
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
    with np.errstate(invalid="ignore", over="ignore"):
        amp = np.abs(data)
    if _nothing_corrupt(amp, uv):
        return 0
    bad = ~np.isfinite(data)
    auto = (uv.ant_1_array == uv.ant_2_array)[:, None, None]
    good = ~bad & ~uv.flag_array & (amp > 0)
    for sel in (np.broadcast_to(auto, data.shape), np.broadcast_to(~auto, data.shape)):
        sel_good = good & sel
        n_good = int(np.count_nonzero(sel_good))
        if n_good == 0:
            continue
        top = float(np.max(amp, where=sel & ~bad, initial=0.0))
        if _median_reaches(amp, sel_good, n_good, top):
            continue  # nothing can be absurd: no median needed (the usual case)
        vals = amp[sel_good]
        med = float(np.median(vals))
        # the scale is at least the median: when no finite amplitude reaches
        # med + 1e4 * med, none is absurd and the MAD is not needed
        floor = med + _ABSURD_FACTOR * max(med, 1e-30)
        if top <= floor:
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


def _nothing_corrupt(amp: NDArray[np.floating], uv: UVData) -> bool:
    """Return True when `flag_corrupt_visibilities` would flag nothing.

    The usual case, proved cheaply: every amplitude finite (so every
    visibility is), and for autos and crosses apart `_median_reaches` holds.
    Works on row subsets instead of full-size masks; ``amp`` is modified
    (its auto rows zeroed).
    """
    if not np.isfinite(amp).all():
        return False
    good = ~uv.flag_array & (amp > 0)
    auto_rows = np.flatnonzero(uv.ant_1_array == uv.ant_2_array)
    auto_amp, auto_good = amp[auto_rows], good[auto_rows]
    # crosses: the auto rows zeroed in amp and unset in good
    amp[auto_rows] = 0.0
    good[auto_rows] = False
    for values, mask in ((auto_amp, auto_good), (amp, good)):
        n_good = int(np.count_nonzero(mask))
        if n_good == 0:
            continue
        top = float(values.max(initial=0.0))
        if not _median_reaches(values, mask, n_good, top):
            return False
    return True


def _median_reaches(
    amp: NDArray[np.floating], mask: NDArray[np.bool_], n: int, top: float
) -> bool:
    """Return True when the median of ``amp[mask]`` is >= ``top / (1 + 1e4)``.

    Then ``top <= median + 1e4 * median``: no amplitude is absurd, proved by
    one count (fewer than half of the values lie below the bound) instead of
    a median of every visibility.
    """
    bound = top / (1.0 + _ABSURD_FACTOR)
    # make "bound + 1e4 * bound >= top" hold in floating point too
    while bound + _ABSURD_FACTOR * max(bound, 1e-30) < top:
        bound = float(np.nextafter(bound, np.inf))
    # the lower middle value (hence the median) is >= bound when at most
    # (n - 1) // 2 values are below it
    return int(np.count_nonzero(mask & (amp < bound))) <= (n - 1) // 2
