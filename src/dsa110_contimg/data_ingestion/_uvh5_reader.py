"""Read and validate the raw UVH5 files of one subband group.

Raw DSA-110 files fail pyuvdata's default checks, so they are read with the
checks off and validated here instead: every file must open, carry the same
integration times and pointing, and have a sane shape. Quirks are fixed on
read: baselines stored as ant1 > ant2 are conjugated, frequencies are sorted
ascending with positive widths, uvw is promoted to float64.
"""

from __future__ import annotations

import logging
import multiprocessing
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pyuvdata import UVData
from pyuvdata.uvdata.uvh5 import FastUVH5Meta

from dsa110_contimg.data_ingestion import _uvh5_subband
from dsa110_contimg.data_ingestion._uvh5_checks import (
    flag_corrupt_visibilities,
    header_facts,
    raise_read_error,
)
from dsa110_contimg.data_ingestion.grouping import SubbandGroup
from dsa110_contimg.exceptions import InputDataError, ResourceError
from dsa110_contimg.telescope.dsa110 import subband_frequencies_hz

__all__ = [
    "GroupHeader",
    "read_group_header",
    "read_group",
    "read_group_checked",
    "flag_corrupt_visibilities",
]

log = logging.getLogger(__name__)

_TIME_TOLERANCE_S = 0.5


def _cache_pyuvdata_kernels() -> None:
    """Let numba keep pyuvdata's baseline-number kernels compiled on disk.

    pyuvdata compiles them (``@njit`` without ``cache=True``) in every new
    process on first use, ~1 s of a conversion; with numba's own on-disk
    cache (next to pyuvdata, or ``NUMBA_CACHE_DIR``) that is paid once per
    installation. Where no cache location is writable, nothing changes.
    """
    try:
        from pyuvdata.utils import bls_numba
    except ImportError:  # pragma: no cover - another pyuvdata layout
        return
    for name in (
        "_antnums_to_baseline",
        "_baseline_to_antnums",
        "_max_ant",
        "_min_ant",
    ):
        kernel = getattr(bls_numba, name, None)
        if kernel is None or not hasattr(kernel, "enable_caching") or kernel.signatures:
            continue
        try:
            kernel.enable_caching()
        except RuntimeError:  # no writable cache location
            return


_cache_pyuvdata_kernels()


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
        return header_facts(meta, path)
    finally:
        meta.close()


def read_group_header(group: SubbandGroup) -> GroupHeader:
    """Validate the headers of a group's files against each other.

    Raises
    ------
    InputDataError
        A file is unreadable, lacks the pointing declination, or disagrees
        with the first file on times, baselines or channels.
    """
    return _check_headers(group, lambda sb: _read_file_header(group.files[sb]))


def _check_headers(
    group: SubbandGroup, facts: Callable[[int], dict[str, object]]
) -> GroupHeader:
    """Check the header facts of each subband (``facts(sb)``, which may raise)."""
    ref_path: Path | None = None
    ref: dict[str, object] | None = None
    for sb in sorted(group.files):
        path = group.files[sb]
        info = facts(sb)
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


def _read_one(path: Path, *, read_data: bool = True) -> UVData:
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
                read_data=read_data,
            )
    except Exception as err:  # h5py/pyuvdata raise many types on bad data
        raise_read_error(path, "reading visibilities failed", err)
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
    workers: int = 1,
    fast: bool = True,
) -> UVData:
    """Read a group's files into one UVData, ascending in frequency.

    Parameters
    ----------
    group : SubbandGroup
        The group.
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
    workers : int
        Processes reading subbands in parallel (1 = in this process).
    fast : bool
        Read the visibility arrays directly (`_uvh5_subband`); False reads
        every file with pyuvdata's generic reader (the reference path).

    Raises
    ------
    InputDataError
        A header check fails (`read_group_header`), a subband is missing and
        ``fill_missing`` is false, or a file fails to read.
    """
    return read_group_checked(
        group,
        fill_missing=fill_missing,
        chan_average=chan_average,
        corrupt_counts=corrupt_counts,
        workers=workers,
        fast=fast,
    )[1]


