"""Retention: what maintenance deletes, and what it never deletes."""

from __future__ import annotations

import json
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsa110_contimg.exceptions import ConfigError
from dsa110_contimg.services import _maintenance
from dsa110_contimg.services._maintenance import run_maintenance
from dsa110_contimg.services.ms_processor._blocks import block_windows_containing
from dsa110_contimg.state import open_db, record_group
from dsa110_contimg.state.db import to_iso_utc
from dsa110_contimg.state.jobs import CONVERT_GROUP, PROCESS_BLOCK, count_jobs
from dsa110_contimg.utils.config_loader import PipelineConfig, load_pipeline_config

NOW = datetime(2025, 6, 1, tzinfo=UTC)
OLD = NOW - timedelta(days=100)


def _config(tmp_path: Path, target=None, **retention) -> PipelineConfig:
    """A config under ``tmp_path``; ``target`` a PostgreSQL URL or an SQLite file."""
    base = PipelineConfig()
    url = target if isinstance(target, str) else None
    paths = base.paths.model_copy(
        update={
            "state_db": target if isinstance(target, Path) else tmp_path / "state.db",
            "ms_stage1_dir": tmp_path / "ms",
            "images_dir": tmp_path / "images",
            "incoming_dir": tmp_path / "incoming",
        }
    )
    return base.model_copy(
        update={
            "paths": paths,
            "retention": base.retention.model_copy(update=retention),
            "database": base.database.model_copy(update={"url": url}),
        }
    )


def _job(conn, kind, key, state, data_time, finished, payload=None, result=None):
    stamp = to_iso_utc(finished)
    cur = conn.execute(
        "INSERT INTO jobs (kind, key, state, data_time_iso, payload_json, "
        "result_json, max_attempts, not_before_at, created_at, updated_at, "
        "finished_at) VALUES (?, ?, ?, ?, ?, ?, 5, ?, ?, ?, ?) RETURNING id",
        (
            kind,
            key,
            state,
            to_iso_utc(data_time),
            json.dumps(payload or {}),
            json.dumps(result or {}),
            stamp,
            stamp,
            stamp,
            stamp,
        ),
    )
    job_id = cur.fetchone()[0]
    conn.execute(
        "INSERT INTO job_events (job_id, to_state, reason, created_at) "
        "VALUES (?, ?, 'test', ?)",
        (job_id, state, stamp),
    )
    conn.commit()
    return job_id


def test_finished_jobs_metrics_and_set_aside_folders_expire(
    state_target, tmp_path
) -> None:
    cfg = _config(tmp_path, state_target)
    conn = open_db(cfg.state_target)
    old_done = _job(conn, CONVERT_GROUP, "g-old", "done", OLD, OLD)
    record_group(
        conn,
        group_id="g-old",
        start_time_iso=to_iso_utc(OLD),
        n_subbands=16,
        ms_path="/x.ms",
        status="converted",
    )
    # a done conversion job whose group is not in `groups`: the watcher would
    # decide it again if its raw files are still there, so it stays
    _job(conn, CONVERT_GROUP, "g-unrecorded", "done", OLD, OLD)
    _job(conn, PROCESS_BLOCK, "block-old", "done", OLD, OLD)
    _job(conn, PROCESS_BLOCK, "block-failed", "failed", OLD, OLD)
    _job(conn, PROCESS_BLOCK, "block-quarantined", "quarantined", OLD, OLD)
    _job(conn, PROCESS_BLOCK, "block-new", "done", NOW, NOW - timedelta(days=10))
    for when in (OLD, NOW):
        conn.execute(
            "INSERT INTO block_metrics (block_id, success, processing_time_s, "
            "ms_count, image_count, recorded_at) VALUES ('b', 1, 1.0, 1, 1, ?)",
            (to_iso_utc(when),),
        )
    conn.commit()
    corrupt = cfg.paths.ms_stage1_dir / "corrupt"
    (corrupt / "a.ms.20250101T000000").mkdir(parents=True)
    (corrupt / "a.ms.20250101T000000" / "table.dat").write_bytes(b"x" * 10)
    (corrupt / "b.ms.20250530T000000").mkdir()
    superseded = cfg.paths.images_dir / "superseded"
    (superseded / "20250101T000000123456").mkdir(parents=True)
    (superseded / "20250531T000000123456").mkdir()

    dry = run_maintenance(cfg, now=NOW, dry_run=True)
    assert dry.counts["jobs"] == 2 and dry.counts["job_events"] == 2
    assert dry.counts["block_metrics"] == 1
    assert dry.counts["corrupt"] == 1 and dry.counts["superseded"] == 1
    assert count_jobs(conn)["done"] == 4  # nothing deleted
    assert (corrupt / "a.ms.20250101T000000").exists()

    report = run_maintenance(cfg, now=NOW, vacuum=True)
    assert report.counts == {**dry.counts}
    assert report.vacuumed and report.checkpoint is not None
    left = {r[0] for r in conn.execute("SELECT key FROM jobs")}
    assert left == {"g-unrecorded", "block-failed", "block-quarantined", "block-new"}
    assert (
        conn.execute(
            "SELECT COUNT(*) FROM job_events WHERE job_id = ?", (old_done,)
        ).fetchone()[0]
        == 0
    )
    assert conn.execute("SELECT COUNT(*) FROM block_metrics").fetchone()[0] == 1
    assert sorted(p.name for p in corrupt.iterdir()) == ["b.ms.20250530T000000"]
    assert sorted(p.name for p in superseded.iterdir()) == ["20250531T000000123456"]
    kinds = dict(conn.execute("SELECT kind, COUNT(*) FROM deletions GROUP BY kind"))
    assert kinds == {"corrupt": 1, "superseded": 1}
    # the groups table keeps the group known to the watcher
    from dsa110_contimg.state.planning import known_group_times

    assert OLD in known_group_times(conn)
    conn.close()


