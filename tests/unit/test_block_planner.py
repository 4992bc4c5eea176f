"""The block planner's cost follows the unsettled windows, not the history."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dsa110_contimg.services._runner import JobRunner
from dsa110_contimg.services.ms_processor import MsProcessor
from dsa110_contimg.services.ms_processor._blocks import block_windows_containing
from dsa110_contimg.state import open_db, planning
from dsa110_contimg.state.db import to_iso_utc
from dsa110_contimg.state.jobs import CONVERT_GROUP, PROCESS_BLOCK, find_job
from dsa110_contimg.utils.config_loader import PipelineConfig

START = datetime(2025, 1, 1, tzinfo=UTC)
GROUP_S = 309.0  # one DSA-110 group every ~5 min
CONFIG = PipelineConfig()


def _processor(conn, now: datetime) -> MsProcessor:
    runner = JobRunner(conn, CONFIG.queue, clock=lambda: now)
    return MsProcessor(CONFIG, runner, executors=None)  # type: ignore[arg-type]


def _row(kind: str, key: str, data_time: datetime, payload: dict, result: dict):
    stamp = to_iso_utc(data_time + timedelta(minutes=10))
    return (
        kind,
        key,
        "done",
        to_iso_utc(data_time),
        json.dumps(payload),
        json.dumps(result),
        stamp,
        stamp,
        stamp,
        stamp,
    )


def _insert(conn, rows) -> None:
    conn.executemany(
        "INSERT INTO jobs (kind, key, state, data_time_iso, payload_json, "
        "result_json, max_attempts, not_before_at, created_at, updated_at, "
        "finished_at) VALUES (?, ?, ?, ?, ?, ?, 5, ?, ?, ?, ?)",
        rows,
    )
    conn.commit()


def _history(conn, days: float) -> datetime:
    """Insert ``days`` of converted groups and their done blocks; return the end."""
    p = _processor(conn, START)
    n = int(days * 86400 / GROUP_S)
    groups: dict = {}
    rows = []
    for i in range(n):
        t = START + timedelta(seconds=i * GROUP_S)
        key = t.strftime("%Y-%m-%dT%H:%M:%S")
        ms = f"/data/ms/{key}.ms"
        rows.append(_row(CONVERT_GROUP, key, t, {"files": {}}, {"ms_path": ms}))
        for w in block_windows_containing(
            t, anchor=p._anchor, duration=p._duration, step=p._step
        ):
            groups.setdefault(w, {})[key] = ms
    end = START + timedelta(seconds=n * GROUP_S)
    for w, members in groups.items():
        if w.end <= end:
            rows.append(_row(PROCESS_BLOCK, w.block_id, w.end, {"groups": members}, {}))
    _insert(conn, rows)
    return end


def _time_full_pass(tmp_path: Path, days: float) -> tuple[float, int]:
    conn = open_db(tmp_path / f"state-{days}.db")
    end = _history(conn, days)
    now = end + timedelta(hours=2)
    p = _processor(conn, now)
    p.plan_blocks(now, full=True)  # sets the watermark (first pass reads all)
    assert planning.planner_watermark(conn) is not None
    n_seen = len(planning.group_times_since(conn, planning.planner_watermark(conn)))
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        p.plan_blocks(now, full=True)
        best = min(best, time.perf_counter() - t0)
    conn.close()
    return best, n_seen


def test_full_pass_cost_independent_of_history(tmp_path) -> None:
    one_day, n1 = _time_full_pass(tmp_path, 1)
    thirty_days, n30 = _time_full_pass(tmp_path, 30)
    # without the watermark a full pass reads every window: 30x the work
    # (0.10 s at 30 days against 4 ms at 1 day, measured before the change)
    assert n30 == n1
    assert thirty_days < 3 * one_day + 0.02, (one_day, thirty_days)


def test_full_pass_finds_a_window_missed_while_the_planner_was_down(
    state_target,
) -> None:
    conn = open_db(state_target)
    end = _history(conn, 1)
    p = _processor(conn, end)
    p.plan_blocks(end, full=True)
    mark = planning.planner_watermark(conn)
    # a new group converts, then the stream is down for two hours
    t = end + timedelta(minutes=1)
    key = t.strftime("%Y-%m-%dT%H:%M:%S")
    _insert(conn, [_row(CONVERT_GROUP, key, t, {}, {"ms_path": f"/ms/{key}.ms"})])
    later = t + timedelta(hours=2)
    p = _processor(conn, later)
    assert p.plan_blocks(later) == []  # the recent-only pass no longer sees it
    enqueued = p.plan_blocks(later, full=True)
    keys = {job.key for job in enqueued}
    windows = block_windows_containing(
        t, anchor=p._anchor, duration=p._duration, step=p._step
    )
    assert {w.block_id for w in windows} <= keys
    for w in windows:
        job = find_job(conn, PROCESS_BLOCK, w.block_id)
        assert job is not None and key in job.payload["groups"]
    assert planning.planner_watermark(conn) >= mark
    conn.close()


def test_pending_group_holds_the_watermark(state_target) -> None:
    conn = open_db(state_target)
    end = _history(conn, 0.5)
    t = end - timedelta(hours=3)  # a group of an old window still converting
    key = "pending-" + t.strftime("%H%M%S")
    row = list(_row(CONVERT_GROUP, key, t, {}, {}))
    row[2] = "pending"
    _insert(conn, [tuple(row)])
    p = _processor(conn, end)
    p.plan_blocks(end, full=True)
    first = block_windows_containing(
        t, anchor=p._anchor, duration=p._duration, step=p._step
    )[0]
    assert planning.planner_watermark(conn) == first.start
    conn.close()


def test_run_planner_reads_off_the_loop(tmp_path, caplog) -> None:
    import asyncio
    import threading

    conn = open_db(tmp_path / "state.db")
    end = _history(conn, 0.25)
    t = end + timedelta(minutes=1)
    key = t.strftime("%Y-%m-%dT%H:%M:%S")
    _insert(conn, [_row(CONVERT_GROUP, key, t, {}, {"ms_path": f"/ms/{key}.ms"})])
    later = t + timedelta(hours=2)
    p = _processor(conn, later)
    threads: list[str] = []
    plan_off_loop = p._plan_off_loop

    def spy(*args):
        threads.append(threading.current_thread().name)
        return plan_off_loop(*args)

    p._plan_off_loop = spy  # type: ignore[method-assign]

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(p.run_planner(stop))
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert threads and threading.main_thread().name not in threads
    assert "planning off the loop failed" not in caplog.text
    windows = block_windows_containing(
        t, anchor=p._anchor, duration=p._duration, step=p._step
    )
    assert all(find_job(conn, PROCESS_BLOCK, w.block_id) for w in windows)
    conn.close()
