"""The direct (h5py) subband reader gives the MS that pyuvdata's reader gives.

Known truth: `convert_group(direct_read=False)` reads every file with
pyuvdata's generic reader, conjugates, sorts and averages with pyuvdata (the
reference path). The direct path, serial or with reader processes, must write
the same MS: every main-table column and the subtables downstream stages use,
on groups of different shapes, both antenna naming schemes, with flagged
visibilities, corrupt values and a missing subband.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pytest

from dsa110_contimg.data_ingestion import _uvh5_subband
from dsa110_contimg.data_ingestion.grouping import (
    SubbandGroup,
    discover_subband_files,
    group_subband_files,
)
from dsa110_contimg.data_ingestion.ms_creation import convert_group
from dsa110_contimg.simulation import ObservationSpec, simulate_observation

tables = pytest.importorskip("casacore.tables")

pytestmark = [pytest.mark.integration, pytest.mark.casa]

# main-table columns compared to 1e-6 relative (the averaging sums in the
# files' channel order, pyuvdata's path in ascending order); all others exact
_FLOAT_COLUMNS = {"DATA", "WEIGHT", "SIGMA", "WEIGHT_SPECTRUM", "SIGMA_SPECTRUM"}
_SUBTABLES = (
    "ANTENNA",
    "SPECTRAL_WINDOW",
    "FIELD",
    "POLARIZATION",
    "DATA_DESCRIPTION",
    "FEED",
    "OBSERVATION",
    "POINTING",
)
# MS keywords that name the process or the moment, not the data
_VOLATILE = {"DSA110_COMPLETE"}

SHAPES = {
    # name: (spec overrides, chan_average)
    "station_24ant_4chan_avg2": (
        {"n_antennas": 24, "n_chan_per_subband": 4, "n_times": 4},
        2,
    ),
    "pad_10ant_8chan_avg4": (
        {
            "n_antennas": 10,
            "n_chan_per_subband": 8,
            "n_times": 3,
            "antenna_naming": "pad",
        },
        4,
    ),
    "station_8ant_2chan_missing_sb": (
        {
            "n_antennas": 8,
            "n_chan_per_subband": 2,
            "n_times": 5,
            "missing_subbands": (6,),
        },
        1,
    ),
}


def _group(directory: Path) -> SubbandGroup:
    (group,) = group_subband_files(discover_subband_files(directory))
    return group


def _damage(group: SubbandGroup) -> None:
    """Flag some visibilities in one file and write a NaN and a 3e38 into another."""
    files = [group.files[sb] for sb in sorted(group.files)]
    with h5py.File(files[1], "r+") as h5:
        flags = h5["Data/flags"][()]
        flags.reshape(flags.shape[0], -1)[::7, 0] = True
        h5["Data/flags"][...] = flags
    with h5py.File(files[2], "r+") as h5:
        vis = h5["Data/visdata"][()]
        flat = vis.reshape(vis.shape[0], -1)
        flat[3, 0] = np.nan
        flat[5, -1] = 3e38
        h5["Data/visdata"][...] = vis


@pytest.fixture(scope="module", params=sorted(SHAPES))
def raw_group(request, tmp_path_factory: pytest.TempPathFactory):
    overrides, chan_average = SHAPES[request.param]
    spec = ObservationSpec(
        start_time=datetime(2023, 6, 1, 2, 0, 0, tzinfo=UTC),
        n_groups=1,
        n_sources=3,
        seed=3,
        **overrides,
    )
    out = tmp_path_factory.mktemp(request.param)
    simulate_observation(spec, out / "raw")
    group = _group(out / "raw")
    _damage(group)
    return group, chan_average, out


def _convert(group: SubbandGroup, out: Path, chan_average: int, **kw) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        product = convert_group(
            group,
            out,
            chan_average=chan_average,
            incomplete_policy="flag",
            **kw,
        )
    return product.path


def _table(path: Path) -> dict[str, object]:
    with tables.table(str(path), ack=False) as t:
        cols = {c: t.getcol(c) for c in t.colnames() if t.iscelldefined(c, 0)}
        kw = {k: v for k, v in t.getkeywords().items() if not isinstance(v, str)}
        kw.update(
            {
                k: v
                for k, v in t.getkeywords().items()
                if isinstance(v, str) and not v.startswith("Table: ")
            }
        )
    return {"columns": cols, "keywords": kw}


def _assert_ms_equal(ms: Path, ref: Path) -> None:
    got, want = _table(ms), _table(ref)
    assert sorted(got["columns"]) == sorted(want["columns"])
    for name, expected in want["columns"].items():
        actual = got["columns"][name]
        if name in _FLOAT_COLUMNS:
            np.testing.assert_allclose(
                actual, expected, rtol=1e-6, atol=0, err_msg=name
            )
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=name)
    for key in set(want["keywords"]) - _VOLATILE:
        np.testing.assert_array_equal(got["keywords"][key], want["keywords"][key])
    for sub in _SUBTABLES:
        g, w = _table(ms / sub), _table(ref / sub)
        assert sorted(g["columns"]) == sorted(w["columns"]), sub
        for name, expected in w["columns"].items():
            np.testing.assert_array_equal(
                g["columns"][name], expected, err_msg=f"{sub}.{name}"
            )


def test_direct_read_writes_the_pyuvdata_paths_ms(raw_group) -> None:
    group, chan_average, out = raw_group
    ref = _convert(group, out / "ref", chan_average, direct_read=False)
    ms = _convert(group, out / "direct", chan_average, read_workers=1)
    _assert_ms_equal(ms, ref)
    with tables.table(str(ms), ack=False) as t:
        assert t.getkeyword("DSA110_N_CORRUPT_VIS") == 2
        assert t.getcol("FLAG").any()


@pytest.fixture(scope="module")
def reader_pool():
    """Two reader processes for the module (started once, stopped after)."""
    yield 2
    _uvh5_subband.shutdown_pools()


def test_parallel_read_equals_serial(raw_group, reader_pool: int) -> None:
    group, chan_average, out = raw_group
    serial = _convert(group, out / "serial", chan_average, read_workers=1)
    parallel = _convert(group, out / "parallel", chan_average, read_workers=reader_pool)
    _assert_ms_equal(parallel, serial)
    with (
        tables.table(str(parallel), ack=False) as p,
        tables.table(str(serial), ack=False) as s,
    ):
        # bit for bit: the same code on the same bytes, only elsewhere
        np.testing.assert_array_equal(p.getcol("DATA"), s.getcol("DATA"))


def test_unsupported_layout_falls_back_to_pyuvdata(
    tiny_group_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = _group(tiny_group_dir)
    ref = _convert(group, tmp_path / "ref", 1, direct_read=False)
    monkeypatch.setattr(
        _uvh5_subband, "_unsupported", lambda meta, out: "integer-compound visdata"
    )
    monkeypatch.setattr(
        _uvh5_subband,
        "_read_arrays",
        lambda *a: pytest.fail("the direct reader read an unsupported file"),
    )
    ms = _convert(group, tmp_path / "fallback", 1, read_workers=1)
    _assert_ms_equal(ms, ref)


def test_daemonic_process_reads_in_process(
    tiny_group_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Dask/multiprocessing worker may not start processes: no pool is used."""
    import multiprocessing
    from types import SimpleNamespace

    from dsa110_contimg.data_ingestion import _uvh5_reader

    monkeypatch.setattr(
        multiprocessing, "current_process", lambda: SimpleNamespace(daemon=True)
    )
    monkeypatch.setattr(
        _uvh5_subband, "subband_pool", lambda n: pytest.fail("pool in a daemon")
    )
    uv = _uvh5_reader.read_group(_group(tiny_group_dir), workers=2)
    assert uv.Nfreqs == 16 * 2 and uv.data_array is not None


