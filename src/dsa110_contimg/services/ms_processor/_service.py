"""The ms_processor service: conversion jobs, block planning and block jobs.

Conversion jobs run `convert_job` in the process pool. A planner looks at the
conversion jobs, and when a block window is ready (`decide_block`) enqueues
its ``process_block`` job, which runs the block through
`PipelineOrchestrator.process_block`; when the block is done its photometry
table is handed to the variability analyzer in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsa110_contimg.pipeline.exceptions import (
    InputDataError,
    PipelineError,
    StateError,
)
from dsa110_contimg.pipeline.orchestrator import PipelineOrchestrator
from dsa110_contimg.services._pool import CapturingExecutor, ExecutorHolder
from dsa110_contimg.services._runner import JobOutcome, JobRunner
from dsa110_contimg.services._single import service_runner
from dsa110_contimg.services.ms_processor._blocks import (
    BlockDecision,
    BlockWindow,
    GroupStatus,
    block_windows_containing,
    decide_block,
)
from dsa110_contimg.services.ms_processor._work import check_ms_files, convert_job
from dsa110_contimg.state import jobs, record_group
from dsa110_contimg.state.db import to_iso_utc
from dsa110_contimg.state.jobs import (
    CONVERT_GROUP,
    PROCESS_BLOCK,
    UPDATE_VARIABILITY,
    Job,
    JobSpec,
)
from dsa110_contimg.utils.config_loader import PipelineConfig

if TYPE_CHECKING:
    from dsa110_contimg.data_ingestion.skymodel import SkyCatalog

__all__ = ["MsProcessor", "InputsNotReadyError", "run"]

log = logging.getLogger(__name__)

_FULL_PLAN_EVERY_S = 600.0


class InputsNotReadyError(PipelineError):
    """A block's MS is missing or was corrupt; its group is being reconverted."""

    retryable = True


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class MsProcessor:
    """Convert groups and process blocks from the job queue.

    Parameters
    ----------
    config : PipelineConfig
        Resolved configuration.
    runner : JobRunner
        The process's job runner (lanes are added by `register`).
    executors : ExecutorHolder
        Where conversion and imaging run.
    catalog : SkyCatalog, optional
        Sources to measure on each image.
    can_convert : callable, optional
        Returns False while intake is paused (no conversion starts).
    """

    def __init__(
        self,
        config: PipelineConfig,
        runner: JobRunner,
        executors: ExecutorHolder,
        *,
        catalog: SkyCatalog | None = None,
        can_convert: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.runner = runner
        self.executors = executors
        self.catalog = catalog
        self._can_convert = can_convert or (lambda: True)
        svc = config.services
        self._duration = timedelta(minutes=svc.mosaic_duration_min)
        self._step = timedelta(minutes=svc.mosaic_duration_min - svc.mosaic_overlap_min)
        self._anchor = datetime.fromisoformat(config.queue.block_anchor_time).replace(
            tzinfo=UTC
        )
        self._last_full_plan: datetime | None = None

    def register(self) -> None:
        """Add the conversion and block lanes to the runner."""
        svc = self.config.services
        self.runner.add_lane(
            "convert",
            [CONVERT_GROUP],
            self.convert,
            concurrency=svc.max_workers,
            can_claim=self._can_convert,
        )
        self.runner.add_lane(
            "block",
            [PROCESS_BLOCK],
            self.process,
            concurrency=svc.max_concurrent_blocks,
        )

    async def _in_pool(
        self, executor: Executor, fn: Callable[..., Any], *args: object
    ) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, fn, *args)
        except Exception as err:
            self.executors.replace_if_broken(err)
            raise

    # -- conversion -------------------------------------------------------------
    async def convert(self, job: Job) -> JobOutcome:
        """Run one ``convert_group`` job."""
        try:
            with self.executors.lease() as executor:
                result = await self._in_pool(
                    executor,
                    convert_job,
                    dict(job.payload),
                    self.config.conversion,
                    str(self.config.paths.ms_stage1_dir),
                    str(self.config.paths.images_dir),
                )
        except PipelineError as err:
            if not err.retryable:
                self._record_group(job, None, "quarantined", err)
            elif job.attempts >= job.max_attempts:
                self._record_group(job, None, "failed", err)
            raise
        if result.get("replaced_corrupt_ms"):
            log.warning(
                "existing ms was corrupt and was reconverted",
                extra={"moved_to": result["replaced_corrupt_ms"]},
            )
        self._record_group(job, str(result["ms_path"]), "converted", None)
        return JobOutcome(result=result, follow_ups=self._blocks_to_redo(job))

    def _blocks_to_redo(self, job: Job) -> tuple[JobSpec, ...]:
        """The finished blocks holding a reconverted group (redone with it)."""
        if not job.payload.get("reconvert"):
            return ()
        rows = self.runner.conn.execute(
            "SELECT id FROM jobs WHERE kind = ? AND payload_json LIKE ?",
            (PROCESS_BLOCK, f'%"{job.key}"%'),
        ).fetchall()
        specs = []
        for (block_id,) in rows:
            block = jobs.get_job(self.runner.conn, block_id)
            groups = block.payload.get("groups")
            if not isinstance(groups, dict) or job.key not in groups:
                continue
            payload = {
                **block.payload,
                "reason": f"group {job.key} reconverted (late subband)",
            }
            specs.append(
                JobSpec(
                    PROCESS_BLOCK,
                    block.key,
                    block.data_time_iso,
                    payload,
                    block.priority,
                )
            )
        return tuple(specs)

    def _record_group(
        self, job: Job, ms_path: str | None, status: str, err: Exception | None
    ) -> None:
        files = job.payload.get("files") or {}
        record_group(
            self.runner.conn,
            group_id=job.key,
            start_time_iso=str(job.payload.get("start_time_iso", job.data_time_iso)),
            n_subbands=len(files) if isinstance(files, dict) else 0,
            ms_path=ms_path,
            status=status,
            error_class=None if err is None else type(err).__name__,
            error_message=None if err is None else str(err)[:2000],
        )

    # -- block planning -----------------------------------------------------------
    def plan_blocks(self, now: datetime, *, full: bool = False) -> list[Job]:
        """Enqueue (or redo) every block window that is ready; return those jobs."""
        conn = self.runner.conn
        sql = "SELECT DISTINCT data_time_iso FROM jobs WHERE kind = ?"
        params: list[object] = [CONVERT_GROUP]
        if not full:
            horizon = now - timedelta(seconds=self.config.queue.block_wait_s + 300)
            sql += " AND (state IN ('pending', 'running') OR updated_at >= ?)"
            params.append(to_iso_utc(horizon))
        times = [datetime.fromisoformat(r[0]) for r in conn.execute(sql, params)]
        latest = conn.execute(
            "SELECT MAX(data_time_iso) FROM jobs WHERE kind = ?", (CONVERT_GROUP,)
        ).fetchone()[0]
        if latest is None:
            return []
        windows: set[BlockWindow] = set()
        for t in times:
            windows.update(
                block_windows_containing(
                    t, anchor=self._anchor, duration=self._duration, step=self._step
                )
            )
        enqueued = []
        for window in sorted(windows):
            decision = self._decide(window, datetime.fromisoformat(latest), now)
            if decision is not None:
                enqueued.append(self._enqueue_block(decision, now))
        return enqueued

    def _decide(
        self, window: BlockWindow, latest: datetime, now: datetime
    ) -> BlockDecision | None:
        rows = self.runner.conn.execute(
            "SELECT id FROM jobs WHERE kind = ? AND data_time_iso >= ? "
            "AND data_time_iso < ? ORDER BY data_time_iso",
            (CONVERT_GROUP, to_iso_utc(window.start), to_iso_utc(window.end)),
        ).fetchall()
        members = []
        for (job_id,) in rows:
            job = jobs.get_job(self.runner.conn, job_id)
            ms_path = (job.result or {}).get("ms_path")
            members.append(
                GroupStatus(
                    job.key,
                    datetime.fromisoformat(job.data_time_iso),
                    job.state,
                    None if ms_path is None else str(ms_path),
                    _parse_time(job.finished_at),
                    job.priority,
                )
            )
        existing = jobs.find_job(self.runner.conn, PROCESS_BLOCK, window.block_id)
        groups = None
        if existing is not None:
            raw = existing.payload.get("groups")
            groups = dict(raw) if isinstance(raw, dict) else {}
        return decide_block(
            window,
            members,
            latest_data_time=latest,
            now=now,
            wait_s=self.config.queue.block_wait_s,
            existing=groups,
            existing_state=None if existing is None else existing.state,
        )

    def _enqueue_block(self, decision: BlockDecision, now: datetime) -> Job:
        window = decision.window
        payload: dict[str, object] = {
            "block_id": window.block_id,
            "start_time_iso": to_iso_utc(window.start),
            "end_time_iso": to_iso_utc(window.end),
            "groups": decision.groups,
            "ms_files": sorted(decision.groups.values()),
            "reason": decision.reason,
        }
        if decision.is_update:
            existing = jobs.find_job(self.runner.conn, PROCESS_BLOCK, window.block_id)
            if existing is None:
                msg = f"block {window.block_id} to redo has no job"
                raise StateError(msg)
            job = jobs.requeue_job(
                self.runner.conn,
                existing.id,
                now=now,
                reason=decision.reason,
                payload=payload,
            )
            log.info("block requeued", extra={"block_id": window.block_id})
            self.runner.wake()
            return job
        spec = JobSpec(
            PROCESS_BLOCK,
            window.block_id,
            to_iso_utc(window.end),
            payload,
            decision.priority,
        )
        job, _ = self.runner.enqueue(spec)
        return job

    async def run_planner(self, stop: asyncio.Event) -> None:
        """Plan blocks every ``queue.poll_interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            now = self.runner.clock()
            full = (
                self._last_full_plan is None
                or (now - self._last_full_plan).total_seconds() >= _FULL_PLAN_EVERY_S
            )
            if full:
                self._last_full_plan = now
            try:
                self.plan_blocks(now, full=full)
            except Exception:  # keep planning: the next pass retries
                log.error("block planning failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.queue.poll_interval_s)

    # -- block processing -------------------------------------------------------
    async def process(self, job: Job) -> JobOutcome:
        """Run one ``process_block`` job through the orchestrator."""
        payload = job.payload
        groups = payload.get("groups")
        if not isinstance(groups, dict) or not groups:
            msg = f"block job {job.id} ({job.key}) lists no groups; requeue it"
            raise InputDataError(msg)
        ms_files = sorted(str(p) for p in groups.values())
        with self.executors.lease() as executor:
            problems = await self._in_pool(executor, check_ms_files, ms_files)
            if problems:
                self._reconvert(job, groups, problems)
                detail = "; ".join(
                    f"{Path(ms).name} {why}" for ms, why in problems.items()
                )
                msg = f"block {job.key}: {detail}; their groups are being reconverted"
                raise InputsNotReadyError(msg)
            capture = CapturingExecutor(executor)
            orchestrator = PipelineOrchestrator(
                self.config, catalog=self.catalog, executor=capture
            )
            block = orchestrator.create_processing_block(
                str(payload["end_time_iso"]).replace("+00:00", ""), ms_files
            )
            result = await orchestrator.process_block(block)
        if not result.success:
            raise self._block_error(job, result.errors, capture.errors)
        photometry = result.output_files.get("photometry", [])
        follow_ups = tuple(
            JobSpec(
                UPDATE_VARIABILITY,
                job.key,
                job.data_time_iso,
                {"block_id": job.key, "photometry_path": path},
                job.priority,
            )
            for path in photometry[:1]
        )
        return JobOutcome(
            result={
                "block_id": result.block_id,
                "n_ms": len(ms_files),
                "images": result.output_files.get("image", []),
                "photometry": photometry,
                "processing_time_s": round(result.processing_time, 3),
            },
            follow_ups=follow_ups,
        )

    def _reconvert(
        self, job: Job, groups: dict[str, object], problems: dict[str, str]
    ) -> None:
        by_ms = {str(ms): gid for gid, ms in groups.items()}
        for ms, problem in problems.items():
            conversion = jobs.find_job(self.runner.conn, CONVERT_GROUP, by_ms[ms])
            if conversion is None or conversion.state != "done":
                continue
            jobs.requeue_job(
                self.runner.conn,
                conversion.id,
                now=self.runner.clock(),
                reason=f"block {job.key}: MS {ms} {problem}",
            )
            log.warning("group requeued for reconversion", extra={"ms": ms})
        self.runner.wake()

    def _block_error(
        self,
        job: Job,
        messages: list[str],
        errors: dict[str, BaseException],
    ) -> Exception:
        for err in errors.values():
            self.executors.replace_if_broken(err)
        retryable = [e for e in errors.values() if jobs.is_retryable(e)]
        if retryable:
            return (
                retryable[0]
                if isinstance(retryable[0], Exception)
                else (RuntimeError(str(retryable[0])))
            )
        detail = "; ".join(messages) or "no image was made"
        msg = f"block {job.key} failed: {detail}"
        return InputDataError(msg)


run = service_runner("ms_processor")
