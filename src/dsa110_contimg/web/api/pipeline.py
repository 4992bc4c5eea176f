"""Operator endpoints: health, figures, queue, jobs, quarantine, intake."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from dsa110_contimg.state.browse import (
    list_job_events_page,
    list_jobs_page,
    list_rejected_page,
)
from dsa110_contimg.state.figures import Figures, backlog_series, compute_figures
from dsa110_contimg.state.intake import intake_hold
from dsa110_contimg.state.jobs import (
    count_jobs_by_kind,
    get_job,
    get_service_state,
    pending_backlog,
)
from dsa110_contimg.state.jobs.model import Job
from dsa110_contimg.web.api._common import (
    Context,
    Paging,
    listing,
    require_job,
)
from dsa110_contimg.web.models import (
    BacklogPoint,
    DiskModel,
    HealthReport,
    IntakeModel,
    JobEventModel,
    JobModel,
    Page,
    QueueModel,
    RejectedFileModel,
)

__all__ = ["router", "job_body", "intake_status"]

router = APIRouter(tags=["pipeline"])

JobState = Literal["pending", "running", "done", "failed", "quarantined"]
JobKind = Literal["convert_group", "process_block", "update_variability"]
WindowH = Annotated[
    float | None,
    Query(
        gt=0, le=24 * 365, description="Window (hours); default web.figures_window_h."
    ),
]


def job_body(job: Job) -> dict[str, object]:
    """Return a job as the `JobModel` fields."""
    return job.to_dict()


def intake_status(conn) -> dict[str, object]:
    """Return the `IntakeModel` body from the service flags."""
    disk = get_service_state(conn).get("intake", {"paused": False})
    hold = intake_hold(conn)
    held = bool(hold and hold.get("paused"))
    return {"open": not held and not disk.get("paused"), "disk": disk, "hold": hold}


@router.get("/health", response_model=HealthReport)
def health(ctx: Context) -> dict[str, object]:
    """Run every `HealthChecker` check (directories, disk, WSClean, CASA data, DB)."""
    from dsa110_contimg.services.health import HealthChecker

    checker = HealthChecker(min_free_disk_gb=ctx.config.watcher.min_free_disk_gb)
    checks = checker.check_all_health(ctx.config)
    order = {"healthy": 0, "warning": 1, "unhealthy": 2}
    worst = max((c.status for c in checks), key=order.__getitem__, default="healthy")
    return {
        "status": worst,
        "checks": [
            {
                "name": c.name,
                "status": c.status,
                "error_message": c.error_message,
                "details": c.details,
            }
            for c in checks
        ],
    }


@router.get("/metrics", response_model=Figures)
def metrics(ctx: Context, window_h: WindowH = None) -> Figures:
    """The figures of the last ``window_h`` hours (`state.figures`).

    Success rate and processing time per stage, real-time factor, backlog,
    ingest vs processed rate, ingest lag, failures by class, calibration age
    per strip, image rms vs thermal.
    """
    hours = window_h or ctx.config.web.figures_window_h
    with ctx.read() as conn:
        return compute_figures(
            conn,
            now=ctx.clock(),
            window_h=hours,
            group_duration_s=ctx.config.services.ms_chunk_duration_min * 60.0,
        )


@router.get("/metrics/backlog", response_model=list[BacklogPoint])
def backlog_over_time(
    ctx: Context,
    window_h: WindowH = None,
    points: Annotated[int, Query(ge=2, le=1000, description="Samples.")] = 60,
) -> list[dict[str, object]]:
    """The backlog (jobs queued, not finished) at ``points`` times over the window."""
    hours = window_h or ctx.config.web.figures_window_h
    now = ctx.clock()
    with ctx.read() as conn:
        return backlog_series(
            conn, start=now - timedelta(hours=hours), end=now, n_points=points
        )


@router.get("/queue", response_model=QueueModel)
def queue(ctx: Context) -> dict[str, object]:
    """Jobs by kind and state, the runnable backlog and the intake state."""
    with ctx.read() as conn:
        backlog = pending_backlog(conn, now=ctx.clock())
        return {
            "by_kind": count_jobs_by_kind(conn),
            "backlog": {
                "n_runnable": backlog.n_runnable,
                "oldest_data_time_iso": backlog.oldest_data_time_iso,
                "oldest_created_at": backlog.oldest_created_at,
            },
            "intake": intake_status(conn),
        }


@router.get("/jobs", response_model=Page[JobModel])
def jobs(
    ctx: Context,
    paging: Paging,
    state: Annotated[
        list[JobState] | None, Query(description="Only these states.")
    ] = None,
    kind: Annotated[
        list[JobKind] | None, Query(description="Only these kinds.")
    ] = None,
) -> dict[str, object]:
    """Jobs of the queue, newest first."""
    return listing(
        ctx, paging, list_jobs_page, job_body, keyset=True, states=state, kinds=kind
    )


@router.get("/jobs/{job_id}", response_model=JobModel)
def job(ctx: Context, job_id: int) -> dict[str, object]:
    """One job by id."""
    with ctx.read() as conn:
        require_job(conn, job_id)
        return job_body(get_job(conn, job_id))


@router.get("/jobs/{job_id}/events", response_model=Page[JobEventModel])
def job_events(ctx: Context, job_id: int, paging: Paging) -> dict[str, object]:
    """The state changes of one job, newest first."""
    with ctx.read() as conn:
        require_job(conn, job_id)
    return listing(ctx, paging, list_job_events_page, keyset=True, job_id=job_id)


@router.get("/events", response_model=Page[JobEventModel])
def events(
    ctx: Context,
    paging: Paging,
    errors_only: Annotated[bool, Query(description="Only failures.")] = False,
) -> dict[str, object]:
    """Job events of every job, newest first (failures with their reasons)."""
    return listing(
        ctx, paging, list_job_events_page, keyset=True, errors_only=errors_only
    )


@router.get("/quarantine", response_model=Page[JobModel])
def quarantine(ctx: Context, paging: Paging) -> dict[str, object]:
    """Quarantined jobs (set aside for an operator), newest first."""
    return jobs(ctx, paging, state=["quarantined"], kind=None)


@router.get("/failures", response_model=Page[JobModel])
def failures(ctx: Context, paging: Paging) -> dict[str, object]:
    """Jobs waiting for an operator, newest first: failed and quarantined ones.

    Each with its error class and message (the dashboard's failures table,
    with a requeue button per job); ``/api/quarantine`` lists the
    quarantined ones alone.
    """
    return jobs(ctx, paging, state=["failed", "quarantined"], kind=None)


@router.get("/rejected", response_model=Page[RejectedFileModel])
def rejected(
    ctx: Context,
    paging: Paging,
    include_resolved: Annotated[bool, Query(description="Also resolved ones.")] = False,
) -> dict[str, object]:
    """Raw files set aside by intake (bad names, duplicates, late subbands...)."""
    return listing(ctx, paging, list_rejected_page, include_resolved=include_resolved)


@router.get("/intake", response_model=IntakeModel)
def intake(ctx: Context) -> dict[str, object]:
    """Whether intake runs: the disk guard's flag and the operator's hold."""
    with ctx.read() as conn:
        return intake_status(conn)


def _disk(directory) -> dict[str, object]:
    import shutil
    from pathlib import Path

    from dsa110_contimg.services._intake import nearest_existing

    exists = Path(directory).exists()
    try:
        usage = shutil.disk_usage(nearest_existing(Path(directory)))
    except OSError:
        return {
            "directory": str(directory),
            "exists": exists,
            "total_bytes": None,
            "used_bytes": None,
            "free_bytes": None,
            "free_fraction": None,
        }
    return {
        "directory": str(directory),
        "exists": exists,
        "total_bytes": usage.total,
        "used_bytes": usage.used,
        "free_bytes": usage.free,
        "free_fraction": usage.free / usage.total if usage.total else None,
    }


@router.get("/disk", response_model=list[DiskModel])
def disk(ctx: Context) -> list[dict[str, object]]:
    """Disk use of each data directory (a missing one: its nearest parent's)."""
    from dsa110_contimg.web.context import data_directories

    dirs = [
        *data_directories(ctx.config),
        ctx.config.paths.incoming_dir,
        ctx.config.paths.log_dir,
    ]
    seen: dict[str, None] = {}
    for d in dirs:
        seen.setdefault(str(d), None)
    return [_disk(d) for d in seen]