def read_group_checked(
    group: SubbandGroup,
    *,
    fill_missing: bool = False,
    chan_average: int = 1,
    corrupt_counts: dict[int, int] | None = None,
    workers: int = 1,
    fast: bool = True,
    while_reading: Callable[[UVData], None] | None = None,
) -> tuple[GroupHeader, UVData]:
    """Check a group's headers, then read it (see `read_group`).

    Each file is opened once on the fast path: the header facts are checked
    (in subband order, with `read_group_header`'s errors) from what the
    readers return, before any data error is raised. ``while_reading``, if
    given, is called with the first file's metadata (a metadata-only UVData)
    while the reader processes work, for set-up that needs no visibilities.

    Returns
    -------
    header : GroupHeader
    uv : UVData
    """
    if not fast or (group.missing_subbands and not fill_missing):
        header = read_group_header(group)
        _check_chan_average(group, header, chan_average)
        return header, _read_group_pyuvdata(
            group,
            fill_missing=fill_missing,
            chan_average=chan_average,
            corrupt_counts=corrupt_counts,
        )
    futures, reads = _start_reads(group, chan_average, workers)
    first = group.files[min(group.files)]
    try:
        uv = _read_one(first, read_data=False)
    except InputDataError:
        # the header check names the first bad file, as read_group_header does
        _collect(futures, reads, workers)
        _check_headers(group, lambda sb: _facts(reads[sb]))
        raise
    if while_reading is not None and futures:
        while_reading(uv)
    _collect(futures, reads, workers)
    header = _check_headers(group, lambda sb: _facts(reads[sb]))
    _check_chan_average(group, header, chan_average)
    for sb in sorted(reads):
        if reads[sb].arrays_error is not None:
            raise reads[sb].arrays_error
    why = _fast_path_refusal(uv, reads)
    if why:
        log.info(
            "subbands read with pyuvdata's generic reader",
            extra={"group": group.group_id, "reason": why},
        )
        return header, _read_group_pyuvdata(
            group,
            fill_missing=fill_missing,
            chan_average=chan_average,
            corrupt_counts=corrupt_counts,
        )
    for sb, r in sorted(reads.items()):
        n_vis = r.data.size * chan_average
        _note_corrupt(group, sb, r.n_corrupt, n_vis, corrupt_counts)
    return header, _assemble(uv, reads, group)


def _check_chan_average(
    group: SubbandGroup, header: GroupHeader, chan_average: int
) -> None:
    if chan_average > 1 and header.n_freq_per_subband % chan_average:
        msg = (
            f"conversion.chan_average={chan_average} does not divide the "
            f"{header.n_freq_per_subband} channels per subband of group "
            f"{group.group_id}; choose a divisor of {header.n_freq_per_subband}"
        )
        raise InputDataError(msg)


def _facts(read: _uvh5_subband.SubbandRead) -> dict[str, object]:
    if read.header_error is not None:
        raise read.header_error
    return read.header


def _start_reads(
    group: SubbandGroup, chan_average: int, workers: int
) -> tuple[dict[int, Future], dict[int, _uvh5_subband.SubbandRead]]:
    """Submit every file to the reader pool (or read them here, workers=1).

    A daemonic process (a Dask or multiprocessing worker) may not start
    processes of its own: it reads the files itself.
    """
    if (
        workers <= 1
        or len(group.files) <= 1
        or multiprocessing.current_process().daemon
    ):
        reads = {
            sb: _uvh5_subband.read_subband(str(path), chan_average)
            for sb, path in sorted(group.files.items())
        }
        return {}, reads
    pool = _uvh5_subband.subband_pool(workers)
    try:
        futures = {
            sb: pool.submit(_uvh5_subband.read_subband, str(path), chan_average)
            for sb, path in sorted(group.files.items())
        }
    except BrokenProcessPool as err:
        _uvh5_subband.discard_pool(workers)
        _raise_pool_error(group, err)
    return futures, {}


def _collect(
    futures: dict[int, Future],
    reads: dict[int, _uvh5_subband.SubbandRead],
    workers: int,
) -> None:
    """Wait for the submitted reads (once; a second call returns at once)."""
    for sb, future in futures.items():
        if sb in reads:
            continue
        try:
            reads[sb] = future.result()
        except BrokenProcessPool as err:
            for other in futures.values():
                other.cancel()
            _uvh5_subband.discard_pool(workers)
            _raise_pool_error(None, err)


