"""Retention and state-database maintenance, once (``db maintain``) or
periodically in the stream (`run_maintenance_task`).

What is deleted follows the ``retention`` section; 0 days keeps a kind
forever. Unprocessed data is never deleted:

* a group's raw files only when its conversion job is done and its MS exists
  and passes `check_ms`;
* a group's MS only when every block window holding it has a ``done`` block
  job that lists the group, and its restored image exists;
* only ``done`` jobs (failed and quarantined ones wait for an operator).

Every deletion is logged, recorded in the ``deletions`` table and counted in
the `MaintenanceReport`. The database is then checkpointed
(``wal_checkpoint(TRUNCATE)``), optimised, and vacuumed every
``retention.vacuum_interval_h``. The work runs on its own connection, so the
stream runs it in a thread off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import shutil
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dsa110_contimg.services._intake import run_off_loop
from dsa110_contimg.services.ms_processor._work import (
    CORRUPT_DIR_NAME,
    SUPERSEDED_DIR_NAME,
    check_ms,
)
from dsa110_contimg.state import open_db
from dsa110_contimg.state import retention as rs
from dsa110_contimg.state.db import to_iso_utc
from dsa110_contimg.state.jobs import (
    PROCESS_BLOCK,
    find_job,
    get_service_state,
    set_service_state,
)
from dsa110_contimg.utils.config import PipelineConfig

__all__ = [
    "MAINTENANCE_STATE",
    "MaintenanceReport",
    "run_maintenance",
    "run_maintenance_task",
]

log = logging.getLogger(__name__)

MAINTENANCE_STATE = "maintenance"
"""``service_state`` name of the last maintenance run (and the last VACUUM)."""

_CORRUPT_STAMP = re.compile(r"\.(\d{8}T\d{6})$")
_SUPERSEDED_STAMP = re.compile(r"^(\d{8}T\d{6})\d*$")
_FIRST_DELAY_S = 60.0


@dataclass
class MaintenanceReport:
    """What one maintenance run deleted (or, dry, would delete).

    Attributes
    ----------
    dry_run : bool
        Nothing was deleted; the counts say what would be.
    counts : dict
        Rows or paths per kind: ``jobs``, ``job_events``, ``block_metrics``,
        ``deletion_records``, ``corrupt``, ``superseded``, ``raw_files``, ``ms``.
    deleted : list of str
        Paths deleted (or that would be).
    kept : dict
        Group id -> why its raw files or MS were kept although old enough.
    checkpoint : tuple of int, optional
        ``wal_checkpoint(TRUNCATE)`` result (busy, log pages, checkpointed).
    vacuumed : bool
        Whether the database was vacuumed.
    duration_s : float
        Wall time of the run (seconds).
    """

    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    kept: dict[str, list[str]] = field(default_factory=dict)
    checkpoint: tuple[int, int, int] | None = None
    vacuumed: bool = False
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """Return the report as a JSON-serialisable dict."""
        return {
            "dry_run": self.dry_run,
            "counts": dict(self.counts),
            "deleted": list(self.deleted),
            "kept": {k: list(v) for k, v in self.kept.items()},
            "checkpoint": None if self.checkpoint is None else list(self.checkpoint),
            "vacuumed": self.vacuumed,
            "duration_s": self.duration_s,
        }


def _size(path: Path) -> int | None:
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return None


class _Pass:
    """One maintenance run's deletions: log, record, count."""

    def __init__(self, conn, report: MaintenanceReport, now: datetime) -> None:
        self.conn = conn
        self.report = report
        self.now = now

    def delete(
        self, kind: str, path: Path, reason: str, group_id: str | None = None
    ) -> None:
        counter = {"raw": "raw_files"}.get(kind, kind)
        self.report.counts[counter] = self.report.counts.get(counter, 0) + 1
        self.report.deleted.append(str(path))
        if self.report.dry_run:
            log.info(
                "retention would delete",
                extra={"kind": kind, "path": str(path), "reason": reason},
            )
            return
        size = _size(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        rs.record_deletion(
            self.conn,
            kind=kind,
            path=str(path),
            reason=reason,
            now=self.now,
            group_id=group_id,
            size_bytes=size,
        )
        log.info(
            "retention deleted",
            extra={"kind": kind, "path": str(path), "reason": reason, "bytes": size},
        )

    def keep(self, group_id: str, why: str) -> None:
        """Note why a group's old raw files or MS were kept."""
        self.report.kept.setdefault(group_id, []).append(why)
        log.info("retention kept", extra={"group_id": group_id, "why": why})

    def mark(self, kind: str, group_id: str, path: str, reason: str) -> None:
        """Record a group as handled without deleting anything (already gone)."""
        if not self.report.dry_run:
            rs.record_deletion(
                self.conn,
                kind=kind,
                path=path,
                reason=reason,
                now=self.now,
                group_id=group_id,
            )


def _stamp_time(name: str, pattern: re.Pattern[str], path: Path) -> datetime:
    match = pattern.search(name)
    if match is not None:
        with contextlib.suppress(ValueError):
            return datetime.strptime(match[1], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return datetime.fromtimestamp(path.lstat().st_mtime, UTC)


def _expire_dir(
    work: _Pass, directory: Path, kind: str, days: float, pattern: re.Pattern[str]
) -> None:
    if days <= 0 or not directory.is_dir():
        return
    cutoff = work.now - timedelta(days=days)
    for path in sorted(directory.iterdir()):
        when = _stamp_time(path.name, pattern, path)
        if when < cutoff:
            work.delete(kind, path, f"set aside {when:%Y-%m-%d}, over {days:g} days")


def _expire_raw(work: _Pass, days: float) -> None:
    if days <= 0:
        return
    for group in rs.groups_for_raw_cleanup(work.conn, work.now - timedelta(days=days)):
        if group.ms_path is None:
            work.keep(group.group_id, "raw files kept: no MS recorded")
            continue
        problem = check_ms(Path(group.ms_path))
        if problem is not None:
            work.keep(group.group_id, f"raw files kept: MS {group.ms_path} {problem}")
            continue
        present = [Path(p) for p in group.files if Path(p).is_file()]
        for path in present:
            work.delete(
                "raw",
                path,
                f"group {group.group_id} converted to valid {group.ms_path}",
                group.group_id,
            )
        if not present:
            work.mark("raw", group.group_id, group.ms_path, "raw files already gone")


def _blocks_done(
    work: _Pass, config: PipelineConfig, group: rs.DoneGroup
) -> str | None:
    """Why the group's MS must stay (a block not done), or None."""
    from dsa110_contimg.products import BlockGrid

    windows = BlockGrid.from_config(config).windows(
        [datetime.fromisoformat(group.data_time_iso)]
    )
    for window in windows:
        job = find_job(work.conn, PROCESS_BLOCK, window.block_id)
        if job is None or job.state != "done":
            state = "not enqueued" if job is None else job.state
            return f"block {window.block_id} is {state}"
        groups = job.payload.get("groups")
        if not isinstance(groups, dict) or group.group_id not in groups:
            return f"block {window.block_id} did not include it"
    return None


def _expire_ms(work: _Pass, config: PipelineConfig, days: float) -> None:
    from dsa110_contimg.products import ImageNames

    if days <= 0:
        return
    for group in rs.groups_for_ms_cleanup(work.conn, work.now - timedelta(days=days)):
        ms = None if group.ms_path is None else Path(group.ms_path)
        if ms is None or not ms.exists():
            work.mark("ms", group.group_id, str(ms), "MS already gone")
            continue
        why = _blocks_done(work, config, group)
        image = ImageNames.for_ms(ms, config.paths.images_dir).image
        if why is None and not image.is_file():
            why = f"its image {image} does not exist"
        if why is not None:
            work.keep(group.group_id, f"MS kept: {why}")
            continue
        work.delete(
            "ms", ms, f"group {group.group_id}: blocks done, imaged", group.group_id
        )


def _vacuum_due(conn, config: PipelineConfig, now: datetime) -> bool:
    hours = config.retention.vacuum_interval_h
    if hours <= 0:
        return False
    last = get_service_state(conn).get(MAINTENANCE_STATE, {}).get("last_vacuum_at")
    if last is None:
        return True
    return now - datetime.fromisoformat(str(last)) >= timedelta(hours=hours)


def run_maintenance(
    config: PipelineConfig,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    vacuum: bool | None = None,
) -> MaintenanceReport:
    """Apply retention once, then checkpoint and optimise the state database.

    Parameters
    ----------
    config : PipelineConfig
        Resolved configuration (``retention``, ``paths``, block timing).
    now : datetime, optional
        Current time (timezone-aware); default the clock.
    dry_run : bool
        Delete nothing; report what would be deleted.
    vacuum : bool, optional
        VACUUM the database; default when ``retention.vacuum_interval_h``
        has passed since the last one.

    Returns
    -------
    MaintenanceReport
    """
    t0 = time.perf_counter()
    now = now or datetime.now(UTC)
    ret, paths = config.retention, config.paths
    report = MaintenanceReport(dry_run=dry_run)
    for name in (
        "jobs",
        "job_events",
        "block_metrics",
        "deletion_records",
        "corrupt",
        "superseded",
        "raw_files",
        "ms",
    ):
        report.counts[name] = 0
    with closing(open_db(config.state_target)) as conn:
        work = _Pass(conn, report, now)
        _expire_raw(work, ret.raw_files_days)
        _expire_ms(work, config, ret.ms_days)
        _expire_dir(
            work,
            Path(paths.ms_stage1_dir) / CORRUPT_DIR_NAME,
            "corrupt",
            ret.corrupt_days,
            _CORRUPT_STAMP,
        )
        _expire_dir(
            work,
            Path(paths.images_dir) / SUPERSEDED_DIR_NAME,
            "superseded",
            ret.superseded_days,
            _SUPERSEDED_STAMP,
        )
        delete = not dry_run
        if ret.jobs_days > 0:
            before = now - timedelta(days=ret.jobs_days)
            n_jobs, n_events = rs.expired_jobs(conn, before, delete=delete)
            report.counts["jobs"], report.counts["job_events"] = n_jobs, n_events
            report.counts["deletion_records"] = rs.expired_deletion_records(
                conn, before, delete=delete
            )
        if ret.block_metrics_days > 0:
            report.counts["block_metrics"] = rs.expired_block_metrics(
                conn, now - timedelta(days=ret.block_metrics_days), delete=delete
            )
        if not dry_run:
            report.checkpoint = rs.checkpoint(conn)
            rs.optimize(conn)
            if vacuum if vacuum is not None else _vacuum_due(conn, config, now):
                rs.vacuum(conn)
                report.vacuumed = True
            state = get_service_state(conn).get(MAINTENANCE_STATE, {})
            last_vacuum = (
                to_iso_utc(now) if report.vacuumed else state.get("last_vacuum_at")
            )
            set_service_state(
                conn,
                MAINTENANCE_STATE,
                {
                    "last_run_at": to_iso_utc(now),
                    "last_vacuum_at": last_vacuum,
                    "counts": report.counts,
                },
                now=now,
            )
    report.duration_s = round(time.perf_counter() - t0, 3)
    log.info(
        "maintenance dry run" if dry_run else "maintenance done",
        extra={
            "counts": report.counts,
            "n_kept": len(report.kept),
            "vacuumed": report.vacuumed,
            "duration_s": report.duration_s,
        },
    )
    return report


async def run_maintenance_task(
    config: PipelineConfig,
    stop: asyncio.Event,
    *,
    clock: Callable[[], datetime],
    first_delay_s: float = _FIRST_DELAY_S,
) -> None:
    """Run `run_maintenance` every ``retention.interval_s`` until ``stop`` is set.

    Each run is in its own daemon thread (`run_off_loop`), so the event loop
    keeps serving heartbeats and signals; a failed run is logged and the next
    one retries.
    """
    delay = min(first_delay_s, config.retention.interval_s)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return
        try:
            await run_off_loop(functools.partial(run_maintenance, config, now=clock()))
        except Exception:
            log.error("maintenance failed; retrying next interval", exc_info=True)
        delay = config.retention.interval_s
