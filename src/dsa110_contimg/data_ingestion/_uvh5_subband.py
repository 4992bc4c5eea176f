"""Read one subband's visibility arrays straight into numpy, averaged on read.

The fast path of `_uvh5_reader.read_group`: each file is opened once
(pyuvdata's `FastUVH5Meta` for the header facts, h5py ``read_direct`` of
``visdata``/``flags``/``nsamples`` into preallocated arrays), its corrupt
visibilities are flagged (`flag_corrupt_visibilities`), its channels are put
in ascending order and averaged with pyuvdata's own averaging kernel
(`pyuvdata.utils.averaging.mapped_average`, the one ``frequency_average``
calls), so the result equals pyuvdata's read + ``frequency_average``. The
subbands of a group are read by a pool of worker processes
(`subband_pool`), which stays up between groups so that imports and numba
compilation are paid once per worker.

Layouts this path does not handle (integer-compound ``visdata``, several
spectral windows) are reported as unsupported and the group is read by
pyuvdata's generic reader instead.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util
import os
import threading
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "SubbandRead",
    "read_subband",
    "default_workers",
    "subband_pool",
    "discard_pool",
    "shutdown_pools",
]

_N_SUBBANDS = 16


@dataclass(slots=True)
class SubbandRead:
    """What one worker hands back for one file.

    Exactly one of ``header`` / ``header_error`` is set; ``arrays_error`` is
    a data read failure (raised by the caller after every header passed),
    ``unsupported`` the reason the fast path cannot read this layout.
    """

    path: str
    header: dict[str, object] | None = None
    header_error: BaseException | None = None
    arrays_error: BaseException | None = None
    unsupported: str | None = None
    # averaged, ascending-frequency arrays (n_blt, n_freq_out, n_pol)
    data: NDArray[np.complexfloating] | None = None
    flags: NDArray[np.bool_] | None = None
    nsample: NDArray[np.floating] | None = None
    freq_hz: NDArray[np.float64] | None = None
    width_hz: NDArray[np.float64] | None = None
    ant_1: NDArray[np.int_] | None = None
    ant_2: NDArray[np.int_] | None = None
    time_jd: NDArray[np.float64] | None = None
    polarizations: NDArray[np.int_] | None = None
    n_corrupt: int = 0


def default_workers() -> int:
    """Return the reader processes for this machine: one per usable core, <= 16."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, _N_SUBBANDS))


def read_subband(path: str, chan_average: int) -> SubbandRead:
    """Read, check, flag and average one subband file (runs in a worker).

    Parameters
    ----------
    path : str
        The UVH5 file.
    chan_average : int
        Adjacent channels to average (1 = none); when it does not divide the
        file's channels, only the header is returned (the caller raises).

    Returns
    -------
    SubbandRead
        Never raises for a bad file: errors travel in the result, so the
        caller can raise them in the order the serial reader did.
    """
    from pyuvdata.uvdata.uvh5 import FastUVH5Meta

    from dsa110_contimg.data_ingestion import _uvh5_checks

    out = SubbandRead(path)
    try:
        meta = FastUVH5Meta(Path(path))
    except Exception as err:
        try:
            _uvh5_checks.raise_read_error(Path(path), "cannot read HDF5 header", err)
        except Exception as routed:
            out.header_error = routed
        return out
    try:
        try:
            out.header = _uvh5_checks.header_facts(meta, Path(path))
        except Exception as err:
            out.header_error = err
            return out
        if out.header["dec"] is None or out.header["data_shape"] is None:
            return out  # the caller raises the header error
        n_freq = int(out.header["n_freq"])
        if chan_average > 1 and n_freq % chan_average:
            return out
        try:
            out.unsupported = _unsupported(meta, out) or None
            if out.unsupported is None:
                _read_arrays(meta, out, chan_average)
        except Exception as err:
            try:
                _uvh5_checks.raise_read_error(
                    Path(path), "reading visibilities failed", err
                )
            except Exception as routed:
                out.arrays_error = routed
    finally:
        meta.close()
    return out


_DTYPES = {
    "visdata": (np.complex64, np.complex128),
    "flags": (np.bool_,),
    "nsamples": (np.float32, np.float64),
}


def _unsupported(meta, out: SubbandRead) -> str:
    """Return why this file's layout is left to pyuvdata ('' when it is not)."""
    header, dgrp = meta.header, meta.datagrp
    if int(header["Nspws"][()]) != 1:
        return "more than one spectral window"
    n_blt, n_freq, n_pol = int(meta.Nblts), int(out.header["n_freq"]), int(meta.Npols)
    shapes = ((n_blt, 1, n_freq, n_pol), (n_blt, n_freq, n_pol))
    for name, dtypes in _DTYPES.items():
        if name not in dgrp or dgrp[name].shape not in shapes:
            return f"no {name} of shape (Nblts, [1,] Nfreqs, Npols)"
        if dgrp[name].dtype not in dtypes:
            return f"{name} of dtype {dgrp[name].dtype}"
    return ""