def test_raw_files_and_ms_are_kept_by_default(state_target, tmp_path) -> None:
    cfg = _config(tmp_path, state_target)
    conn = open_db(cfg.state_target)
    raw = tmp_path / "incoming" / "a_sb00.hdf5"
    raw.parent.mkdir()
    raw.write_bytes(b"raw")
    ms = tmp_path / "ms" / "a.ms"
    ms.mkdir(parents=True)
    _job(
        conn,
        CONVERT_GROUP,
        "a",
        "done",
        OLD,
        OLD - timedelta(days=900),
        {"files": {"00": str(raw)}},
        {"ms_path": str(ms)},
    )
    conn.close()
    report = run_maintenance(cfg, now=NOW)
    assert report.counts["raw_files"] == 0 and report.counts["ms"] == 0
    assert raw.exists() and ms.exists()


def _group_with_blocks(conn, cfg, tmp_path, name, t, *, block_state="done"):
    raw = [tmp_path / "incoming" / f"{name}_sb{sb:02d}.hdf5" for sb in range(2)]
    for path in raw:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"raw")
    ms = tmp_path / "ms" / f"{name}.ms"
    ms.mkdir(parents=True)
    (ms / "table.dat").write_bytes(b"ms")
    _job(
        conn,
        CONVERT_GROUP,
        name,
        "done",
        t,
        t,
        {"files": {f"{i:02d}": str(p) for i, p in enumerate(raw)}},
        {"ms_path": str(ms)},
    )
    svc = cfg.services
    for w in block_windows_containing(
        t,
        anchor=datetime.fromisoformat(cfg.queue.block_anchor_time).replace(tzinfo=UTC),
        duration=timedelta(minutes=svc.mosaic_duration_min),
        step=timedelta(minutes=svc.mosaic_duration_min - svc.mosaic_overlap_min),
    ):
        _job(
            conn,
            PROCESS_BLOCK,
            f"{w.block_id}-{name}",
            block_state,
            w.end,
            t,
            {"groups": {name: str(ms)}},
        )
        conn.execute(
            "UPDATE jobs SET key = ? WHERE key = ?",
            (w.block_id, f"{w.block_id}-{name}"),
        )
    conn.commit()
    return raw, ms


