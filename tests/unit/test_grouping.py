"""Tests of raw-file discovery and time clustering into subband groups."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from dsa110_contimg.data_ingestion.grouping import (
    SubbandGroup,
    discover_subband_files,
    group_subband_files,
)
from dsa110_contimg.telescope import dsa110

T0 = datetime(2023, 6, 1, 0, 0, 0, tzinfo=UTC)


def _touch_group(
    directory: Path,
    start: datetime,
    *,
    subbands: range | list[int] = range(16),
    jitter_s: list[int] | None = None,
) -> list[Path]:
    """Create empty files named like one group; only the names matter."""
    paths = []
    for k, sb in enumerate(subbands):
        offset = 0 if jitter_s is None else jitter_s[k]
        stamp = start + timedelta(seconds=offset)
        path = directory / dsa110.subband_filename(stamp, sb)
        path.touch()
        paths.append(path)
    return paths


def test_jittered_timestamps_form_one_group(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    jitter = [int(j) for j in rng.integers(0, 6, 16)]
    jitter[0], jitter[-1] = 0, 5  # cover the full 0-5 s spread
    _touch_group(tmp_path, T0, jitter_s=jitter)
    files = discover_subband_files(tmp_path)
    assert len(files) == 16
    groups = group_subband_files(files)
    assert len(groups) == 1
    group = groups[0]
    assert sorted(group.files) == list(range(16))
    assert group.is_complete
    assert group.missing_subbands == ()
    assert group.duplicates == ()
    assert group.start_time == T0
    assert group.group_id == "2023-06-01T00:00:00"


def test_group_start_is_earliest_file_even_if_not_sb00(tmp_path: Path) -> None:
    jitter = [3] * 16
    jitter[9] = 1
    _touch_group(tmp_path, T0, jitter_s=jitter)
    (group,) = group_subband_files(discover_subband_files(tmp_path))
    assert group.start_time == T0 + timedelta(seconds=1)


def test_two_groups_309_s_apart_separate(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    t1 = T0 + timedelta(seconds=309)
    _touch_group(tmp_path, T0, jitter_s=[int(j) for j in rng.integers(0, 6, 16)])
    _touch_group(tmp_path, t1, jitter_s=[int(j) for j in rng.integers(0, 6, 16)])
    groups = group_subband_files(discover_subband_files(tmp_path))
    assert len(groups) == 2
    assert all(g.is_complete for g in groups)
    assert groups[0].start_time < groups[1].start_time
    assert (groups[1].start_time - groups[0].start_time).total_seconds() >= 300
    # Every file of the second group is in the second group.
    assert all(
        p.name >= t1.strftime("%Y-%m-%dT%H:%M:%S") for p in groups[1].files.values()
    )


def test_grouping_does_not_depend_on_input_order(tmp_path: Path) -> None:
    _touch_group(tmp_path, T0)
    _touch_group(tmp_path, T0 + timedelta(seconds=309))
    files = discover_subband_files(tmp_path)
    shuffled = list(files)
    np.random.default_rng(5).shuffle(shuffled)
    a = group_subband_files(files)
    b = group_subband_files(shuffled)
    assert [(g.start_time, g.files) for g in a] == [(g.start_time, g.files) for g in b]


def test_missing_subband_reported(tmp_path: Path) -> None:
    _touch_group(tmp_path, T0, subbands=[sb for sb in range(16) if sb != 5])
    (group,) = group_subband_files(discover_subband_files(tmp_path))
    assert group.missing_subbands == (5,)
    assert not group.is_complete
    assert len(group.files) == 15


def test_n_expected_controls_completeness() -> None:
    group = SubbandGroup(T0, {0: Path("a"), 1: Path("b")}, n_expected=2)
    assert group.is_complete
    group = SubbandGroup(T0, {0: Path("a")}, n_expected=2)
    assert group.missing_subbands == (1,)


def test_duplicate_subband_recorded_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _touch_group(tmp_path, T0)
    dup = tmp_path / dsa110.subband_filename(T0 + timedelta(seconds=4), 3)
    dup.touch()
    with caplog.at_level(logging.WARNING, logger="dsa110_contimg"):
        (group,) = group_subband_files(discover_subband_files(tmp_path))
    assert group.duplicates == (dup,)
    # The earlier file is kept; the group is still complete.
    assert group.files[3] == tmp_path / dsa110.subband_filename(T0, 3)
    assert group.is_complete
    records = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(records) == 1
    assert "duplicate" in records[0].getMessage()
    assert records[0].path == str(dup)


def test_discover_ignores_non_matching_names(tmp_path: Path) -> None:
    good = _touch_group(tmp_path, T0, subbands=[0, 1])
    for name in (
        "2023-06-01T00:00:00_sb02.hdf5.tmp",
        ".2023-06-01T00:00:00_sb03.hdf5.tmp",
        "2023-06-01T00:00:00_sb4.hdf5",
        "2023-06-01_sb05.hdf5",
        "junk_sb06.hdf5",
        "2023-06-01T00:00:00_sb07.h5",
        "README.txt",
    ):
        (tmp_path / name).touch()
    sub = tmp_path / "nested"
    sub.mkdir()
    (sub / dsa110.subband_filename(T0, 8)).touch()  # not recursive
    files = discover_subband_files(tmp_path)
    assert [f.path for f in files] == good
    assert [f.subband for f in files] == [0, 1]


def test_discover_sorts_by_time_then_subband(tmp_path: Path) -> None:
    _touch_group(tmp_path, T0, subbands=[2, 0, 1], jitter_s=[0, 1, 0])
    files = discover_subband_files(tmp_path)
    assert [(f.timestamp - T0).total_seconds() for f in files] == [0, 0, 1]
    assert [f.subband for f in files] == [1, 2, 0]


def test_empty_directory(tmp_path: Path) -> None:
    assert discover_subband_files(tmp_path) == []
    assert group_subband_files([]) == []
