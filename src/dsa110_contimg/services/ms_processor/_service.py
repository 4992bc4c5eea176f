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
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsa110_contimg.exceptions import (
    InputDataError,
    PipelineError,
    StateError,
)
from dsa110_contimg.pipeline._execution import run_stage
from dsa110_contimg.pipeline.orchestrator import PipelineOrchestrator
from dsa110_contimg.products import BlockGrid
from dsa110_contimg.services._intake import run_off_loop
from dsa110_contimg.services._pool import CapturingExecutor, ExecutorHolder
from dsa110_contimg.services._runner import JobOutcome, JobRunner
from dsa110_contimg.services.ms_processor._blocks import (
    BlockDecision,
    BlockWindow,
    GroupStatus,
    block_windows_containing,
    decide_block,
)
from dsa110_contimg.services.ms_processor._work import check_ms_files, convert_job
from dsa110_contimg.state import jobs, planning, record_group
from dsa110_contimg.state.db import (
    Connection,
    DatabaseError,
    connect,
    database_file,
    to_iso_utc,
)
from dsa110_contimg.state.jobs import (
    CONVERT_GROUP,
    PROCESS_BLOCK,
    UPDATE_VARIABILITY,
    Job,
    JobSpec,
)
from dsa110_contimg.utils.config import PipelineConfig

if TYPE_CHECKING:
    from dsa110_contimg.data_ingestion.skymodel import SkyCatalog

__all__ = ["MsProcessor", "InputsNotReadyError"]

log = logging.getLogger(__name__)

_FULL_PLAN_EVERY_S = 600.0


class InputsNotReadyError(PipelineError):
    """A block's MS is missing or was corrupt; its group is being reconverted."""

    retryable = True


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a planning pass decided: blocks to enqueue, and the new watermark."""

    decisions: tuple[BlockDecision, ...]
    watermark: datetime | None


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
        grid = BlockGrid.from_config(config)  # the one grid, batch's too
        self._duration, self._step, self._anchor = grid.duration, grid.step, grid.anchor
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
        self,
        executor: Executor,
        fn: Callable[..., Any],
        *args: object,
        stage: str | None = None,
        product_id: str = "",
    ) -> Any:
        try:
            if stage is not None:  # a keyed task on the Dask backend
                return await run_stage(executor, stage, product_id, fn, *args)
            loop = asyncio.get_running_loop()
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
                    stage="convert",
                    product_id=f"group_{job.key}",
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
        specs = []
        mentioning = jobs.list_jobs_mentioning(self.runner.conn, PROCESS_BLOCK, job.key)
        for block in mentioning:
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
        return self._apply(self._plan(self.runner.conn, now, full=full), now)

    def _plan(self, conn: Connection, now: datetime, *, full: bool) -> _Plan:
        """Decide the ready windows from the database (reads only).

        A pass looks at the windows of conversion jobs pending, running or
        changed within ``queue.block_wait_s`` + 5 min; a full pass adds those of
        every conversion job since the watermark (data before it lies in
        settled windows: no group converting, and a block job enqueued or no
        group converted), so its cost follows the unsettled windows, not the
        history. A full pass returns the new watermark: the start of its
        earliest unsettled window, else its latest data time.
        """
        horizon = now - timedelta(seconds=self.config.queue.block_wait_s + 300)
        texts = planning.active_group_times(conn, updated_since=horizon)
        if full:
            mark = planning.planner_watermark(conn)
            texts |= planning.group_times_since(
                conn, None if mark is None else mark - self._duration
            )
        latest_text = planning.latest_group_time(conn)
        if latest_text is None or not texts:
            return _Plan((), None)
        latest = datetime.fromisoformat(latest_text)
        times = sorted(datetime.fromisoformat(t) for t in texts)
        windows: set[BlockWindow] = set()
        for t in times:
            windows.update(
                block_windows_containing(
                    t, anchor=self._anchor, duration=self._duration, step=self._step
                )
            )
        decisions, unsettled = [], []
        for window in sorted(windows):
            decision, settled = self._decide(conn, window, latest, now)
            if decision is not None:
                decisions.append(decision)
            elif not settled:
                unsettled.append(window.start)
        watermark = None
        if full:
            watermark = min(unsettled) if unsettled else times[-1]
        return _Plan(tuple(decisions), watermark)

    def _apply(self, plan: _Plan, now: datetime) -> list[Job]:
        enqueued = [self._enqueue_block(d, now) for d in plan.decisions]
        if plan.watermark is not None:
            planning.set_planner_watermark(self.runner.conn, plan.watermark, now=now)
        return enqueued

    def _plan_off_loop(self, db_path: str, now: datetime, full: bool) -> _Plan:
        with contextlib.closing(connect(db_path, readonly=True)) as conn:
            return self._plan(conn, now, full=full)

    def _decide(
        self,
        conn: Connection,
        window: BlockWindow,
        latest: datetime,
        now: datetime,
    ) -> tuple[BlockDecision | None, bool]:
        """The window's decision, and whether it is settled (see `_plan`)."""
        members = [
            GroupStatus(
                row.key,
                datetime.fromisoformat(row.data_time_iso),
                row.state,
                row.ms_path,
                _parse_time(row.finished_at),
                row.priority,
            )
            for row in planning.window_members(conn, window.start, window.end)
        ]
        existing = jobs.find_job(conn, PROCESS_BLOCK, window.block_id)
        groups = None
        if existing is not None:
            raw = existing.payload.get("groups")
            groups = dict(raw) if isinstance(raw, dict) else {}
        decision = decide_block(
            window,
            members,
            latest_data_time=latest,
            now=now,
            wait_s=self.config.queue.block_wait_s,
            existing=groups,
            existing_state=None if existing is None else existing.state,
        )
        converting = any(g.state in ("pending", "running") for g in members)
        converted = any(g.state == "done" and g.ms_path for g in members)
        settled = not converting and (existing is not None or not converted)
        return decision, settled

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
            job = self.runner.queue.requeue(
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
        """Plan blocks every ``queue.poll_interval_s`` until ``stop`` is set.

        The database reads of a pass run in a thread on their own read-only
        connection (the event loop keeps serving heartbeats and signals); only
        the enqueues, a few rows, run on the loop.
        """
        db_path = database_file(self.runner.conn)
        while not stop.is_set():
            now = self.runner.clock()
            full = (
                self._last_full_plan is None
                or (now - self._last_full_plan).total_seconds() >= _FULL_PLAN_EVERY_S
            )
            try:
                plan = None
                if db_path is not None:  # else in memory: one connection only
                    try:
                        plan = await run_off_loop(
                            self._plan_off_loop, db_path, now, full
                        )
                    except (DatabaseError, StateError) as err:
                        log.warning(
                            "planning off the loop failed; planning on it",
                            extra={"error": str(err)},
                        )
                if plan is None:
                    plan = self._plan(self.runner.conn, now, full=full)
                self._apply(plan, now)
                if full:
                    self._last_full_plan = now
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
            self.runner.queue.requeue(
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