def test_raw_and_ms_deleted_only_when_processed(
    state_target, tmp_path, monkeypatch
) -> None:
    cfg = _config(tmp_path, state_target, raw_files_days=7, ms_days=30)
    conn = open_db(cfg.state_target)
    t_old = NOW - timedelta(days=40)
    raw_ok, ms_ok = _group_with_blocks(conn, cfg, tmp_path, "ok", t_old)
    raw_bad, ms_bad = _group_with_blocks(
        conn, cfg, tmp_path, "bad", t_old + timedelta(hours=5)
    )
    raw_blk, ms_blk = _group_with_blocks(
        conn, cfg, tmp_path, "blk", t_old + timedelta(hours=10), block_state="failed"
    )
    raw_new, ms_new = _group_with_blocks(
        conn, cfg, tmp_path, "new", NOW - timedelta(days=1)
    )
    # an unprocessed group: conversion pending, files in incoming
    pending_raw = tmp_path / "incoming" / "pending_sb00.hdf5"
    pending_raw.write_bytes(b"raw")
    _job(
        conn,
        CONVERT_GROUP,
        "pending",
        "pending",
        t_old,
        t_old,
        {"files": {"00": str(pending_raw)}},
    )
    for ms in (ms_ok, ms_blk, ms_new):  # imaged
        (cfg.paths.images_dir).mkdir(exist_ok=True)
        (cfg.paths.images_dir / f"{ms.stem}-image.fits").write_bytes(b"img")
    conn.close()
    monkeypatch.setattr(  # the MS check itself is tested with real MSs elsewhere
        _maintenance,
        "check_ms",
        lambda path: None if path != ms_bad else "is unreadable (test)",
    )
    dry = run_maintenance(cfg, now=NOW, dry_run=True)
    assert sorted(dry.deleted) == sorted(map(str, [*raw_ok, *raw_blk, ms_ok]))
    assert all(p.exists() for p in [*raw_ok, ms_ok])

    report = run_maintenance(cfg, now=NOW)
    assert report.counts["raw_files"] == 4 and report.counts["ms"] == 1
    assert not any(p.exists() for p in [*raw_ok, *raw_blk]) and not ms_ok.exists()
    # kept: MS invalid, block not done (MS), too recent, unprocessed
    assert all(p.exists() for p in [*raw_bad, ms_bad, ms_blk, *raw_new, ms_new])
    assert pending_raw.exists()
    assert any("unreadable" in why for why in report.kept["bad"])
    assert any("failed" in why for why in report.kept["blk"])
    # a second run finds nothing more (the deletions mark the groups handled)
    again = run_maintenance(cfg, now=NOW)
    assert again.counts["raw_files"] == 0 and again.counts["ms"] == 0
    conn = open_db(cfg.state_target)
    kinds = dict(conn.execute("SELECT kind, COUNT(*) FROM deletions GROUP BY kind"))
    assert kinds == {"raw": 4, "ms": 1}
    conn.close()


def test_ms_without_image_is_kept(tmp_path, monkeypatch) -> None:
    cfg = _config(tmp_path, ms_days=30)
    conn = open_db(cfg.state_target)
    _, ms = _group_with_blocks(conn, cfg, tmp_path, "noimg", NOW - timedelta(days=40))
    conn.close()
    report = run_maintenance(cfg, now=NOW)
    assert ms.exists() and "image" in report.kept["noimg"][0]


@pytest.mark.parametrize(
    ("sets", "word"),
    [
        ({"raw_files_days": 100, "jobs_days": 90}, "jobs_days"),
        ({"ms_days": 5, "raw_files_days": 7}, "ms_days"),
    ],
)
def test_unsafe_retention_orders_are_refused(tmp_path, sets, word) -> None:
    overrides = {f"retention.{k}": v for k, v in sets.items()}
    with pytest.raises(ConfigError, match=word):
        load_pipeline_config(environment="testing", overrides=overrides)


def test_db_maintain_command(tmp_path) -> None:
    from dsa110_contimg.cli import cli

    db = tmp_path / "state.db"
    conn = open_db(db)
    _job(conn, PROCESS_BLOCK, "b", "done", OLD, OLD)
    conn.close()
    args = ["db", "maintain", "--set", f"paths.state_db={db}"]
    result = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would delete: jobs 1, job_events 1" in result.output
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["jobs"] == 1


def test_stream_maintenance_task_runs_off_the_loop_and_stops(tmp_path) -> None:
    import asyncio

    from dsa110_contimg.services._maintenance import (
        MAINTENANCE_STATE,
        run_maintenance_task,
    )
    from dsa110_contimg.state.jobs import get_service_state

    cfg = _config(tmp_path, interval_s=0.05)
    conn = open_db(cfg.state_target)
    _job(conn, PROCESS_BLOCK, "b", "done", OLD, OLD)
    conn.close()

    async def main() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_maintenance_task(cfg, stop, clock=lambda: NOW, first_delay_s=0.0)
        )
        ticks = 0
        for _ in range(200):  # the loop keeps running while a pass works
            await asyncio.sleep(0.01)
            ticks += 1
            with closing(open_db(cfg.state_target)) as c:
                if MAINTENANCE_STATE in get_service_state(c):
                    break
        stop.set()
        await asyncio.wait_for(task, 5)
        return ticks

    assert asyncio.run(main()) < 200
    with closing(open_db(cfg.state_target)) as c:
        assert c.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
        assert get_service_state(c)[MAINTENANCE_STATE]["counts"]["jobs"] == 1
