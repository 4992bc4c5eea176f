"""One identity per product: names, their parsing, one block grid (batch = stream)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dsa110_contimg.pipeline.orchestrator import PipelineOrchestrator
from dsa110_contimg.products import (
    IMAGE_FILES,
    BlockGrid,
    BlockWindow,
    ImageNames,
    block_id,
    block_paths,
    block_windows,
    epoch_id,
    image_id,
    mosaic_paths,
    ms_name,
    parse_block_id,
    parse_ms_time,
)
from dsa110_contimg.services._runner import JobRunner
from dsa110_contimg.services.ms_processor import MsProcessor
from dsa110_contimg.state import open_db
from dsa110_contimg.state.db import to_iso_utc
from dsa110_contimg.state.jobs import CONVERT_GROUP
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.utils.config_loader import load_pipeline_config

ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
HOUR = timedelta(minutes=60)
STEP = timedelta(minutes=50)
T0 = datetime(2023, 6, 1, 2, 0, tzinfo=UTC)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_the_grid_starts_on_the_anchor_plus_whole_steps() -> None:
    # known truth: T0 - ANCHOR is a whole number of 50-minute steps
    assert not (T0 - ANCHOR) % STEP


def test_block_windows_of_known_times() -> None:
    times = [
        _utc("2023-06-01T01:30:00"),  # middle of [01:10, 02:10) only
        _utc("2023-06-01T02:00:00"),  # on a window start: also [01:10, 02:10)
        _utc("2023-06-01T02:09:59"),  # last second of the overlap
        _utc("2023-06-01T02:10:00"),  # the end is exclusive: [02:00, 03:00) only
        _utc("2023-06-01T02:55:00"),  # overlap of [02:00, 03:00) and [02:50, 03:50)
    ]
    windows = block_windows(times, anchor=ANCHOR, duration=HOUR, step=STEP)
    expected = {
        BlockWindow(_utc("2023-06-01T01:10:00"), _utc("2023-06-01T02:10:00")): times[
            :3
        ],
        BlockWindow(_utc("2023-06-01T02:00:00"), _utc("2023-06-01T03:00:00")): times[
            1:
        ],
        BlockWindow(_utc("2023-06-01T02:50:00"), _utc("2023-06-01T03:50:00")): times[
            4:
        ],
    }
    assert windows == expected
    assert list(windows) == sorted(expected)  # in time order
    assert [w.block_id for w in windows] == [
        "block_20230601T021000",
        "block_20230601T030000",
        "block_20230601T035000",
    ]


def test_block_windows_do_not_depend_on_the_first_time_or_the_split() -> None:
    night = [T0 + timedelta(seconds=309 * i) for i in range(40)]
    whole = block_windows(night, anchor=ANCHOR, duration=HOUR, step=STEP)
    # a night split across two runs at an arbitrary group, and starting late
    merged: dict[BlockWindow, set[datetime]] = {}
    for part in (night[:17], night[17:]):
        for window, ts in block_windows(
            part, anchor=ANCHOR, duration=HOUR, step=STEP
        ).items():
            merged.setdefault(window, set()).update(ts)
    assert {w: sorted(ts) for w, ts in merged.items()} == whole
    late = block_windows(night[5:], anchor=ANCHOR, duration=HOUR, step=STEP)
    assert set(late) <= set(whole)


def test_block_windows_reject_a_non_positive_step() -> None:
    with pytest.raises(ValueError, match="positive"):
        block_windows([T0], anchor=ANCHOR, duration=HOUR, step=timedelta(0))


def test_grid_from_config_uses_the_anchor_and_the_overlap() -> None:
    config = load_pipeline_config(
        environment="testing",
        overrides={
            "services.mosaic_duration_min": 30,
            "services.mosaic_overlap_min": 10,
            "queue.block_anchor_time": "2023-06-01T00:05:00",
        },
        env={},
    )
    grid = BlockGrid.from_config(config)
    assert grid == BlockGrid(
        _utc("2023-06-01T00:05:00"), timedelta(minutes=30), timedelta(minutes=20)
    )
    assert list(grid.windows([_utc("2023-06-01T00:30:00")])) == [
        BlockWindow(_utc("2023-06-01T00:05:00"), _utc("2023-06-01T00:35:00")),
        BlockWindow(_utc("2023-06-01T00:25:00"), _utc("2023-06-01T00:55:00")),
    ]


def test_names_round_trip() -> None:
    t = _utc("2023-06-01T00:05:09")
    assert ms_name(t) == "drift_20230601T000509_00.ms" == dsa110.ms_filename(t)
    assert parse_ms_time(Path("/ms") / ms_name(t)) == t
    assert parse_ms_time("drift_2023-06-01.ms") is None
    assert parse_ms_time("other_20230601T000509_00.ms") is None
    names = ImageNames.for_ms(Path("/ms") / ms_name(t), "/images")
    assert names.prefix == Path("/images/drift_20230601T000509_00")
    assert names.group_time == t
    for kind, suffix in IMAGE_FILES.items():
        path = names.path(kind)
        assert path == Path(f"/images/drift_20230601T000509_00{suffix}")
        assert ImageNames.of(path, kind) == names
    assert names.log("wsclean") == Path("/images/drift_20230601T000509_00-wsclean.log")
    with pytest.raises(ValueError, match="-image.fits"):
        ImageNames.of("/mosaics/block_20230601T010000-mosaic.fits")
    with pytest.raises(ValueError, match="unknown image product kind"):
        names.path("beam")
    assert block_id(t) == "block_20230601T000509"
    assert parse_block_id(block_id(t)) == t and parse_block_id("drift_x") is None
    paths = mosaic_paths(block_id(t), "/m")
    assert paths["mosaic"] == Path("/m/block_20230601T000509-mosaic.fits")
    assert paths["members"] == Path("/m/block_20230601T000509-members.json")
    assert block_paths(block_id(t), "/p") == {
        "photometry": Path("/p/photometry_block_20230601T000509.csv"),
        "summary": Path("/p/summary_block_20230601T000509.html"),
    }
    assert image_id(names.image) == "drift_20230601T000509_00"
    assert image_id(paths["mosaic"]) == "block_20230601T000509"
    assert epoch_id("block_20230601T000509", 16.3) == "block_20230601T000509_dec+16.30"
    assert epoch_id("x", float("nan")) == "x"


def _config(base: Path, **overrides: object):
    return load_pipeline_config(
        environment="testing",
        overrides={
            "paths.ms_stage1_dir": str(base / "ms"),
            "paths.state_db": str(base / "state.db"),
            "services.mosaic_duration_min": 30,
            "services.mosaic_overlap_min": 10,
            **overrides,
        },
        env={},
    )


def _stream_blocks(config, times: list[datetime], ms_dir: Path) -> dict[str, list]:
    """The blocks the stream's planner enqueues for converted groups at ``times``."""
    conn = open_db(Path(config.paths.state_db))
    rows = []
    for t in times:
        stamp = to_iso_utc(t + timedelta(minutes=6))
        payload = {"start_time_iso": to_iso_utc(t), "files": {}}
        result = {"ms_path": str(ms_dir / ms_name(t))}
        rows.append(
            (CONVERT_GROUP, t.strftime("%Y-%m-%dT%H:%M:%S"), "done", to_iso_utc(t))
            + (json.dumps(payload), json.dumps(result), stamp, stamp, stamp, stamp)
        )
    conn.executemany(
        "INSERT INTO jobs (kind, key, state, data_time_iso, payload_json, "
        "result_json, max_attempts, not_before_at, created_at, updated_at, "
        "finished_at) VALUES (?, ?, ?, ?, ?, ?, 5, ?, ?, ?, ?)",
        rows,
    )
    conn.commit()
    now = times[-1] + timedelta(days=1)
    runner = JobRunner(conn, config.queue, clock=lambda: now)
    planner = MsProcessor(config, runner, executors=None)  # type: ignore[arg-type]
    jobs = planner.plan_blocks(now, full=True)
    conn.close()
    return {j.key: sorted(j.payload["ms_files"]) for j in jobs}


