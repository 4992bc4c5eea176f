"""Conversion under damaged input and machine faults (issue 15, items 7, 9, 11, 15).

- bit rot in ``visdata`` is flagged and counted at conversion, never imaged;
- a read failure of the machine (I/O, memory, permissions) is a retryable
  `ResourceError`, a bad file an `InputDataError`;
- replacing an MS is atomic: a crash at the swap leaves the old MS usable;
- a disk too full for the MS is a `ResourceError` before casacore starts
  (casacore aborts the process when a write fails inside a destructor), and
  every library's disk-full error is translated.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from dsa110_contimg.data_ingestion import _uvh5_reader, ms_creation
from dsa110_contimg.data_ingestion.grouping import (
    SubbandGroup,
    discover_subband_files,
    group_subband_files,
)
from dsa110_contimg.data_ingestion.ms_creation import convert_group, is_valid_ms
from dsa110_contimg.exceptions import (
    DataQualityWarning,
    InputDataError,
    ResourceError,
)
from dsa110_contimg.state.jobs import is_retryable
from dsa110_contimg.utils import storage

tables = pytest.importorskip("casacore.tables")


def _only_group(directory: Path) -> SubbandGroup:
    groups = group_subband_files(discover_subband_files(directory))
    assert len(groups) == 1
    return groups[0]


def _file_of(directory: Path, subband: int) -> Path:
    (path,) = directory.glob(f"*_sb{subband:02d}.hdf5")
    return path


def _rot_visdata(path: Path, n_bytes: int = 4096, seed: int = 3) -> None:
    """Overwrite ``n_bytes`` of the visibility dataset with random bytes."""
    with h5py.File(path, "r+") as h5:
        dset = h5["Data"]["visdata"]
        offset = dset.id.get_offset()
        assert offset is not None, "contiguous visdata expected from the simulator"
        size = dset.id.get_storage_size()
    rng = np.random.default_rng(seed)
    start = offset + size // 3
    with open(path, "r+b") as fh:
        fh.seek(start)
        fh.write(rng.integers(0, 256, n_bytes, dtype=np.uint8).tobytes())


# --- item 7: bit rot ---


def test_bit_rot_is_flagged_and_counted(tiny_group_dir: Path, tmp_path: Path) -> None:
    _rot_visdata(_file_of(tiny_group_dir, 3))
    group = _only_group(tiny_group_dir)
    with pytest.warns(DataQualityWarning, match="non-finite or absurd"):
        product = convert_group(group, tmp_path / "ms")
    assert product.n_corrupt_flagged > 0
    with tables.table(str(product.path), ack=False) as ms:
        assert ms.getkeyword("DSA110_N_CORRUPT_VIS") == product.n_corrupt_flagged
        data = ms.getcol("DATA")
        flags = ms.getcol("FLAG")
    usable = data[~flags]
    assert np.all(np.isfinite(usable))
    # what is left unflagged is sky-like: no value beyond 1e4 x the typical one
    amp = np.abs(usable)
    assert amp.max() < 1e4 * max(np.median(amp[amp > 0]), 1e-12) * 10


def test_clean_data_loses_nothing_to_the_corruption_check(
    tiny_group_dir: Path, tmp_path: Path
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)
        product = convert_group(_only_group(tiny_group_dir), tmp_path / "ms")
    assert product.n_corrupt_flagged == 0


def test_flag_corrupt_visibilities_catches_nan_inf_and_huge() -> None:
    class Fake:
        pass

    rng = np.random.default_rng(1)
    uv = Fake()
    n_blt = 40
    uv.ant_1_array = np.repeat(np.arange(4), 10)
    uv.ant_2_array = np.tile(np.arange(10) % 4, 4)
    uv.data_array = (
        rng.normal(size=(n_blt, 8, 2)) + 1j * rng.normal(size=(n_blt, 8, 2))
    ).astype(np.complex64)
    uv.flag_array = np.zeros(uv.data_array.shape, dtype=bool)
    uv.nsample_array = np.ones(uv.data_array.shape, dtype=np.float32)
    uv.data_array[1, 2, 0] = np.nan
    uv.data_array[5, 3, 1] = np.inf
    uv.data_array[7, 0, 0] = 3e38
    uv.data_array[9, 1, 1] = 50.0  # a 35-sigma outlier: the flagger's job, not ours
    n = _uvh5_reader.flag_corrupt_visibilities(uv)
    assert n == 3
    assert uv.flag_array[1, 2, 0] and uv.flag_array[5, 3, 1] and uv.flag_array[7, 0, 0]
    assert not uv.flag_array[9, 1, 1]
    assert np.all(np.isfinite(uv.data_array))
    assert uv.nsample_array[7, 0, 0] == 0


def _seed_flag_corrupt(data, flags, ant1, ant2):
    """The seed's absurd-value mask (astropy mad_std of every visibility)."""
    from astropy.stats import mad_std

    bad = ~np.isfinite(data)
    auto = (ant1 == ant2)[:, None, None]
    with np.errstate(invalid="ignore", over="ignore"):
        amp = np.abs(data)
    good = ~bad & ~flags & (amp > 0)
    for sel in (np.broadcast_to(auto, data.shape), np.broadcast_to(~auto, data.shape)):
        vals = amp[good & sel]
        if vals.size == 0:
            continue
        med = float(np.median(vals))
        scale = max(float(mad_std(vals)), med, 1e-30)
        with np.errstate(invalid="ignore"):
            bad |= sel & (amp > med + 1.0e4 * scale)
    return bad