def _raise_pool_error(group: SubbandGroup | None, err: BaseException) -> None:
    what = f"group {group.group_id}: " if group is not None else ""
    msg = (
        f"{what}a subband reader process died ({err}); most likely the machine ran "
        "out of memory: free memory or lower conversion.read_workers, and the job "
        "is retried"
    )
    raise ResourceError(msg) from err


def _fast_path_refusal(uv: UVData, reads: dict[int, _uvh5_subband.SubbandRead]) -> str:
    """Return why the directly read arrays cannot be joined ('' when they can)."""
    for _sb, r in sorted(reads.items()):
        if r.unsupported:
            return f"{r.path}: {r.unsupported}"
        same = (
            np.array_equal(r.ant_1, uv.ant_1_array)
            and np.array_equal(r.ant_2, uv.ant_2_array)
            and np.array_equal(r.polarizations, uv.polarization_array)
            and r.time_jd.shape == uv.time_array.shape
            and np.max(np.abs(r.time_jd - uv.time_array)) * 86400.0 <= _TIME_TOLERANCE_S
        )
        if not same:
            first = reads[min(reads)].path
            return f"{r.path}: baselines, times or polarizations differ from {first}"
    widths = {r.freq_hz.size for r in reads.values()}
    if len(widths) != 1:
        return "subbands have different numbers of channels"
    return ""


def _note_corrupt(
    group: SubbandGroup,
    sb: int,
    n_bad: int,
    n_vis: int,
    corrupt_counts: dict[int, int] | None,
) -> None:
    if corrupt_counts is not None:
        corrupt_counts[sb] = n_bad
    if n_bad:
        log.warning(
            "corrupt visibilities flagged",
            extra={
                "group": group.group_id,
                "path": str(group.files[sb]),
                "n_flagged": n_bad,
                "fraction": round(n_bad / max(n_vis, 1), 6),
            },
        )


def _assemble(
    uv: UVData, reads: dict[int, _uvh5_subband.SubbandRead], group: SubbandGroup
) -> UVData:
    """Join the subbands' arrays in ascending frequency into the header's UVData.

    Missing subbands become flagged zeros at their nominal frequencies, as
    `_flagged_subband` makes them; baselines stored as ant1 > ant2 are then
    conjugated by pyuvdata (`conjugate_bls`), as in the generic path.
    """
    template = reads[min(reads)]
    n_chan = template.freq_hz.size
    freqs: dict[int, NDArray[np.float64]] = {sb: r.freq_hz for sb, r in reads.items()}
    for sb in group.missing_subbands:
        freqs[sb] = np.sort(subband_frequencies_hz(sb, n_chan=n_chan))
    order = sorted(freqs, key=lambda s: freqs[s][0])
    n_blt, _, n_pol = template.data.shape
    shape = (n_blt, n_chan * len(order), n_pol)
    data = np.empty(shape, dtype=template.data.dtype)
    flags = np.empty(shape, dtype=bool)
    nsample = np.empty(shape, dtype=template.nsample.dtype)
    freq = np.empty(shape[1])
    width = np.empty(shape[1])
    for i, sb in enumerate(order):
        cut = slice(i * n_chan, (i + 1) * n_chan)
        freq[cut] = freqs[sb]
        r = reads.get(sb, template)
        width[cut] = r.width_hz
        if sb in reads:
            data[:, cut], flags[:, cut], nsample[:, cut] = r.data, r.flags, r.nsample
        else:
            data[:, cut], flags[:, cut], nsample[:, cut] = 0.0, True, 0.0
    uv.data_array, uv.flag_array, uv.nsample_array = data, flags, nsample
    uv.freq_array, uv.channel_width = freq, width
    uv.Nfreqs = freq.size
    uv.flex_spw_id_array = np.zeros(uv.Nfreqs, dtype=int)
    uv.spw_array = np.array([0])
    uv.Nspws = 1
    if np.any(uv.ant_1_array > uv.ant_2_array):
        uv.conjugate_bls("ant1<ant2")
    return uv


def _read_group_pyuvdata(
    group: SubbandGroup,
    *,
    fill_missing: bool = False,
    chan_average: int = 1,
    corrupt_counts: dict[int, int] | None = None,
) -> UVData:
    """Read every file with pyuvdata's generic reader (the reference path)."""
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
        _note_corrupt(group, sb, n_bad, uv.data_array.size, corrupt_counts)
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
