"""Intake faults of issue 15 on real simulated files (no stream process).

Bad names, stray subbands, duplicates and truncated copies are set aside with
a reason and recorded; a failed enqueue is decided again; a hung scan does not
stop the event loop; a late subband is reported and ``requeue --reconvert``
converts the group again; ``status`` shows block windows waiting and ``idle``.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dsa110_contimg.data_ingestion.grouping import (
    find_subband_groups,
    group_subband_files,
    probe_subband_file,
    scan_subband_files,
)
from dsa110_contimg.services._intake import IntakeGate
from dsa110_contimg.services._runner import JobRunner
from dsa110_contimg.services._status import BlockTiming, queue_status
from dsa110_contimg.services.hdf5_watcher import SubbandWatcher, WatcherService
from dsa110_contimg.state import open_db
from dsa110_contimg.state.jobs import (
    CONVERT_GROUP,
    claim_job,
    complete_job,
    find_job,
    list_job_events,
    list_jobs,
)
from dsa110_contimg.state.rejected import list_rejected_files
from dsa110_contimg.utils.config_loader import WatcherConfig, load_pipeline_config

pytestmark = pytest.mark.integration

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
CFG = WatcherConfig(settle_s=1.0, group_timeout_s=60.0, min_free_disk_gb=0.0)
BAD_TIME = "2023-06-01T25:61:99_sb03.hdf5"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def raw_files(tiny_observation) -> list[Path]:
    """The tiny group's files, index = subband."""
    (group,) = tiny_observation.groups
    return sorted(group.files, key=lambda p: p.name.split("_sb")[1])


def copy(files: list[Path], dest: Path) -> None:
    for path in files:
        shutil.copy2(path, dest / path.name)


def renamed(path: Path, dest: Path, *, shift_s: float = 0, sb: int | None = None):
    stamp, rest = path.name.split("_sb")
    when = datetime.fromisoformat(stamp) + timedelta(seconds=shift_s)
    sb_text = rest[:2] if sb is None else f"{sb:02d}"
    return dest / f"{when:%Y-%m-%dT%H:%M:%S}_sb{sb_text}.hdf5"


def strays(raw_files: list[Path], dest: Path) -> dict[str, Path]:
    """A bad time, two stray subband numbers and a one-digit subband."""
    out = {
        "bad_time": dest / BAD_TIME,
        "sb16": renamed(raw_files[0], dest, sb=16),
        "sb99": renamed(raw_files[1], dest, sb=99),
        "sb3": renamed(raw_files[3], dest).with_name(
            renamed(raw_files[3], dest).name.replace("_sb03", "_sb3")
        ),
    }
    for path in out.values():
        shutil.copy2(raw_files[0], path)
    return out


def config_for(tmp_path: Path, **overrides):
    return load_pipeline_config(
        environment="testing",
        overrides={
            "paths.state_db": str(tmp_path / "state.sqlite3"),
            "conversion.group_tolerance_s": 20,
            "watcher.settle_s": 0.0,
            "watcher.min_free_disk_gb": 0.0,
            **overrides,
        },
        env={},
    )


# ------------------------------------------------ items 1 and 5: names


def test_bad_names_and_stray_subbands_set_aside_named(raw_files, tmp_path) -> None:
    copy(raw_files, tmp_path)
    bad = strays(raw_files, tmp_path)
    files, rejected = scan_subband_files(tmp_path.glob("*_sb*.hdf5"), n_expected=16)
    assert len(files) == 16
    by_path = {r.path: r for r in rejected}
    assert set(by_path) == set(bad.values())
    assert by_path[bad["bad_time"]].kind == "bad_name"
    assert BAD_TIME in by_path[bad["bad_time"]].reason
    assert "not a valid time" in by_path[bad["bad_time"]].reason
    for key in ("sb16", "sb99"):
        assert by_path[bad[key]].kind == "unknown_subband"
        assert str(bad[key]) in by_path[bad[key]].reason
        assert "outside sb00..sb15" in by_path[bad[key]].reason
    assert by_path[bad["sb3"]].kind == "bad_name"
    assert "two digits" in by_path[bad["sb3"]].reason
    (group,) = group_subband_files(files, tolerance_s=20, n_expected=16)
    assert group.is_complete and len(group.files) == 16