@pytest.mark.parametrize("case", ["clean", "huge", "heavy_tail", "flagged_huge"])
def test_flag_corrupt_visibilities_equals_the_mad_std_version(case) -> None:
    """The shortcut (no MAD when nothing can be absurd) flags what the seed's
    mad_std version flagged: clean data, a 3e38 value, a heavy tail whose MAD
    exceeds the median (the MAD path), and a huge value in an already flagged
    visibility (zeroed all the same)."""

    class Fake:
        pass

    rng = np.random.default_rng(5)
    uv = Fake()
    n_blt = 60
    uv.ant_1_array = np.repeat(np.arange(6), 10)
    uv.ant_2_array = np.tile(np.arange(10) % 6, 6)
    uv.data_array = (
        rng.normal(size=(n_blt, 16, 2)) + 1j * rng.normal(size=(n_blt, 16, 2))
    ).astype(np.complex64)
    uv.flag_array = np.zeros(uv.data_array.shape, dtype=bool)
    uv.flag_array[3] = True
    uv.nsample_array = np.ones(uv.data_array.shape, dtype=np.float32)
    cross = np.flatnonzero(uv.ant_1_array != uv.ant_2_array)
    if case == "huge":
        uv.data_array[cross[4], 2, 0] = 3e38
    elif case == "heavy_tail":
        uv.data_array[cross[::2]] *= 1e3  # MAD >> median of the crosses
        uv.data_array[cross[1], 0, 0] = 2e5  # > 1e4 medians, < 1e4 MADs
        uv.data_array[cross[5], 0, 1] = 1e12
    elif case == "flagged_huge":
        uv.data_array[3, 1, 1] = 1e30
    expected = _seed_flag_corrupt(
        uv.data_array, uv.flag_array, uv.ant_1_array, uv.ant_2_array
    )
    before = uv.flag_array.copy()
    n = _uvh5_reader.flag_corrupt_visibilities(uv)
    assert n == int(np.count_nonzero(expected & ~before))
    np.testing.assert_array_equal(uv.flag_array, before | expected)
    assert (n == 0) == (case in ("clean", "flagged_huge"))
    assert expected.any() == (case != "clean")