def test_dead_reader_process_is_a_retryable_resource_error(
    tiny_group_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures.process import BrokenProcessPool

    from dsa110_contimg.data_ingestion import _uvh5_reader
    from dsa110_contimg.exceptions import ResourceError
    from dsa110_contimg.state.jobs import is_retryable

    class DeadPool:
        def submit(self, *args, **kwargs):
            msg = "a worker was killed"
            raise BrokenProcessPool(msg)

    monkeypatch.setattr(_uvh5_subband, "subband_pool", lambda n: DeadPool())
    group = _group(tiny_group_dir)
    with pytest.raises(ResourceError, match="read_workers") as excinfo:
        _uvh5_reader.read_group(group, workers=2)
    assert group.group_id in str(excinfo.value)
    assert is_retryable(excinfo.value)


_FRESH_PROCESS = """
import sys, warnings
from pathlib import Path
from dsa110_contimg.data_ingestion import _uvh5_subband
from dsa110_contimg.data_ingestion import grouping
from dsa110_contimg.data_ingestion.ms_creation import convert_group

if __name__ == "__main__":
    files = grouping.discover_subband_files(Path(sys.argv[1]))
    (group,) = grouping.group_subband_files(files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        convert_group(group, Path(sys.argv[2]), chan_average=2, read_workers=2)
    (pool,) = _uvh5_subband._POOLS.values()
    print(pool._mp_context.get_start_method())
"""


def test_fresh_process_forks_its_readers_and_writes_the_same_ms(
    tiny_group_dir: Path, tmp_path: Path
) -> None:
    """What the batch CLI and the benchmark run: a new single-threaded process
    forks its readers (numba not started yet) and writes the serial MS."""
    import os
    import subprocess
    import sys

    script = tmp_path / "convert.py"
    script.write_text(_FRESH_PROCESS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(script), str(tiny_group_dir), str(tmp_path / "forked")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "fork"
    group = _group(tiny_group_dir)
    serial = _convert(group, tmp_path / "serial", 2, read_workers=1)
    (forked,) = (tmp_path / "forked").glob("*.ms")
    _assert_ms_equal(forked, serial)


_NESTED = """
import sys, warnings
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
from pathlib import Path


def job(raw, out):
    from dsa110_contimg.data_ingestion import grouping
    from dsa110_contimg.data_ingestion.ms_creation import convert_group

    (group,) = grouping.group_subband_files(grouping.discover_subband_files(Path(raw)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        convert_group(group, Path(out), read_workers=2)
    return "converted"


if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    print(pool.submit(job, sys.argv[1], sys.argv[2]).result())
    pool.shutdown(wait=True)
    print("shut down")
"""


def test_stage_pool_worker_with_readers_exits(tiny_group_dir: Path, tmp_path: Path):
    """The services convert in a process-pool worker; when that pool shuts
    down, the worker's reader processes must stop with it (a worker leaves
    through multiprocessing's exit, which joins its children)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "nested.py"
    script.write_text(_NESTED)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(script), str(tiny_group_dir), str(tmp_path / "ms")],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["converted", "shut", "down"]