def test_watcher_goes_on_past_bad_names_and_records_them(raw_files, tmp_path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    copy(raw_files, incoming)
    bad = strays(raw_files, incoming)
    config = config_for(tmp_path)
    with closing(open_db(config.paths.state_db)) as conn:
        runner = JobRunner(conn, config.queue, clock=lambda: T0)
        gate = IntakeGate(conn, [incoming], min_free_disk_gb=0)
        service = WatcherService(config, runner, gate, incoming_dir=incoming)
        assert service.scan_once(at(0)) == []
        (job,) = service.scan_once(at(1))
        assert len(job.payload["files"]) == 16  # no stray joined the group
        rows = {r["path"]: r for r in list_rejected_files(conn)}
        assert set(rows) == {str(p) for p in bad.values()}
        report = queue_status(conn, now=at(2))
    assert report["rejected_files"]["counts"] == {"bad_name": 2, "unknown_subband": 2}
    assert any(BAD_TIME in r["reason"] for r in report["rejected_files"]["files"])


def test_batch_convert_sets_bad_names_aside(raw_files, tmp_path) -> None:
    """``process`` used to die in grouping with a traceback naming no file."""
    from dsa110_contimg.pipeline.batch import convert_incoming

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    copy(raw_files, incoming)
    shutil.copy2(raw_files[3], incoming / BAD_TIME)
    shutil.copy2(raw_files[3], renamed(raw_files[3], incoming, sb=16))
    config = config_for(tmp_path, **{"paths.ms_stage1_dir": str(tmp_path / "ms")})
    lines: list[str] = []
    report = convert_incoming(config, incoming, progress=lines.append)
    assert not report.failures and len(report.products) == 1
    assert any(BAD_TIME in line and "set aside" in line for line in lines)
    with closing(open_db(config.paths.state_db)) as conn:
        rows = list_rejected_files(conn)
    assert sorted(r["kind"] for r in rows) == ["bad_name", "unknown_subband"]
    assert all(Path(r["path"]).exists() for r in rows)  # never deleted


# ---------------------------------------------- item 4: duplicates by data


def test_truncated_copy_named_earlier_loses_to_the_good_file(raw_files, tmp_path):
    copy(raw_files, tmp_path)
    good = tmp_path / raw_files[2].name
    truncated = renamed(raw_files[2], tmp_path, shift_s=-1)
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
    scan = find_subband_groups(tmp_path, tolerance_s=20, n_expected=16)
    (group,) = scan.groups
    assert group.files[2] == good
    assert group.duplicates == (truncated,)
    (rejected,) = scan.rejected
    assert rejected.kind == "duplicate" and str(truncated) in rejected.reason
    assert (
        good.name in rejected.reason and "unreadable or incomplete" in rejected.reason
    )


def test_valid_duplicate_named_earlier_keeps_one_group_one_name(raw_files, tmp_path):
    copy(raw_files, tmp_path)
    before = find_subband_groups(tmp_path, tolerance_s=20, n_expected=16).groups
    dup = renamed(raw_files[5], tmp_path, shift_s=-2)
    shutil.copy2(raw_files[5], dup)
    (group,) = find_subband_groups(tmp_path, tolerance_s=20, n_expected=16).groups
    assert group.group_id == before[0].group_id  # same MS name: no second MS
    assert group.files[5] == tmp_path / raw_files[5].name
    assert group.duplicates == (dup,)


def test_copy_named_outside_the_tolerance_joins_by_its_data_time(raw_files, tmp_path):
    copy(raw_files[1:], tmp_path)
    far = renamed(raw_files[0], tmp_path, shift_s=-60)  # name 60 s off, same data
    shutil.copy2(raw_files[0], far)
    files, _ = scan_subband_files(tmp_path.glob("*_sb*.hdf5"), n_expected=16)
    by_name = group_subband_files(files, tolerance_s=20, n_expected=16)
    assert len(by_name) == 2  # names alone split the group
    (group,) = group_subband_files(
        files, tolerance_s=20, n_expected=16, probe=probe_subband_file
    )
    assert group.is_complete and group.files[0] == far


# ------------------------------------- item 3: decided groups are not lost


def test_group_whose_enqueue_failed_is_decided_again(raw_files, tmp_path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    copy(raw_files, incoming)
    config = config_for(tmp_path)
    with closing(open_db(config.paths.state_db)) as conn:
        runner = JobRunner(conn, config.queue, clock=lambda: T0)
        gate = IntakeGate(conn, [incoming], min_free_disk_gb=0)
        service = WatcherService(config, runner, gate, incoming_dir=incoming)
        real = runner.enqueue
        calls = {"n": 0}

        def flaky(spec, **kw):
            calls["n"] += 1
            if calls["n"] == 1:
                msg = "database is locked"
                raise RuntimeError(msg)
            return real(spec, **kw)

        runner.enqueue = flaky  # type: ignore[method-assign]
        service.scan_once(at(0))
        assert service.scan_once(at(1)) == []  # decided, enqueue failed
        assert list_jobs(conn) == []
        (job,) = service.scan_once(at(2))  # decided again, enqueued
        assert job.kind == CONVERT_GROUP and len(job.payload["files"]) == 16
        assert service.scan_once(at(3)) == []  # and only once


# ---------------------------------------------- item 2: hung file-system call


def test_hung_scan_does_not_stop_the_loop(raw_files, tmp_path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    copy(raw_files, incoming)
    config = config_for(tmp_path)
    release = threading.Event()

    async def scenario() -> tuple[int, float]:
        with closing(open_db(config.paths.state_db)) as conn:
            runner = JobRunner(conn, config.queue)
            gate = IntakeGate(conn, [incoming], min_free_disk_gb=0)
            service = WatcherService(
                config, runner, gate, incoming_dir=incoming, io_timeout_s=0.3
            )
            real_scan = service.scanner.scan

            def hanging_scan(now):
                release.wait(30)  # a read that does not return (a stuck mount)
                return real_scan(now)

            service.scanner.scan = hanging_scan  # type: ignore[method-assign]
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.05)
                    ticks += 1

            tick_task = asyncio.create_task(ticker())
            t0 = time.monotonic()
            assert await service.scan_off_loop(at(0)) == []  # gave up waiting
            assert await service.scan_off_loop(at(1)) == []  # still the same scan
            waited = time.monotonic() - t0
            stuck = queue_status(conn, now=at(1))["intake"]
            assert stuck["stuck"] is True and "has not returned" in stuck["reason"]
            release.set()
            service.scanner.scan = real_scan  # type: ignore[method-assign]
            for i in range(3):
                await service.scan_off_loop(at(2 + i))
            tick_task.cancel()
            assert not queue_status(conn, now=at(9))["intake"].get("stuck")
            return ticks, waited, len(list_jobs(conn))

    ticks, waited, n_jobs = asyncio.run(scenario())
    assert waited < 2.0  # two bounded waits of 0.3 s, not a hang
    assert ticks >= 8  # the loop kept running meanwhile
    assert n_jobs == 1  # the scan finished later and its group was enqueued


def test_fifo_named_like_a_subband_is_never_opened(raw_files, tmp_path) -> None:
    import os

    copy([f for f in raw_files if "_sb05" not in f.name], tmp_path)
    fifo = tmp_path / raw_files[5].name
    os.mkfifo(fifo)
    scanner = SubbandWatcher(tmp_path, CFG, tolerance_s=20.0, n_expected=16)
    assert bounded(scanner.scan, at(0)) == []
    (odd,) = scanner.rejected
    assert (odd.path, odd.kind) == (fifo, "not_regular") and "FIFO" in odd.reason
    assert bounded(scanner.scan, at(2)) == []  # 15 stable files: waits for sb05
    (decision,) = bounded(scanner.scan, at(61))  # timeout: sb05 flagged
    assert bounded(scanner.scan, at(62)) == [] and scanner.rejected == []
    assert decision.group.missing_subbands == (5,)


def bounded(fn, *args, timeout_s: float = 20.0):
    """Call ``fn`` in a daemon thread; fail (not hang) if it does not return."""
    out: dict[str, object] = {}

    def target() -> None:
        try:
            out["value"] = fn(*args)
        except BaseException as err:  # re-raised below
            out["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} blocked for {timeout_s} s")
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out["value"]


# ------------------------------------------------ item 6: late subbands


def test_late_subband_is_reported_for_its_group(raw_files, tmp_path) -> None:
    copy([f for f in raw_files if "_sb05" not in f.name], tmp_path)
    scanner = SubbandWatcher(tmp_path, CFG, tolerance_s=20.0, n_expected=16)
    scanner.scan(at(0))
    (decision,) = scanner.scan(at(61))
    assert decision.group.missing_subbands == (5,)
    copy([raw_files[5]], tmp_path)
    assert scanner.scan(at(70)) == [] and scanner.rejected == []  # settling
    assert scanner.scan(at(71.5)) == []
    (late,) = scanner.rejected
    assert late.kind == "late" and late.group_id == decision.group.group_id
    assert "requeue --reconvert" in late.reason
    assert scanner.scan(at(80)) == [] and scanner.rejected == []  # reported once


def _finish(conn, now: datetime) -> None:
    """Run the pending conversion job to done (what its lane would do)."""
    job = claim_job(conn, worker="w", now=now, lease_s=60, kinds=[CONVERT_GROUP])
    complete_job(conn, job.id, worker="w", now=now, result={"ok": True})


def _late_events(conn, job_id: int) -> list[dict]:
    return [e for e in list_job_events(conn, job_id) if "late subband" in e["reason"]]


def test_subband_that_arrived_while_down_is_late_after_restart(
    raw_files, tmp_path
) -> None:
    """A restart compares the directory with the files each group's job lists."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    copy([f for f in raw_files if "_sb05" not in f.name], incoming)
    config = config_for(
        tmp_path, **{"watcher.group_timeout_s": 5.0, "watcher.timeout_policy": "flag"}
    )

    def restart(conn):
        runner = JobRunner(conn, config.queue, clock=lambda: T0)
        gate = IntakeGate(conn, [incoming], min_free_disk_gb=0)
        return WatcherService(config, runner, gate, incoming_dir=incoming)

    with closing(open_db(config.paths.state_db)) as conn:
        first = restart(conn)
        first.scan_once(at(0))
        (job,) = first.scan_once(at(6))  # timed out: sb05 flagged
        assert job.payload["flag_missing"] and len(job.payload["files"]) == 15
        _finish(conn, at(7))
        copy([raw_files[5]], incoming)  # arrives while the stream is down
        second = restart(conn)
        assert second.scan_once(at(20)) == []  # seen: settling
        assert find_job(conn, CONVERT_GROUP, job.key).state == "done"
        second.scan_once(at(22))  # settled: late, group requeued
        again = find_job(conn, CONVERT_GROUP, job.key)
        assert again.state == "pending" and again.payload["reconvert"] is True
        assert len(again.payload["files"]) == 16 and not again.payload["flag_missing"]
        assert again.payload["files"]["05"] == str(incoming / raw_files[5].name)
        second.scan_once(at(30))
        _finish(conn, at(31))
        assert len(_late_events(conn, job.id)) == 1  # exactly once
        assert list_rejected_files(conn, kinds=["late"]) == []  # resolved
        third = restart(conn)  # a restart with no new file reconverts nothing
        for t in (40, 42, 50):
            third.scan_once(at(t))
        assert find_job(conn, CONVERT_GROUP, job.key).state == "done"
        assert len(_late_events(conn, job.id)) == 1
        assert list_rejected_files(conn) == []


def test_late_subband_waits_for_a_running_conversion(raw_files, tmp_path) -> None:
    """Seen while the group's job runs: requeued once that job has finished."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    copy([f for f in raw_files if "_sb05" not in f.name], incoming)
    config = config_for(
        tmp_path, **{"watcher.group_timeout_s": 5.0, "watcher.timeout_policy": "flag"}
    )
    with closing(open_db(config.paths.state_db)) as conn:
        runner = JobRunner(conn, config.queue, clock=lambda: T0)
        gate = IntakeGate(conn, [incoming], min_free_disk_gb=0)
        service = WatcherService(config, runner, gate, incoming_dir=incoming)
        service.scan_once(at(0))
        (job,) = service.scan_once(at(6))
        running = claim_job(conn, worker="w", now=at(6), lease_s=600)
        copy([raw_files[5]], incoming)
        for t in (7, 9, 11):
            service.scan_once(at(t))
        assert find_job(conn, CONVERT_GROUP, job.key).state == "running"
        complete_job(conn, running.id, worker="w", now=at(12))
        service.scan_once(at(13))
        again = find_job(conn, CONVERT_GROUP, job.key)
        assert again.state == "pending" and len(again.payload["files"]) == 16
        service.scan_once(at(14))
        assert len(_late_events(conn, job.id)) == 1


def test_reconvert_payload_takes_the_late_file(raw_files, tmp_path) -> None:
    from dsa110_contimg.services.hdf5_watcher import conversion_spec
    from dsa110_contimg.services.ms_processor._work import reconvert_payload

    copy([f for f in raw_files if "_sb05" not in f.name], tmp_path)
    scanner = SubbandWatcher(tmp_path, CFG, tolerance_s=20.0, n_expected=16)
    scanner.scan(at(0))
    (decision,) = scanner.scan(at(61))
    spec = conversion_spec(decision, now=at(61), live_window_s=3600)
    assert spec.payload["flag_missing"] and len(spec.payload["files"]) == 15
    late = renamed(raw_files[5], tmp_path, shift_s=-3)  # named before the group
    shutil.copy2(raw_files[5], late)
    payload, rejected = reconvert_payload(
        spec.payload, incoming_dir=tmp_path, tolerance_s=20.0, n_expected=16
    )
    assert rejected == []
    assert payload["reconvert"] is True and payload["flag_missing"] is False
    assert payload["files"]["05"] == str(late) and len(payload["files"]) == 16
    assert payload["start_time_iso"] == spec.payload["start_time_iso"]  # same MS
    assert payload["group_id"] == spec.payload["group_id"]


# ---------------------------------------------- item 17: status while waiting


def test_status_shows_block_windows_waiting_and_idle(tmp_path) -> None:
    from dsa110_contimg.state.jobs import JobSpec, claim_job, complete_job, enqueue_job

    config = config_for(tmp_path, **{"queue.block_wait_s": 900.0})
    timing = BlockTiming.from_config(config)
    with closing(open_db(config.paths.state_db)) as conn:
        assert queue_status(conn, now=T0, timing=timing)["idle"] is True
        for i in range(2):
            key = (T0 + timedelta(seconds=309 * i)).strftime("%Y-%m-%dT%H:%M:%S")
            enqueue_job(
                conn,
                JobSpec(
                    CONVERT_GROUP, key, (T0 + timedelta(seconds=309 * i)).isoformat()
                ),
                now=T0,
            )
            job = claim_job(conn, worker="h:1:a", now=T0, lease_s=60)
            complete_job(
                conn, job.id, worker="h:1:a", now=at(10), result={"ms_path": f"{i}.ms"}
            )
        report = queue_status(conn, now=at(20), timing=timing)
    assert (report["pending"], report["running"]) == (0, 0)
    assert report["idle"] is False
    windows = report["block_windows"]
    assert windows and all(w["n_converted"] >= 1 for w in windows)
    runs_at = {datetime.fromisoformat(w["runs_at"]) for w in windows}
    assert runs_at == {at(10) + timedelta(seconds=900)}
    assert "block_wait_s" in windows[0]["waits_for"]
    later = None
    with closing(open_db(config.paths.state_db)) as conn:
        later = queue_status(conn, now=at(20), timing=None)
    assert later["block_windows"] == [] and later["idle"] is True  # no timing


def test_reconvert_job_replaces_ms_and_redoes_its_blocks(raw_files, tmp_path) -> None:
    """``requeue --reconvert``: the MS gains the late subband, images are remade."""
    from dsa110_contimg.services._pool import ExecutorHolder
    from dsa110_contimg.services.hdf5_watcher import conversion_spec
    from dsa110_contimg.services.ms_processor import MsProcessor
    from dsa110_contimg.services.ms_processor._work import (
        convert_job,
        reconvert_payload,
    )
    from dsa110_contimg.state.jobs import (
        PROCESS_BLOCK,
        JobSpec,
        claim_job,
        complete_job,
        enqueue_job,
        find_job,
    )

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    copy([f for f in raw_files if "_sb05" not in f.name], incoming)
    config = config_for(tmp_path, **{"paths.ms_stage1_dir": str(tmp_path / "ms")})
    cfg = config.conversion.model_copy(update={"group_tolerance_s": 20.0})
    scanner = SubbandWatcher(incoming, CFG, tolerance_s=20.0, n_expected=16)
    scanner.scan(at(0))
    (decision,) = scanner.scan(at(61))
    spec = conversion_spec(decision, now=at(61), live_window_s=3600)
    images = tmp_path / "images"
    first = convert_job(dict(spec.payload), cfg, str(tmp_path / "ms"), str(images))
    assert first["n_subbands_present"] == 15
    images.mkdir()
    stem = Path(first["ms_path"]).name.removesuffix(".ms")
    (images / f"{stem}-image.fits").write_bytes(b"old image")
    copy([raw_files[5]], incoming)  # the late subband
    payload, _ = reconvert_payload(
        spec.payload, incoming_dir=incoming, tolerance_s=20.0, n_expected=16
    )
    again = convert_job(payload, cfg, str(tmp_path / "ms"), str(images))
    assert again["ms_path"] == first["ms_path"]  # one group, one MS
    assert again["n_subbands_present"] == 16 and again["missing_subbands"] == []
    assert not (images / f"{stem}-image.fits").exists()  # re-imaged next time
    (kept,) = again["superseded_images"]
    assert Path(kept).read_bytes() == b"old image"  # moved aside, not deleted

    with closing(open_db(config.paths.state_db)) as conn:
        runner = JobRunner(conn, config.queue, clock=lambda: T0)
        processor = MsProcessor(config, runner, ExecutorHolder(lambda: None))
        block_spec = JobSpec(
            PROCESS_BLOCK,
            "block_x",
            T0.isoformat(),
            {"groups": {spec.key: first["ms_path"]}},
        )
        enqueue_job(conn, block_spec, now=T0)
        block = claim_job(conn, worker="w:1:a", now=T0, lease_s=60)
        complete_job(conn, block.id, worker="w:1:a", now=T0)
        enqueue_job(
            conn, JobSpec(CONVERT_GROUP, spec.key, spec.data_time_iso, payload), now=T0
        )
        conv = claim_job(conn, worker="w:1:a", now=T0, lease_s=60)
        follow = processor._blocks_to_redo(conv)
        assert [f.key for f in follow] == ["block_x"]
        complete_job(conn, conv.id, worker="w:1:a", now=at(1), follow_ups=follow)
        redone = find_job(conn, PROCESS_BLOCK, "block_x")
    assert redone.state == "pending"  # the block runs again with the new MS
    assert "reconverted" in str(redone.payload["reason"])


def test_status_wait_returns_only_when_idle(tmp_path) -> None:
    import json

    from click.testing import CliRunner

    from dsa110_contimg.cli.service_commands import status_command
    from dsa110_contimg.state.jobs import JobSpec, enqueue_job

    db = tmp_path / "state.sqlite3"
    args = ["--env", "testing", "--set", f"paths.state_db={db}", "--json"]
    with closing(open_db(db)) as conn:
        job, _ = enqueue_job(
            conn, JobSpec(CONVERT_GROUP, "2025-01-01T12:00:00", T0.isoformat()), now=T0
        )
    t0 = time.monotonic()
    busy = CliRunner().invoke(status_command, [*args, "--wait", "--wait-timeout", "1"])
    assert busy.exit_code == 2, busy.output
    assert time.monotonic() - t0 >= 1.0
    assert json.loads(busy.stdout)["idle"] is False
    with closing(open_db(db)) as conn:
        from dsa110_contimg.state.jobs import cancel_job

        cancel_job(conn, job.id, now=T0)
    idle = CliRunner().invoke(status_command, [*args, "--wait", "--wait-timeout", "5"])
    assert idle.exit_code == 0, idle.output
    assert json.loads(idle.stdout)["idle"] is True


def test_stream_requeues_a_finished_group_for_its_late_subband(raw_files, tmp_path):
    from dsa110_contimg.state.jobs import claim_job, complete_job, get_job

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    copy([f for f in raw_files if "_sb05" not in f.name], incoming)
    config = config_for(
        tmp_path,
        **{"watcher.group_timeout_s": 60.0, "watcher.timeout_policy": "flag"},
    )
    with closing(open_db(config.paths.state_db)) as conn:
        runner = JobRunner(conn, config.queue, clock=lambda: T0)
        gate = IntakeGate(conn, [incoming], min_free_disk_gb=0)
        service = WatcherService(config, runner, gate, incoming_dir=incoming)
        service.scan_once(at(0))
        (job,) = service.scan_once(at(61))
        assert job.payload["missing_subbands"] == [5]
        claimed = claim_job(conn, worker="w:1:a", now=at(62), lease_s=60)
        complete_job(conn, claimed.id, worker="w:1:a", now=at(63))
        copy([raw_files[5]], incoming)  # the late subband
        assert service.scan_once(at(70)) == []  # seen once: not yet stable
        assert get_job(conn, job.id).state == "done"
        assert service.scan_once(at(71)) == []
        again = get_job(conn, job.id)
        assert again.state == "pending" and again.payload["reconvert"] is True
        assert again.payload["files"]["05"] == str(incoming / raw_files[5].name)
        assert again.payload["missing_subbands"] == []
        assert again.payload["flag_missing"] is False
        assert list_rejected_files(conn) == []  # resolved: nothing left to do
