"""Config sections of operations: scheduling, logging, intake, queue, retention."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, field_validator, model_validator

from dsa110_contimg.utils.config._model import FROZEN

__all__ = [
    "ServicesConfig",
    "LoggingConfig",
    "WatcherConfig",
    "QueueConfig",
    "RetentionConfig",
]


class ServicesConfig(BaseModel):
    """Scheduling of the long-running services."""

    model_config = FROZEN

    mosaic_duration_min: float = Field(
        60.0, gt=0, description="Time span covered by one mosaic (minutes)."
    )
    mosaic_overlap_min: float = Field(
        10.0, gt=0, description="Overlap between consecutive mosaics (minutes)."
    )
    ms_chunk_duration_min: float = Field(
        5.0, gt=0, description="Duration of one subband group / MS (minutes)."
    )
    max_concurrent_blocks: int = Field(
        4, ge=1, description="Mosaic blocks processed at the same time (count)."
    )
    max_workers: int = Field(
        2, ge=1, description="Worker processes for CPU-bound work (count)."
    )

    @model_validator(mode="after")
    def _check_overlap(self) -> Self:
        if self.mosaic_overlap_min >= self.mosaic_duration_min:
            msg = (
                f"mosaic_overlap_min ({self.mosaic_overlap_min}) must be smaller "
                f"than mosaic_duration_min ({self.mosaic_duration_min})"
            )
            raise ValueError(msg)
        return self


class LoggingConfig(BaseModel):
    """Log level, format and destination."""

    model_config = FROZEN

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level emitted (level name)."
    )
    format: Literal["console", "json"] = Field(
        "console", description="Readable console lines or JSON lines (choice)."
    )
    file: Path | None = Field(
        None,
        description="Also append JSON log lines to this file; null = "
        "<paths.log_dir>/dsa110-contimg.log for the commands that process data "
        "(path).",
    )


class WatcherConfig(BaseModel):
    """Intake of raw subband files by the hdf5_watcher service."""

    model_config = FROZEN

    scan_interval_s: float = Field(
        10.0,
        gt=0,
        description="Rescan the incoming directory at least this often, whatever "
        "file-system events say (seconds).",
    )
    settle_s: float = Field(
        5.0,
        ge=0,
        description="A file counts as fully written once its size and mtime are "
        "unchanged across two scans at least this far apart (seconds).",
    )
    group_timeout_s: float = Field(
        600.0,
        gt=0,
        description="Stop waiting for a group to complete this long after its "
        "first file was seen; then apply timeout_policy (seconds).",
    )
    timeout_policy: Literal["flag", "quarantine"] = Field(
        "flag",
        description="Timed-out group missing subbands: 'flag' converts it with "
        "the missing channels flagged, 'quarantine' sets it aside for an "
        "operator (choice).",
    )
    use_inotify: bool = Field(
        True,
        description="React to file-system events (watchdog) between rescans (flag).",
    )
    min_free_disk_gb: float = Field(
        20.0,
        ge=0,
        description="Pause intake (new groups and conversions) while a data "
        "filesystem has less free space than this (GB).",
    )


class QueueConfig(BaseModel):
    """Durable job queue of the streaming services (state database)."""

    model_config = FROZEN

    lease_s: float = Field(
        120.0,
        gt=0,
        description="A running job whose worker sent no heartbeat for this long "
        "is given to another worker (seconds).",
    )
    heartbeat_interval_s: float = Field(
        15.0, gt=0, description="Workers renew their leases this often (seconds)."
    )
    max_attempts: int = Field(
        5,
        ge=1,
        description="Attempts of a job with retryable errors before it is "
        "marked failed (count).",
    )
    backoff_base_s: float = Field(
        30.0,
        ge=0,
        description="Delay before the first retry; doubles with each attempt "
        "(seconds).",
    )
    backoff_max_s: float = Field(
        1800.0, ge=0, description="Longest delay between retries (seconds)."
    )
    poll_interval_s: float = Field(
        2.0, gt=0, description="Idle workers look for new jobs this often (seconds)."
    )
    live_window_s: float = Field(
        3600.0,
        ge=0,
        description="Data younger than this is live and runs before backfill "
        "(seconds).",
    )
    block_wait_s: float = Field(
        900.0,
        ge=0,
        description="Process a block window this long after its last group "
        "converted even if no later data has arrived (seconds).",
    )
    block_anchor_time: str = Field(
        "2000-01-01T00:00:00",
        description="Block windows start at this time plus multiples of "
        "mosaic_duration_min - mosaic_overlap_min, ISO 8601 (UTC timestamp).",
    )
    shutdown_grace_s: float = Field(
        60.0,
        ge=0,
        description="On SIGTERM/SIGINT, running jobs may finish for this long "
        "before they are stopped and released (seconds).",
    )
    pool_recycle_jobs: int = Field(
        50,
        ge=0,
        description="Start fresh worker processes after this many jobs, bounding "
        "memory that libraries leak over long runs; 0 = never (count).",
    )
    backend: Literal["sqlite", "redis"] = Field(
        "sqlite",
        description="Delivery of jobs to workers: 'sqlite' polls the state "
        "database; 'redis' delivers through Redis Streams (consumer groups) at "
        "redis_url. The state database keeps every job's record either way.",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis server of queue.backend 'redis' (redis:// URL).",
    )
    redis_prefix: str = Field(
        "dsa110",
        min_length=1,
        description="Prefix of the queue's Redis keys (streams, sets); one per "
        "pipeline instance sharing a Redis server.",
    )
    redis_max_deliveries: int = Field(
        10,
        ge=1,
        description="A stream entry delivered this often without its job "
        "finishing moves to the dead-letter stream and the job is quarantined "
        "(count).",
    )

    @field_validator("block_anchor_time")
    @classmethod
    def _check_anchor(cls, value: str) -> str:
        parsed = datetime.fromisoformat(value)
        offset = parsed.utcoffset()
        if offset is not None and offset != timedelta(0):
            msg = f"block_anchor_time must be UTC, got offset {offset} in {value!r}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _check_heartbeat(self) -> Self:
        if self.heartbeat_interval_s >= self.lease_s:
            msg = (
                f"heartbeat_interval_s ({self.heartbeat_interval_s}) must be "
                f"smaller than lease_s ({self.lease_s})"
            )
            raise ValueError(msg)
        if self.backoff_max_s < self.backoff_base_s:
            msg = (
                f"backoff_max_s ({self.backoff_max_s}) must not be smaller than "
                f"backoff_base_s ({self.backoff_base_s})"
            )
            raise ValueError(msg)
        return self


class RetentionConfig(BaseModel):
    """What the periodic maintenance deletes, and when (0 = keep forever).

    Unprocessed data is never deleted: a raw file only once its group's
    conversion job is done and its MS exists and is valid, an MS only once
    every block window holding it is done and its image exists. Failed and
    quarantined jobs are kept for an operator whatever their age.
    """

    model_config = FROZEN

    jobs_days: float = Field(
        90.0,
        ge=0,
        description="Delete done jobs (and their job_events) finished longer ago "
        "than this; 0 = keep forever (days).",
    )
    block_metrics_days: float = Field(
        90.0,
        ge=0,
        description="Delete block_metrics rows older than this; 0 = keep forever "
        "(days).",
    )
    corrupt_days: float = Field(
        30.0,
        ge=0,
        description="Delete corrupt MSs set aside under <ms_stage1_dir>/corrupt/ "
        "longer ago than this; 0 = keep forever (days).",
    )
    superseded_days: float = Field(
        30.0,
        ge=0,
        description="Delete images set aside under <images_dir>/superseded/ by a "
        "reconversion longer ago than this; 0 = keep forever (days).",
    )
    raw_files_days: float = Field(
        0.0,
        ge=0,
        description="Delete a group's raw subband files this long after its "
        "conversion finished, if its MS exists and is valid; 0 = keep forever "
        "(days).",
    )
    ms_days: float = Field(
        0.0,
        ge=0,
        description="Delete a group's MS this long after its conversion finished, "
        "if every block holding it is done and its image exists; 0 = keep "
        "forever (days).",
    )
    interval_s: float = Field(
        3600.0,
        gt=0,
        description="The stream applies retention and checkpoints the state "
        "database this often (seconds).",
    )
    vacuum_interval_h: float = Field(
        168.0,
        ge=0,
        description="VACUUM the state database at most this often during "
        "maintenance; 0 = never (hours).",
    )

    @model_validator(mode="after")
    def _check_order(self) -> Self:
        for name in ("raw_files_days", "ms_days"):
            days = getattr(self, name)
            if days > 0 and self.jobs_days > 0 and days > self.jobs_days:
                msg = (
                    f"retention.{name} ({days:g}) must not exceed retention.jobs_days "
                    f"({self.jobs_days:g}): the done conversion job says which files "
                    "are safe to delete; raise jobs_days or lower it"
                )
                raise ValueError(msg)
        if 0 < self.ms_days < self.raw_files_days:
            msg = (
                f"retention.raw_files_days ({self.raw_files_days:g}) must not exceed "
                f"retention.ms_days ({self.ms_days:g}): raw files are deleted only "
                "while their valid MS exists; lower raw_files_days or raise ms_days"
            )
            raise ValueError(msg)
        return self