def _read_arrays(meta, out: SubbandRead, chan_average: int) -> None:
    """Fill ``out`` with the file's averaged arrays (see `read_subband`)."""
    from pyuvdata.utils.averaging import mapped_average

    from dsa110_contimg.data_ingestion._uvh5_checks import flag_corrupt_visibilities

    header, dgrp = meta.header, meta.datagrp
    vis = dgrp["visdata"]
    shape = vis.shape
    n_blt, n_freq, n_pol = int(meta.Nblts), int(out.header["n_freq"]), int(meta.Npols)
    data = np.empty((n_blt, n_freq, n_pol), dtype=vis.dtype)
    flags = np.empty((n_blt, n_freq, n_pol), dtype=bool)
    nsample = np.empty((n_blt, n_freq, n_pol), dtype=dgrp["nsamples"].dtype)
    vis.read_direct(data.reshape(shape))
    dgrp["flags"].read_direct(flags.reshape(shape))
    dgrp["nsamples"].read_direct(nsample.reshape(shape))

    freq = np.asarray(meta.freq_array, dtype=np.float64).reshape(-1)
    width = np.abs(
        np.broadcast_to(np.asarray(header["channel_width"][()], np.float64), freq.shape)
    )
    order = np.argsort(freq)
    ascending = bool(np.all(order == np.arange(order.size)))
    freq, width = freq[order], width[order]
    ant_1 = np.asarray(header["ant_1_array"][()])
    ant_2 = np.asarray(header["ant_2_array"][()])
    view = SimpleNamespace(
        data_array=data,
        flag_array=flags,
        nsample_array=nsample,
        ant_1_array=ant_1,
        ant_2_array=ant_2,
    )
    out.n_corrupt = flag_corrupt_visibilities(view)
    if chan_average > 1:
        # channels are averaged in the order stored: raw channel j goes to
        # the bin of its ascending position, so descending files (DSA-110's)
        # need no reordered copy at full resolution
        position = np.empty(order.size, dtype=np.int64)
        position[order] = np.arange(order.size)
        n_out = n_freq // chan_average
        sorted_map = np.arange(n_freq, dtype=np.int64) // chan_average
        n_contrib = np.bincount(sorted_map, minlength=n_out)
        # pyuvdata's frequency_average(n_chan_to_avg, propagate_flags=True)
        data, flags, nsample = mapped_average(
            data,
            index_map=position // chan_average,
            flags=flags,
            weights=nsample,
            axis=1,
            n_bins=n_out,
            weighted=True,
            sum_mode=False,
            propagate_flags=True,
            weights_norm=n_contrib[:, np.newaxis],
        )
        freq = np.bincount(sorted_map, weights=freq, minlength=n_out) / n_contrib
        width = np.bincount(sorted_map, weights=width, minlength=n_out)
    elif not ascending:
        data, flags, nsample = data[:, order], flags[:, order], nsample[:, order]
    out.data, out.flags, out.nsample = data, flags, nsample
    out.freq_hz, out.width_hz = freq, width
    out.ant_1, out.ant_2 = ant_1, ant_2
    out.time_jd = np.asarray(header["time_array"][()], dtype=np.float64)
    out.polarizations = np.asarray(header["polarization_array"][()])


def _worker_init() -> None:
    """One numba thread per worker process: the processes are the parallelism."""
    try:
        import numba

        numba.set_num_threads(1)
    except ImportError:  # pragma: no cover - numba comes with pyuvdata
        pass


def _numba_fork_safe() -> bool:
    """Return True unless numba's OpenMP threading layer runs in this process."""
    try:
        import numba

        layer = numba.threading_layer()
    except ImportError:  # pragma: no cover - numba comes with pyuvdata
        return True
    except ValueError:  # no parallel numba code has run here yet
        return True
    return layer != "omp"


_POOLS: dict[int, Executor] = {}
_POOLS_LOCK = threading.Lock()


def subband_pool(workers: int) -> Executor:
    """Return the process pool of ``workers`` readers, started on first use.

    The pool lives until the interpreter exits, so a long-running service
    pays each worker's start-up (imports, numba compilation) once, not per
    group. A process with no other thread forks its workers (they inherit
    the imports: no start-up at all); one with threads spawns them, since a
    fork could inherit a lock another thread holds, and so does one that has
    started numba's OpenMP thread pool (which aborts a forked child).
    Being direct children, the workers count in the
    caller's ``RUSAGE_CHILDREN`` once `shutdown_pools` has waited for them.
    """
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            fork = (
                threading.active_count() == 1
                and "fork" in multiprocessing.get_all_start_methods()
                and _numba_fork_safe()
            )
            pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("fork" if fork else "spawn"),
                initializer=_worker_init,
            )
            _POOLS[workers] = pool
        return pool


def discard_pool(workers: int) -> None:
    """Forget a pool whose process died, so the next group starts a new one."""
    with _POOLS_LOCK:
        pool = _POOLS.pop(workers, None)
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def shutdown_pools() -> None:
    """Stop the reader processes (registered at exit; safe to call twice)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown_pools)
# A multiprocessing worker (the services' stage pool) leaves through
# multiprocessing's exit function, which joins its children before atexit
# would run: stop the readers there first, or that join waits forever.
multiprocessing.util.Finalize(None, shutdown_pools, exitpriority=100)
# a forked reader must not think it owns its parent's pools
os.register_at_fork(after_in_child=_POOLS.clear)
