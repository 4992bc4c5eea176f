"""The hdf5_watcher service: file-system events and rescans -> conversion jobs.

Watchdog events (file closed, created or moved in) trigger an early scan;
a periodic rescan every ``watcher.scan_interval_s`` catches whatever events
missed (restarts, network filesystems). Each decided group becomes one
``convert_group`` job, enqueued exactly once (the job key is the group id).
No science happens here.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dsa110_contimg.services._intake import IntakeGate
from dsa110_contimg.services._runner import JobRunner
from dsa110_contimg.services._single import service_runner
from dsa110_contimg.services.hdf5_watcher._scan import GroupDecision, SubbandWatcher
from dsa110_contimg.state.db import to_iso_utc
from dsa110_contimg.state.jobs import (
    CONVERT_GROUP,
    PRIORITY_BACKFILL,
    PRIORITY_LIVE,
    Job,
    JobSpec,
    list_jobs,
)
from dsa110_contimg.utils.config_loader import PipelineConfig

if TYPE_CHECKING:
    pass

__all__ = ["WatcherService", "conversion_spec", "run"]

log = logging.getLogger(__name__)

_MIN_EVENT_GAP_S = 0.5


def conversion_spec(
    decision: GroupDecision, *, now: datetime, live_window_s: float
) -> JobSpec:
    """Return the ``convert_group`` job of a decided group.

    Its payload lists the group's files by subband, what is missing, and
    whether the missing subbands are to be flagged; data younger than
    ``live_window_s`` gets `PRIORITY_LIVE`.
    """
    group = decision.group
    age_s = (now - group.start_time).total_seconds()
    payload: dict[str, object] = {
        "group_id": group.group_id,
        "start_time_iso": to_iso_utc(group.start_time),
        "files": {f"{sb:02d}": str(p) for sb, p in sorted(group.files.items())},
        "missing_subbands": list(group.missing_subbands),
        "duplicates": [str(p) for p in group.duplicates],
        "flag_missing": bool(group.missing_subbands) and not decision.is_complete,
        "decision": decision.reason,
        "first_seen_at": to_iso_utc(decision.first_seen_at),
    }
    return JobSpec(
        CONVERT_GROUP,
        group.group_id,
        to_iso_utc(group.start_time),
        payload,
        PRIORITY_LIVE if age_s <= live_window_s else PRIORITY_BACKFILL,
    )


class _EventBridge:
    """Watchdog handler that asks the event loop for an early scan."""

    def __init__(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        self._loop = loop
        self._event = event

    def dispatch(self, event: object) -> None:
        kind = getattr(event, "event_type", "")
        if kind in ("closed", "created", "moved") and not getattr(
            event, "is_directory", False
        ):
            self._loop.call_soon_threadsafe(self._event.set)


class WatcherService:
    """Watch the incoming directory and enqueue conversion jobs.

    Parameters
    ----------
    config : PipelineConfig
        Resolved configuration (``watcher``, ``conversion``, ``queue``).
    runner : JobRunner
        Enqueues the jobs (the process's single writer).
    gate : IntakeGate
        Free-disk guard; no group is enqueued while it is closed.
    incoming_dir : Path, optional
        Directory to watch; default ``paths.incoming_dir``.
    """

    def __init__(
        self,
        config: PipelineConfig,
        runner: JobRunner,
        gate: IntakeGate,
        *,
        incoming_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.runner = runner
        self.gate = gate
        self.incoming_dir = Path(incoming_dir or config.paths.incoming_dir)
        self.scanner = SubbandWatcher(
            self.incoming_dir,
            config.watcher,
            tolerance_s=config.conversion.group_tolerance_s,
            n_expected=config.conversion.expected_n_subbands,
        )
        known = [
            datetime.fromisoformat(job.data_time_iso)
            for job in list_jobs(runner.conn, kinds=[CONVERT_GROUP])
        ]
        self.scanner.add_known_groups(known)

    def scan_once(self, now: datetime) -> list[Job]:
        """Update the disk guard, scan once and enqueue what was decided."""
        self.gate.update(now)
        if not self.gate.is_open:
            return []
        enqueued = []
        for decision in self.scanner.scan(now):
            spec = conversion_spec(
                decision, now=now, live_window_s=self.config.queue.live_window_s
            )
            reason = None
            if decision.action == "quarantine":
                reason = (
                    f"group {decision.group.group_id}: {decision.reason}; "
                    "watcher.timeout_policy is 'quarantine' (requeue after the "
                    "files arrive, or set it to 'flag')"
                )
            job, created = self.runner.enqueue(spec, quarantine_reason=reason)
            if created:
                enqueued.append(job)
        return enqueued

    def _start_observer(self, wake: asyncio.Event) -> object | None:
        if not self.config.watcher.use_inotify:
            return None
        try:
            from watchdog.observers import Observer
        except ImportError:
            log.info("watchdog not installed; rescans only")
            return None
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        observer = Observer()
        observer.schedule(
            _EventBridge(asyncio.get_running_loop(), wake),
            str(self.incoming_dir),
            recursive=False,
        )
        observer.daemon = True
        observer.start()
        return observer

    async def run(self, stop: asyncio.Event) -> None:
        """Scan on events and every ``scan_interval_s`` until ``stop`` is set."""
        wake = asyncio.Event()
        observer = self._start_observer(wake)
        log.info(
            "watcher start",
            extra={"incoming_dir": str(self.incoming_dir), "events": bool(observer)},
        )
        cfg = self.config.watcher
        try:
            while not stop.is_set():
                try:
                    self.scan_once(self.runner.clock())
                except Exception:  # keep watching: the next scan retries
                    log.error("scan failed", exc_info=True)
                wake.clear()
                # while groups wait to settle, rescan soon: events stop once
                # their files are written, but stability needs a second look
                interval_s = cfg.scan_interval_s
                if self.scanner.n_waiting:
                    interval_s = min(interval_s, max(cfg.settle_s, _MIN_EVENT_GAP_S))
                stopper = asyncio.ensure_future(stop.wait())
                waker = asyncio.ensure_future(wake.wait())
                await asyncio.wait(
                    [stopper, waker],
                    timeout=interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                stopper.cancel()
                waker.cancel()
                if wake.is_set() and not stop.is_set():  # let a burst settle
                    await asyncio.sleep(min(_MIN_EVENT_GAP_S, cfg.scan_interval_s))
        finally:
            if observer is not None:
                observer.stop()  # type: ignore[attr-defined]
                observer.join(timeout=5)  # type: ignore[attr-defined]
            log.info("watcher stopped")


run = service_runner("hdf5_watcher")
