"""Streaming components on real files, driven by a fake clock (no stream process).

The watcher's scan step over simulated subband files, the block windows and
readiness rule, the disk guard, the variability call site, and an injected
ENOSPC during conversion ending in retry-then-success.
"""

from __future__ import annotations

import asyncio
import errno
import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.pipeline.orchestrator import PipelineOrchestrator
from dsa110_contimg.services import run_stream_async
from dsa110_contimg.services._intake import IntakeGate, check_free_disk
from dsa110_contimg.services._status import queue_status
from dsa110_contimg.services.hdf5_watcher import SubbandWatcher, conversion_spec
from dsa110_contimg.services.ms_processor import (
    BlockWindow,
    GroupStatus,
    block_windows_containing,
    decide_block,
)
from dsa110_contimg.services.variability_analyzer import (
    VariabilityBackend,
    load_backend,
    update_variability,
)
from dsa110_contimg.state import open_db
from dsa110_contimg.state.jobs import (
    CONVERT_GROUP,
    PRIORITY_BACKFILL,
    PRIORITY_LIVE,
    list_job_events,
    list_jobs,
)
from dsa110_contimg.utils.config_loader import WatcherConfig, load_pipeline_config

pytestmark = pytest.mark.integration

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
CFG = WatcherConfig(settle_s=1.0, group_timeout_s=60.0, min_free_disk_gb=0.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def watcher(incoming: Path, cfg: WatcherConfig = CFG) -> SubbandWatcher:
    return SubbandWatcher(incoming, cfg, tolerance_s=20.0, n_expected=16)


@pytest.fixture
def raw_files(tiny_observation) -> list[Path]:
    (group,) = tiny_observation.groups
    return sorted(group.files)


def copy(files: list[Path], dest: Path) -> None:
    for path in files:
        shutil.copy2(path, dest / path.name)


# --------------------------------------------------------------------- watcher


def test_complete_group_decided_once_after_settling(raw_files, tmp_path) -> None:
    scanner = watcher(tmp_path)
    copy(raw_files, tmp_path)
    assert scanner.scan(at(0)) == []  # first sighting: sizes not yet stable
    assert scanner.scan(at(0.5)) == []  # unchanged, but not for settle_s yet
    (decision,) = scanner.scan(at(1.5))
    assert decision.action == "convert" and decision.is_complete
    assert decision.reason == "complete"
    assert len(decision.group.files) == 16
    assert decision.first_seen_at == at(0)
    assert scanner.scan(at(5)) == []  # exactly once
    assert scanner.scan(at(500)) == []  # even past the timeout


def test_file_still_being_written_waits(raw_files, tmp_path) -> None:
    scanner = watcher(tmp_path)
    copy(raw_files[1:], tmp_path)
    partial = tmp_path / raw_files[0].name
    data = raw_files[0].read_bytes()
    partial.write_bytes(data[: len(data) // 2])
    for t in (0, 2, 4):  # stable size, but truncated: headers do not read
        assert scanner.scan(at(t)) == []
    with open(partial, "ab") as fh:
        fh.write(data[len(data) // 2 :])
    assert scanner.scan(at(5)) == []  # it changed: must settle again
    (decision,) = scanner.scan(at(7))
    assert decision.is_complete


def test_truncated_file_passed_on_at_timeout(raw_files, tmp_path) -> None:
    scanner = watcher(tmp_path)
    copy(raw_files[1:], tmp_path)
    bad = tmp_path / raw_files[0].name
    bad.write_bytes(raw_files[0].read_bytes()[:5000])
    assert scanner.scan(at(0)) == [] and scanner.scan(at(30)) == []
    (decision,) = scanner.scan(at(61))
    assert decision.action == "convert" and not decision.is_complete
    assert "unreadable" in decision.reason and bad.name in decision.reason
    spec = conversion_spec(decision, now=at(61), live_window_s=3600)
    assert spec.payload["flag_missing"] is False  # conversion will quarantine it


@pytest.mark.parametrize("policy", ["flag", "quarantine"])
def test_missing_subband_after_timeout(raw_files, tmp_path, policy) -> None:
    scanner = watcher(tmp_path, CFG.model_copy(update={"timeout_policy": policy}))
    copy([f for f in raw_files if "_sb05" not in f.name], tmp_path)
    assert scanner.scan(at(0)) == [] and scanner.scan(at(59)) == []
    (decision,) = scanner.scan(at(60))
    assert decision.group.missing_subbands == (5,)
    assert "missing sb05" in decision.reason
    if policy == "flag":
        assert decision.action == "convert"
        spec = conversion_spec(decision, now=at(60), live_window_s=3600)
        assert spec.payload["flag_missing"] is True
    else:
        assert decision.action == "quarantine"


def test_duplicates_out_of_order_and_late_files(raw_files, tmp_path) -> None:
    scanner = watcher(tmp_path)
    copy(raw_files[8:], tmp_path)  # second half first
    assert scanner.scan(at(0)) == []
    copy(raw_files[:8], tmp_path)
    stamp = raw_files[3].name.split("_sb")[0]
    later = (datetime.fromisoformat(stamp) + timedelta(seconds=3)).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
    duplicate = tmp_path / raw_files[3].name.replace(stamp, later)
    shutil.copy2(raw_files[3], duplicate)
    assert scanner.scan(at(1)) == []
    (decision,) = scanner.scan(at(2.5))
    assert decision.is_complete and decision.group.duplicates == (duplicate,)
    late = tmp_path / raw_files[5].name.replace(stamp, later)
    shutil.copy2(raw_files[5], late)
    assert scanner.scan(at(3)) == [] and scanner.scan(at(100)) == []


def test_restart_does_not_decide_known_groups(raw_files, tmp_path) -> None:
    copy(raw_files, tmp_path)
    first = watcher(tmp_path)
    first.scan(at(0))
    (decision,) = first.scan(at(2))
    second = watcher(tmp_path)
    second.add_known_groups([decision.group.start_time])
    assert second.scan(at(10)) == [] and second.scan(at(100)) == []


def test_live_data_gets_live_priority(raw_files, tmp_path) -> None:
    copy(raw_files, tmp_path)
    scanner = watcher(tmp_path)
    scanner.scan(at(0))
    (decision,) = scanner.scan(at(2))
    start = decision.group.start_time
    live = conversion_spec(
        decision, now=start + timedelta(minutes=10), live_window_s=3600
    )
    old = conversion_spec(decision, now=start + timedelta(hours=2), live_window_s=3600)
    assert (live.priority, old.priority) == (PRIORITY_LIVE, PRIORITY_BACKFILL)
    assert live.kind == CONVERT_GROUP and live.key == decision.group.group_id


def test_file_events_trigger_scans_between_rescans(raw_files, tmp_path) -> None:
    from dsa110_contimg.services._intake import IntakeGate
    from dsa110_contimg.services._runner import JobRunner
    from dsa110_contimg.services.hdf5_watcher import WatcherService

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    config = load_pipeline_config(
        environment="testing",
        overrides={
            "paths.state_db": str(tmp_path / "state.sqlite3"),
            "conversion.group_tolerance_s": 20,
            "watcher.scan_interval_s": 300,  # rescans alone would take 5 min
            "watcher.settle_s": 0.2,
        },
        env={},
    )

    async def scenario() -> float:
        with closing(open_db(config.paths.state_db)) as conn:
            runner = JobRunner(conn, config.queue)
            gate = IntakeGate(conn, [incoming], min_free_disk_gb=0)
            service = WatcherService(config, runner, gate, incoming_dir=incoming)
            stop = asyncio.Event()
            task = asyncio.create_task(service.run(stop))
            await asyncio.sleep(0.5)
            t0 = asyncio.get_running_loop().time()
            copy(raw_files, incoming)
            while not list_jobs(conn):
                await asyncio.sleep(0.05)
                assert asyncio.get_running_loop().time() - t0 < 20
            stop.set()
            await task
            return asyncio.get_running_loop().time() - t0

    assert asyncio.run(scenario()) < 20


# --------------------------------------------------------------------- blocks


def test_block_windows_match_the_orchestrator(tmp_path) -> None:
    config = load_pipeline_config(
        environment="testing",
        overrides={
            "services.mosaic_duration_min": 3,
            "services.mosaic_overlap_min": 1,
            "paths.state_db": str(tmp_path / "state.sqlite3"),
        },
        env={},
    )
    anchor = datetime(2000, 1, 1, tzinfo=UTC)
    t = datetime(2023, 6, 1, 0, 2, 34, tzinfo=UTC)
    windows = block_windows_containing(
        t, anchor=anchor, duration=timedelta(minutes=3), step=timedelta(minutes=2)
    )
    assert [(w.start.minute, w.end.minute) for w in windows] == [(0, 3), (2, 5)]
    orchestrator = PipelineOrchestrator(config)
    try:
        for w in windows:
            block = orchestrator.create_processing_block(
                w.end.strftime("%Y-%m-%dT%H:%M:%S"), []
            )
            assert block.block_id == w.block_id
            assert (
                abs((block.start_time.to_datetime(UTC) - w.start).total_seconds()) < 1
            )
    finally:
        orchestrator.close()


def _group(minute: float, state: str = "done", *, finished_s: float = 0) -> GroupStatus:
    start = datetime(2023, 6, 1, tzinfo=UTC) + timedelta(minutes=minute)
    return GroupStatus(
        start.isoformat(),
        start,
        state,
        f"/ms/{minute}.ms" if state == "done" else None,
        at(finished_s) if state in ("done", "failed", "quarantined") else None,
        PRIORITY_BACKFILL,
    )


def test_block_ready_rules() -> None:
    base = datetime(2023, 6, 1, tzinfo=UTC)
    window = BlockWindow(base, base + timedelta(minutes=3))
    members = [_group(0), _group(1.3)]
    ready = {"latest_data_time": base + timedelta(minutes=1.3), "wait_s": 10.0}
    # still inside the window and not waited long enough
    assert decide_block(window, members, now=at(5), **ready) is None
    # waited
    decision = decide_block(window, members, now=at(11), **ready)
    assert decision is not None and "no new group" in decision.reason
    # later data arrived: ready at once
    later = {**ready, "latest_data_time": base + timedelta(minutes=4)}
    decision = decide_block(window, members, now=at(1), **later)
    assert decision is not None and "past the window end" in decision.reason
    assert list(decision.groups) == [m.group_id for m in members]
    # a group still converting holds the block
    assert (
        decide_block(window, [*members, _group(2, "running")], now=at(99), **later)
        is None
    )
    # a quarantined group is left out; nothing converted -> no block
    quarantined = [_group(0), _group(1.3, "quarantined")]
    decision = decide_block(window, quarantined, now=at(99), **later)
    assert decision is not None and len(decision.groups) == 1
    assert decide_block(window, [_group(0, "failed")], now=at(99), **later) is None
    # a block already processed is redone when a late group converted
    existing = {members[0].group_id: "/ms/0.ms"}
    redo = decide_block(
        window, members, now=at(99), existing=existing, existing_state="done", **later
    )
    assert redo is not None and redo.is_update and "late group" in redo.reason
    same = decide_block(
        window,
        members[:1],
        now=at(99),
        existing=existing,
        existing_state="done",
        **later,
    )
    assert same is None


# --------------------------------------------------------------- worker pool


def test_worker_pool_is_recycled_after_its_last_job() -> None:
    from dsa110_contimg.services._pool import ExecutorHolder

    made = []

    def factory() -> ThreadPoolExecutor:
        made.append(ThreadPoolExecutor(max_workers=1))
        return made[-1]

    holder = ExecutorHolder(factory, recycle_after=2)
    with holder.lease() as first:
        with holder.lease() as second:  # the 2nd lease retires the pool...
            assert second is first
            with holder.lease() as third:  # ...so the next job gets a new one
                assert third is not first
            assert first.submit(int, "7").result() == 7  # still usable by its jobs
        assert not first._shutdown
    assert first._shutdown  # shut down once its last job returned
    assert holder.get() is made[1] and len(made) == 2
    holder.close()
    assert made[1]._shutdown


# ------------------------------------------------------------------ disk guard


def test_disk_guard_pauses_intake_and_says_so(tmp_path) -> None:
    status = check_free_disk([tmp_path], min_free_disk_gb=5, free_gb=lambda p: 1.5)
    assert status.is_low and "1.5 GB" in status.reason and "paused" in status.reason
    with closing(open_db(tmp_path / "state.sqlite3")) as conn:
        free = {"gb": 1.5}
        gate = IntakeGate(
            conn, [tmp_path], min_free_disk_gb=5, free_gb=lambda p: free["gb"]
        )
        gate.update(at(0))
        assert not gate.is_open
        report = queue_status(conn, now=at(0))
        assert report["intake"]["paused"] is True
        assert "min_free_disk_gb" in report["intake"]["reason"]
        free["gb"] = 50.0
        gate.update(at(1))
        assert gate.is_open
        assert queue_status(conn, now=at(1))["intake"]["paused"] is False


# ----------------------------------------------------------------- variability


def _photometry_csv(
    path: Path, *, with_mosaic: bool = True, dec: float = 16.3, root: str = ""
) -> Path:
    from astropy.table import Table

    from dsa110_contimg.pipeline.stages.photometry_stage import (
        PHOTOMETRY_COLUMNS,
        write_photometry_table,
    )

    row = dict.fromkeys(PHOTOMETRY_COLUMNS, 1.0)
    row.update(
        flags=0,
        mjd=60000.0,
        freq_hz=1.4e9,
        image_kind="image",
        pointing_dec_deg=dec,
        upper_limit_jy=float("nan"),
    )
    rows = []
    for image in ("drift_20230601T000000_00", "drift_20230601T000117_00"):
        for name, flux in (("S1", 1.0), ("S2", 2.0)):
            rows.append(
                {
                    **row,
                    "source_name": name,
                    "flux_jy": flux,
                    "flux_err_jy": 0.01,
                    "image_path": f"{root}/img/{image}-image.fits",
                    "image_id": image,
                }
            )
    if with_mosaic:
        rows += [
            {
                **r,
                "image_kind": "mosaic",
                "image_path": f"{root}/mosaics/block_x-mosaic.fits",
                "image_id": "block_x",
            }
            for r in rows[:2]
        ]
    table = Table(
        rows=[[r[c] for c in PHOTOMETRY_COLUMNS] for r in rows],
        names=PHOTOMETRY_COLUMNS,
    )
    return write_photometry_table([table], path)


def test_epochs_of_a_block(tmp_path) -> None:
    from dsa110_contimg.pipeline.stages.photometry_stage import read_photometry_table
    from dsa110_contimg.services.variability_analyzer import split_epochs

    with_mosaic = read_photometry_table(_photometry_csv(tmp_path / "a.csv"))
    epochs = split_epochs(with_mosaic, "block_x")
    # the mosaic alone is the epoch (never mixed with its images), keyed by
    # time (the block's name) and strip
    assert list(epochs) == ["block_x_dec+16.30"]
    assert len(epochs["block_x_dec+16.30"]) == 2
    assert set(epochs["block_x_dec+16.30"]["image_kind"]) == {"mosaic"}
    images_only = read_photometry_table(
        _photometry_csv(tmp_path / "b.csv", with_mosaic=False)
    )
    epochs = split_epochs(images_only, "block_x")
    assert list(epochs) == [
        "drift_20230601T000000_00_dec+16.30",
        "drift_20230601T000117_00_dec+16.30",
    ]
    assert all(len(t) == 2 for t in epochs.values())


def test_variability_call_site_with_backend(tmp_path) -> None:
    from dsa110_contimg.pipeline.stages.photometry_stage import read_photometry_table

    csv = _photometry_csv(tmp_path / "photometry_block_x.csv")
    calls = []
    stored: set[str] = {"block_x_dec+16.30"}
    backend = VariabilityBackend(
        open_store=lambda cfg: ("store", cfg.store_dir),
        read_table=read_photometry_table,
        ingest_table=lambda store, table, *, epoch_id, cfg, replace: (
            calls.append(("ingest", epoch_id, len(table), replace))
            or {"n_rows": len(table)}
        ),
        analyze=lambda store, cfg: calls.append(("analyze",)) or {"n_variable": 0},
        has_epoch=lambda store, epoch_id: epoch_id in stored,
    )
    config = load_pipeline_config(environment="testing", env={})
    result = update_variability(
        str(csv),
        block_id="block_x",
        cfg=config.variability,
        backend_loader=lambda: backend,
    )
    # the mosaic is the epoch; it was stored before, so it is replaced (idempotent)
    assert calls == [("ingest", "block_x_dec+16.30", 2, True), ("analyze",)]
    assert result["ingested"] is True and result["n_rows"] == 6
    assert result["epochs"] == ["block_x_dec+16.30"]
    assert result["analysis"] == {"n_variable": 0}


def test_variability_without_backend_validates_only(tmp_path) -> None:
    csv = _photometry_csv(tmp_path / "p.csv")
    config = load_pipeline_config(environment="testing", env={})
    result = update_variability(
        str(csv), block_id="b", cfg=config.variability, backend_loader=lambda: None
    )
    assert result["ingested"] is False and result["n_sources"] == 2
    with pytest.raises(InputDataError, match="requeue the block"):
        update_variability(
            str(tmp_path / "missing.csv"), block_id="b", cfg=config.variability
        )


def test_real_variability_backend_ingests_idempotently(tmp_path) -> None:
    backend = load_backend()
    if backend is None:
        pytest.skip("dsa110_contimg.variability/lightcurves not importable")
    config = load_pipeline_config(
        environment="testing",
        overrides={"variability.store_dir": str(tmp_path / "lc")},
        env={},
    )
    for name in ("block_a", "block_b"):  # overlapping blocks share their images
        csv = _photometry_csv(tmp_path / f"{name}.csv", with_mosaic=False)
        result = update_variability(str(csv), block_id=name, cfg=config.variability)
        assert result["ingested"] is True
    assert [v["replaced"] for v in result["ingest"].values()] == [True, True]
    store = backend.open_store(config.variability)
    assert backend.has_epoch(store, "drift_20230601T000000_00_dec+16.30")


def test_two_strips_at_one_time_are_two_epochs(tmp_path) -> None:
    """Issue 15.18: a second strip's block at the same time keeps the first's rows."""
    backend = load_backend()
    if backend is None:
        pytest.skip("dsa110_contimg.variability/lightcurves not importable")
    config = load_pipeline_config(
        environment="testing",
        overrides={"variability.store_dir": str(tmp_path / "lc")},
        env={},
    )
    for dec in (16.3, 54.6):  # same block time, two strips (two output trees)
        csv = _photometry_csv(
            tmp_path / f"block_x_{dec}.csv", dec=dec, root=f"/strip{dec}"
        )
        result = update_variability(
            str(csv), block_id="block_x", cfg=config.variability
        )
        assert result["ingest"][f"block_x_dec{dec:+06.2f}"]["replaced"] is False
    store = backend.open_store(config.variability)
    assert sorted(store.epochs()["epoch_id"]) == [
        "block_x_dec+16.30",
        "block_x_dec+54.60",
    ]
    assert store.n_rows() == 4
    rows = store.epoch_table("block_x_dec+54.60")
    assert set(rows["image_kind"]) == {"mosaic"}
    assert set(rows["image_id"]) == {"block_x"}
    assert np.allclose(rows["pointing_dec_deg"], 54.6)


# ------------------------------------------------------- ENOSPC, in process


@pytest.mark.wsclean
def test_disk_full_during_conversion_retries_then_succeeds(
    tiny_group_dir, tiny_observation, tmp_path, monkeypatch
) -> None:
    from pyuvdata import UVData

    real_write = UVData.write_ms
    calls = {"n": 0}

    def full_disk_once(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(UVData, "write_ms", full_disk_once)
    base = tmp_path / "run"
    config = load_pipeline_config(
        environment="testing",
        overrides={
            **{
                f"paths.{k}": str(base / k)
                for k in ("ms_stage1_dir", "images_dir", "products_dir", "mosaics_dir")
            },
            "paths.state_db": str(base / "state.sqlite3"),
            "variability.store_dir": str(base / "lightcurves"),
            "queue.backoff_base_s": 0.2,
            "queue.block_wait_s": 0.5,
        },
        env={},
    )

    async def scenario() -> None:
        stop = asyncio.Event()
        with ThreadPoolExecutor(max_workers=1) as pool:
            task = asyncio.create_task(
                run_stream_async(
                    config,
                    stop=stop,
                    incoming_dir=tiny_group_dir,
                    catalog_path=tiny_observation.sky_path,
                    executor=pool,
                )
            )
            for _ in range(600):
                await asyncio.sleep(0.1)
                with closing(open_db(Path(config.paths.state_db))) as conn:
                    jobs = list_jobs(conn)
                if len(jobs) >= 3 and all(j.state == "done" for j in jobs):
                    break
            stop.set()
            await task

    asyncio.run(scenario())
    with closing(open_db(Path(config.paths.state_db))) as conn:
        (conversion,) = list_jobs(conn, kinds=[CONVERT_GROUP])
        events = list_job_events(conn, conversion.id)
        states = [j.state for j in list_jobs(conn)]
    assert calls["n"] == 2
    assert len(states) >= 3 and set(states) == {"done"}
    assert conversion.attempts == 2
    retry = next(e for e in events if e["error_class"] == "ResourceError")
    assert (
        "No space left on device" in retry["reason"] and "retry in" in retry["reason"]
    )