# --- item 15: read errors classified ---


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OSError(errno.EIO, "Input/output error"), ResourceError),
        (OSError(errno.ESTALE, "Stale file handle"), ResourceError),
        (PermissionError(errno.EACCES, "Permission denied"), ResourceError),
        (MemoryError("Unable to allocate 4 GiB"), ResourceError),
        (OSError("Unable to open file (truncated file: eof = 10)"), InputDataError),
        (KeyError("visdata"), InputDataError),
    ],
)
def test_read_errors_are_routed_by_cause(
    tiny_group_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    expected: type,
) -> None:
    group = _only_group(tiny_group_dir)
    target = group.files[min(group.files)]

    def failing_read(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(_uvh5_reader.UVData, "read", failing_read)
    with pytest.raises(expected) as excinfo:
        _uvh5_reader.read_group(group)
    assert str(target) in str(excinfo.value)
    assert is_retryable(excinfo.value) is (expected is ResourceError)

    class FailingFile(h5py.File):  # a class: FastUVH5Meta isinstance-checks it
        def __init__(self, *args, **kwargs):
            raise error

    monkeypatch.setattr(h5py, "File", FailingFile)  # as FastUVH5Meta opens it
    with pytest.raises(expected):
        _uvh5_reader.read_group_header(group)


def test_group_header_read_with_fastuvh5meta_matches_the_simulation(
    tiny_observation,
) -> None:
    """The header facts of the real DSA-110 layout (HADEC phasing, station names)."""
    header = _uvh5_reader.read_group_header(_only_group(tiny_observation.output_dir))
    spec = json.loads(tiny_observation.truth_path.read_text())["spec"]
    n_ant, n_times = spec["n_antennas"], spec["n_times"]
    assert header.times_jd.shape == (n_times,)
    assert header.n_blts == n_ant * (n_ant + 1) // 2 * n_times
    assert header.n_freq_per_subband == spec["n_chan_per_subband"]
    assert header.pointing_dec_rad == pytest.approx(np.deg2rad(spec["declination_deg"]))
    with h5py.File(tiny_observation.groups[0].files[0], "r") as h5:
        np.testing.assert_array_equal(
            header.times_jd, np.unique(h5["Header"]["time_array"][()])
        )


def test_truncated_file_is_still_input_data(tiny_group_dir: Path) -> None:
    path = _file_of(tiny_group_dir, 5)
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    with pytest.raises(InputDataError, match=path.name):
        _uvh5_reader.read_group_header(_only_group(tiny_group_dir))


# --- item 9: replacing an MS is atomic ---


def test_crash_during_swap_keeps_the_old_ms(
    tiny_group_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = _only_group(tiny_group_dir)
    first = convert_group(group, tmp_path / "ms")
    real_replace = os.replace
    calls = []

    def crash_on_second(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # old moved aside; the new one would move in now
            msg = "power loss"
            raise KeyboardInterrupt(msg)
        real_replace(src, dst)

    monkeypatch.setattr(ms_creation.os, "replace", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        convert_group(group, tmp_path / "ms", overwrite=True)
    monkeypatch.setattr(ms_creation.os, "replace", real_replace)
    assert calls[0][1].startswith(f".{first.path.name}.replaced-")
    assert is_valid_ms(first.path)
    assert [p.name for p in (tmp_path / "ms").iterdir()] == [first.path.name]


def test_killed_swap_is_recovered_on_the_next_run(
    tiny_group_dir: Path, tmp_path: Path
) -> None:
    group = _only_group(tiny_group_dir)
    first = convert_group(group, tmp_path / "ms")
    # what kill -9 between the two renames leaves: the MS aside, tagged with a
    # pid that no longer runs, and nothing under the final name
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(child.stdout)
    aside = first.path.with_name(f".{first.path.name}.replaced-{dead_pid}")
    os.replace(first.path, aside)
    again = convert_group(group, tmp_path / "ms")
    assert again.skipped, "the restored MS is valid and is reused"
    assert is_valid_ms(first.path) and not aside.exists()


# --- item 11: disk full ---


def test_disk_too_full_for_the_ms_is_a_resource_error(
    tiny_group_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.disk_usage

    def nearly_full(path):
        usage = real(path)
        return usage._replace(free=1024)

    monkeypatch.setattr(storage.shutil, "disk_usage", nearly_full)
    group = _only_group(tiny_group_dir)
    out = tmp_path / "ms"
    with pytest.raises(ResourceError, match="MB are free") as excinfo:
        convert_group(group, out)
    assert is_retryable(excinfo.value)
    assert group.group_id in str(excinfo.value)
    assert not any(out.iterdir()) if out.exists() else True


def test_casacore_disk_full_becomes_resource_error(
    tiny_group_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self, *args, **kwargs):
        msg = "AipsError: Write failed: No space left on device"
        raise RuntimeError(msg)

    monkeypatch.setattr(ms_creation.UVData, "write_ms", full)
    group = _only_group(tiny_group_dir)
    with pytest.raises(ResourceError, match="No space left") as excinfo:
        convert_group(group, tmp_path / "ms")
    assert "free space" in str(excinfo.value)
    assert not [p for p in (tmp_path / "ms").iterdir()]


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A real 512 KiB filesystem (tmpfs), so writes fail with a real ENOSPC."""
    mnt = tmp_path / "tiny_disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_real_disk_full_from_every_library_is_translated(tiny_disk: Path) -> None:
    from astropy.io import fits

    big = np.zeros((512, 512), np.float32)  # 1 MiB: more than the disk holds
    with (
        pytest.raises(ResourceError, match="FITS image") as excinfo,
        storage.write_errors_as_resource(tiny_disk / "a.fits", "FITS image"),
    ):
        fits.PrimaryHDU(big).writeto(tiny_disk / "a.fits")
    assert "space" in str(excinfo.value)
    (tiny_disk / "a.fits").unlink(missing_ok=True)
    with (
        pytest.raises(ResourceError, match="database"),
        storage.write_errors_as_resource(tiny_disk / "s.db", "database"),
    ):
        con = sqlite3.connect(tiny_disk / "s.db")
        con.execute("CREATE TABLE t (x BLOB)")
        for _ in range(64):
            con.execute("INSERT INTO t VALUES (?)", (os.urandom(16384),))
        con.commit()
    con.close()
    (tiny_disk / "s.db").unlink(missing_ok=True)
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    with (
        pytest.raises(ResourceError, match="Parquet"),
        storage.write_errors_as_resource(tiny_disk / "t.parquet", "Parquet"),
    ):
        pq.write_table(
            pa.table({"x": rng.normal(size=200_000)}),
            tiny_disk / "t.parquet",
            compression="none",
        )
    with (
        pytest.raises(ValueError, match="not a disk"),  # unrelated errors pass
        storage.write_errors_as_resource(tiny_disk / "x", "thing"),
    ):
        msg = "not a disk problem"
        raise ValueError(msg)


def test_ms_on_a_full_disk_fails_cleanly_in_process(
    tiny_group_dir: Path, tiny_disk: Path
) -> None:
    # a real casacore write would abort the process; the free-space check
    # before it turns the full disk into a retryable error with nothing left
    group = _only_group(tiny_group_dir)
    with pytest.raises(ResourceError, match="free") as excinfo:
        convert_group(group, tiny_disk / "ms")
    assert is_retryable(excinfo.value)
    assert not any((tiny_disk / "ms").rglob("*"))


def test_decorated_writer_names_its_path(tiny_disk: Path) -> None:
    @storage.writes_product("preview", path_arg="out")
    def write(data: bytes, out: Path) -> None:
        out.write_bytes(data)

    with pytest.raises(ResourceError, match="preview .*big.bin"):
        write(b"x" * (1 << 20), tiny_disk / "big.bin")
    (tiny_disk / "big.bin").unlink()
    write(b"ok", tiny_disk / "small.bin")
    assert (tiny_disk / "small.bin").read_bytes() == b"ok"


def test_state_database_full_is_a_resource_error(tiny_disk: Path) -> None:
    """A job transition on a full database filesystem: retryable, rolled back."""
    from datetime import UTC, datetime

    from dsa110_contimg.state import open_db
    from dsa110_contimg.state.jobs import PROCESS_BLOCK, JobSpec, enqueue_job

    conn = open_db(tiny_disk / "state.sqlite3")
    now = datetime.now(UTC)
    filler = tiny_disk / "filler"
    free = shutil.disk_usage(tiny_disk).free
    filler.write_bytes(b"\0" * max(free - 4096, 0))
    with pytest.raises(ResourceError, match="state database") as excinfo:
        for k in range(2000):
            spec = JobSpec(PROCESS_BLOCK, f"b{k}", now.isoformat(), {"x": "y" * 4000})
            enqueue_job(conn, spec, now=now)
    assert is_retryable(excinfo.value)
    filler.unlink()
    conn.close()