@pytest.mark.parametrize("first_offset_min", [0, 3, 12])
def test_batch_and_stream_cut_the_same_blocks(tmp_path, first_offset_min) -> None:
    """Both ways give the same block ids and members, whatever the first time."""
    config = _config(tmp_path)
    start = _utc("2023-06-01T00:00:00") + timedelta(minutes=first_offset_min)
    times = [start + timedelta(seconds=309 * i) for i in range(14)]
    ms_dir = Path(config.paths.ms_stage1_dir)
    for t in times:
        (ms_dir / ms_name(t)).mkdir(parents=True)
    stream = _stream_blocks(config, times, ms_dir)
    orchestrator = PipelineOrchestrator(config)
    batch_dict = orchestrator.find_ms_blocks_for_batch(
        to_iso_utc(times[0]), to_iso_utc(times[-1] + timedelta(seconds=309))
    )
    batch = {
        orchestrator.create_processing_block(end, files).block_id: sorted(files)
        for end, files in batch_dict.items()
    }
    held = {
        b.block_id: sorted(map(str, b.ms_files))
        for b in orchestrator.blocks_holding(sorted(ms_dir.iterdir()))
    }
    assert batch == stream == held
    assert len(batch) >= 4
    # the grid is the anchored one: every block starts on anchor + k * 20 min
    anchor = _utc(config.queue.block_anchor_time)
    for bid in batch:
        start = parse_block_id(bid) - timedelta(minutes=30)
        assert not (start - anchor) % timedelta(minutes=20)


def test_a_night_split_across_batch_runs_gives_the_stream_blocks(tmp_path) -> None:
    config = _config(tmp_path)
    times = [
        _utc("2023-06-01T00:00:00") + timedelta(seconds=309 * i) for i in range(14)
    ]
    ms_dir = Path(config.paths.ms_stage1_dir)
    orchestrator = PipelineOrchestrator(config)
    blocks: dict[str, list[str]] = {}
    for part in (times[:6], times[6:]):  # run 2 finds run 1's MSs beside its own
        for t in part:
            (ms_dir / ms_name(t)).mkdir(parents=True)
        for b in orchestrator.blocks_holding([ms_dir / ms_name(t) for t in part]):
            blocks[b.block_id] = sorted(map(str, b.ms_files))  # later run redoes it
    assert blocks == _stream_blocks(config, times, ms_dir)


def test_existing_lists_only_this_images_files(tmp_path) -> None:
    names = ImageNames.for_ms(tmp_path / "drift_20230601T000000_00.ms", tmp_path)
    mine = [names.image, names.path("pb"), names.log("wsclean")]
    other = ImageNames.for_ms(tmp_path / "drift_20230601T000509_00.ms", tmp_path)
    for path in [*mine, other.image, tmp_path / "drift_20230601T000000_00.ms"]:
        path.write_text("x")
    assert names.existing() == sorted(mine)
