"""The hdf5_watcher service: file-system events and rescans -> conversion jobs.

Watchdog events (file closed, created or moved in) trigger an early scan;
a periodic rescan every ``watcher.scan_interval_s`` catches whatever events
missed (restarts, network filesystems). Each decided group becomes one
``convert_group`` job, enqueued exactly once (the job key is the group id).
No science happens here.

The scan's file-system work (listing, ``stat``, header reads, the free-disk
check) runs in a daemon thread (`run_off_loop`), never on the event loop: a
read that hangs (a stuck mount) makes the scan late, logged after
``io_timeout_s``, while heartbeats and signals go on; no second scan starts
until it returns. A decision is marked only once its job is in the
database: one that fails to enqueue is handed back to the scanner and
decided again at the next scan. Files set aside are recorded in
``rejected_files``; a late subband that a finished group lacks requeues the
group for reconversion (same group id and MS; its images are remade and the
blocks holding it redone); one whose group's job is still pending or running
waits (in memory) and requeues it once the job has finished. The scanner
starts from the groups in the queue and the files their jobs list
(`listed_group_files`), so a subband that arrived while the stream was down
is late as well, and reconverted the same way.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dsa110_contimg.data_ingestion.grouping import RejectedFile, examine_subband_path
from dsa110_contimg.services._intake import DiskStatus, IntakeGate, run_off_loop
from dsa110_contimg.services._runner import JobRunner
from dsa110_contimg.services.hdf5_watcher._scan import GroupDecision, SubbandWatcher
from dsa110_contimg.state.db import to_iso_utc
from dsa110_contimg.state.jobs import (
    CONVERT_GROUP,
    PRIORITY_BACKFILL,
    PRIORITY_LIVE,
    TERMINAL_STATES,
    Job,
    JobSpec,
    find_job,
)
from dsa110_contimg.state.planning import known_group_times, listed_group_files
from dsa110_contimg.state.rejected import (
    record_rejected_files,
    resolve_rejected_files,
)
from dsa110_contimg.utils.config import PipelineConfig

if TYPE_CHECKING:
    pass

__all__ = ["WatcherService", "conversion_spec"]

log = logging.getLogger(__name__)

_MIN_EVENT_GAP_S = 0.5
_Looked = tuple[DiskStatus, list[GroupDecision], list[RejectedFile]]
IO_TIMEOUT_S = 60.0
"""A scan slower than this is logged as stuck (it keeps its thread)."""


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
    io_timeout_s : float
        A scan running longer than this is reported as stuck (seconds).
    """

    def __init__(
        self,
        config: PipelineConfig,
        runner: JobRunner,
        gate: IntakeGate,
        *,
        incoming_dir: Path | None = None,
        io_timeout_s: float = IO_TIMEOUT_S,
    ) -> None:
        self.config = config
        self.runner = runner
        self.gate = gate
        self.io_timeout_s = io_timeout_s
        self._scan_future: asyncio.Future[_Looked] | None = None
        self.incoming_dir = Path(incoming_dir or config.paths.incoming_dir)
        self.scanner = SubbandWatcher(
            self.incoming_dir,
            config.watcher,
            tolerance_s=config.conversion.group_tolerance_s,
            n_expected=config.conversion.expected_n_subbands,
        )
        self.scanner.add_known_groups(
            known_group_times(runner.conn), listed=listed_group_files(runner.conn)
        )
        self._late_waiting: dict[Path, RejectedFile] = {}

    def scan_once(self, now: datetime) -> list[Job]:
        """Update the disk guard, scan once and enqueue what was decided.

        Everything on the calling thread (tests, tools); `run` splits it.
        """
        return self._apply(self._look(now), now)

    def _look(self, now: datetime) -> _Looked:
        """The file-system half of a scan (runs in a worker thread)."""
        status = self.gate.measure()
        if status.is_low or self.gate.held:  # held: read at the last publish
            return status, [], []
        decisions = self.scanner.scan(now)
        return status, decisions, list(self.scanner.rejected)

    def _apply(self, looked: _Looked, now: datetime) -> list[Job]:
        """The database half of a scan (loop thread): enqueue, record."""
        status, decisions, rejected = looked
        self.gate.publish(status, now)
        if rejected:
            try:
                record_rejected_files(self.runner.conn, rejected, now=now)
            except Exception:  # recorded at the next change; logged already
                log.error("recording rejected files failed", exc_info=True)
        for late in (r for r in rejected if r.kind == "late"):
            self._late_waiting[late.path] = late
        by_group: dict[str, list[RejectedFile]] = {}
        for late in self._late_waiting.values():
            by_group.setdefault(str(late.group_id), []).append(late)
        for group_id, lates in by_group.items():
            try:
                outcome = self._reconvert_for(group_id, lates, now)
            except Exception:  # the record stays; tried again at the next scan
                log.error(
                    "automatic reconversion failed",
                    extra={"group": group_id, "paths": [str(r.path) for r in lates]},
                    exc_info=True,
                )
                outcome = "waiting"
            if outcome != "waiting":
                for late in lates:
                    self._late_waiting.pop(late.path, None)
        enqueued = []
        for decision in decisions:
            try:
                job, created = self._enqueue(decision, now)
            except Exception:
                self.scanner.forget(decision)  # decided again at the next scan
                log.error(
                    "enqueue failed; the group is decided again at the next scan",
                    extra={"group": decision.group.group_id},
                    exc_info=True,
                )
                continue
            if created:
                enqueued.append(job)
        return enqueued

    def _reconvert_for(
        self, group_id: str, lates: list[RejectedFile], now: datetime
    ) -> Literal["requeued", "waiting", "ignored"]:
        """Requeue a finished group for reconversion with its late subbands.

        Returns
        -------
        {"requeued", "waiting", "ignored"}
            ``requeued``: the late files bring subbands the group's job lacks
            and the job had finished (done, failed or quarantined): it converts
            again with them, once for all of them. ``waiting``: it lacks them
            but is pending or running (asked again at the next scan).
            ``ignored``: nothing to add (no such job, or its subbands are all
            listed); the record stays for an operator (``requeue
            --reconvert``).
        """
        job = find_job(self.runner.conn, CONVERT_GROUP, group_id)
        if job is None:
            return "ignored"
        files = dict(job.payload.get("files") or {})
        added: dict[str, Path] = {}
        for late in sorted(lates, key=lambda r: r.path):
            parsed = examine_subband_path(late.path, n_expected=self.scanner.n_expected)
            if isinstance(parsed, RejectedFile):
                continue
            key = f"{parsed.subband:02d}"
            if key not in files and key not in added:
                added[key] = late.path
        if not added:
            return "ignored"
        if job.state not in TERMINAL_STATES:
            return "waiting"
        files.update({k: str(p) for k, p in added.items()})
        n_expected = self.scanner.n_expected
        missing = [sb for sb in range(n_expected) if f"{sb:02d}" not in files]
        subbands = ", ".join(f"sb{k}" for k in sorted(added))
        names = ", ".join(p.name for _, p in sorted(added.items()))
        payload = {
            **job.payload,
            "files": dict(sorted(files.items())),
            "missing_subbands": missing,
            "flag_missing": bool(missing),
            "decision": f"reconvert: late subband(s) {subbands} arrived ({names})",
            "reconvert": True,
        }
        self.runner.queue.requeue(
            job.id,
            now=now,
            reason=f"late subband(s) {subbands} arrived: {names}; reconverting",
            payload=payload,
        )
        resolve_rejected_files(self.runner.conn, list(added.values()), now=now)
        log.warning(
            "late subband: group requeued for reconversion",
            extra={"group": group_id, "paths": [str(p) for p in added.values()]},
        )
        self.runner.wake()
        return "requeued"

    def _enqueue(self, decision: GroupDecision, now: datetime) -> tuple[Job, bool]:
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
        return self.runner.enqueue(spec, quarantine_reason=reason)

    async def scan_off_loop(self, now: datetime) -> list[Job]:
        """Scan in a worker thread; enqueue on the loop when it returns.

        A scan still running after ``io_timeout_s`` is logged and left to
        finish (its decisions are enqueued then); no other scan starts
        meanwhile. Returns the jobs enqueued by a scan that finished now.
        """
        if self._scan_future is None:
            future = run_off_loop(self._look, now)
            self._scan_future = future
            started = now
        else:
            future = self._scan_future
            started = None
        try:
            looked = await asyncio.wait_for(
                asyncio.shield(future), timeout=self.io_timeout_s
            )
        except TimeoutError:
            log.error(
                "scan of the incoming directory is stuck (a hung file-system "
                "call); intake waits for it, the stream goes on",
                extra={
                    "incoming_dir": str(self.incoming_dir),
                    "io_timeout_s": self.io_timeout_s,
                    "started": None if started is None else to_iso_utc(started),
                },
            )
            self.gate.mark_stuck(
                f"the scan of {self.incoming_dir} has not returned after "
                f"{self.io_timeout_s:g} s (a hung file-system call: a stuck mount?); "
                "no group is enqueued until it returns",
                self.runner.clock(),
            )
            return []
        finally:
            if future.done():
                self._scan_future = None
        return self._apply(looked, self.runner.clock())

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
                    await self.scan_off_loop(self.runner.clock())
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
