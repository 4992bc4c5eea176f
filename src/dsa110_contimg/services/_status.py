"""A read-only report of the job queue: counts, backlog, quarantine, errors.

Besides the jobs it shows the block windows still waiting to be enqueued
(their groups converting, or ``queue.block_wait_s`` not yet passed) with the
time each will run, the raw files set aside by intake, and ``idle``: true
only when nothing is pending, running or waiting for its window.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from dsa110_contimg.state.db import (
    Connection,
    connect,
    describe_target,
    schema_version,
    to_iso_utc,
)
from dsa110_contimg.state.jobs import (
    CONVERT_GROUP,
    JOB_STATES,
    PROCESS_BLOCK,
    count_jobs,
    count_jobs_by_kind,
    find_job,
    get_service_state,
    latest_data_time,
    list_job_events,
    list_jobs,
    pending_backlog,
)
from dsa110_contimg.state.planning import active_group_rows
from dsa110_contimg.state.rejected import count_rejected_files, list_rejected_files
from dsa110_contimg.tables import JOB_LISTINGS

if TYPE_CHECKING:
    from dsa110_contimg.services.ms_processor._blocks import BlockWindow
    from dsa110_contimg.utils.config import PipelineConfig

__all__ = ["BlockTiming", "queue_status", "read_queue_status"]

_JOBS_SCHEMA_VERSION = 2
_N_LISTED = 20
_RECENT_S = 86400.0


@dataclass(frozen=True, slots=True)
class BlockTiming:
    """How the stream cuts block windows (from the configuration).

    Attributes
    ----------
    anchor : datetime
        ``queue.block_anchor_time`` (UTC).
    duration : timedelta
        ``services.mosaic_duration_min``.
    step : timedelta
        Duration minus ``services.mosaic_overlap_min``.
    wait_s : float
        ``queue.block_wait_s``.
    """

    anchor: datetime
    duration: timedelta
    step: timedelta
    wait_s: float

    @classmethod
    def from_config(cls, config: PipelineConfig) -> BlockTiming:
        """Read the timing from a `PipelineConfig` (the grid is `BlockGrid`'s)."""
        from dsa110_contimg.products import BlockGrid

        grid = BlockGrid.from_config(config)
        return cls(
            grid.anchor, grid.duration, grid.step, float(config.queue.block_wait_s)
        )


def _open_windows(
    conn: Connection, timing: BlockTiming, now: datetime
) -> list[dict[str, object]]:
    """Windows with converted or converting groups and no block job to show yet."""
    from dsa110_contimg.services.ms_processor._blocks import block_windows_containing

    horizon = now - timedelta(seconds=timing.wait_s + _RECENT_S)
    rows = active_group_rows(conn, updated_since=horizon)
    if not rows:
        return []
    latest = datetime.fromisoformat(str(latest_data_time(conn, CONVERT_GROUP)))
    members: dict[BlockWindow, list[tuple[str, datetime | None]]] = {}
    for data_time, state, finished_at in rows:
        t = datetime.fromisoformat(data_time)
        for window in block_windows_containing(
            t, anchor=timing.anchor, duration=timing.duration, step=timing.step
        ):
            members.setdefault(window, []).append(
                (
                    str(state),
                    None
                    if finished_at is None
                    else datetime.fromisoformat(finished_at),
                )
            )
    out = []
    for window in sorted(members):
        if find_job(conn, PROCESS_BLOCK, window.block_id) is not None:
            continue  # enqueued: counted with the jobs (a redo is requeued there)
        group_states = [state for state, _ in members[window]]
        converting = sum(st in ("pending", "running") for st in group_states)
        n_done = sum(st == "done" for st in group_states)
        finished = [f for st, f in members[window] if st == "done" and f is not None]
        if converting:
            runs_at, waits_for = None, f"{converting} group(s) still converting"
        elif not n_done:
            continue  # every group failed or was quarantined: nothing to run
        elif latest >= window.end:
            runs_at, waits_for = now, "ready: data past its end has arrived"
        else:
            runs_at = max(finished) + timedelta(seconds=timing.wait_s)
            waits_for = (
                f"queue.block_wait_s = {timing.wait_s:g} s after its last group "
                "converted (or data past its end)"
            )
        out.append(
            {
                "block_id": window.block_id,
                "start_time_iso": to_iso_utc(window.start),
                "end_time_iso": to_iso_utc(window.end),
                "n_groups": len(group_states),
                "n_converted": n_done,
                "waits_for": waits_for,
                "runs_at": None if runs_at is None else to_iso_utc(max(runs_at, now)),
            }
        )
    return out


def queue_status(
    conn: Connection,
    *,
    now: datetime,
    timing: BlockTiming | None = None,
) -> dict[str, object]:
    """Return the queue report that ``dsa110-contimg status`` prints.

    Parameters
    ----------
    conn : Connection
        Connection to the state database (read-only is fine).
    now : datetime
        Current time, for the backlog's age.
    timing : BlockTiming, optional
        How blocks are cut; without it no ``block_windows`` are reported.

    Returns
    -------
    dict
        ``pending``, ``running``, ``done``, ``failed`` and ``quarantined``
        counts; ``by_kind`` counts; ``backlog`` (pending + running, how many
        are runnable now, the oldest pending data); ``intake`` (paused by the
        disk guard or by an operator's hold, `state.intake`, or not); the
        ``running_jobs``, ``quarantine`` and ``failed_jobs`` lists (up to 20
        each, with reasons and inputs);
        ``last_errors`` (the 10 newest error events); ``block_windows``
        (windows waiting to be enqueued, each with ``waits_for`` and
        ``runs_at``); ``rejected_files`` (``counts`` by kind and the 20
        newest ``files`` with reasons); and ``idle`` (nothing pending,
        running or waiting).
    """
    report: dict[str, object] = dict.fromkeys(JOB_STATES, 0)
    if schema_version(conn) < _JOBS_SCHEMA_VERSION:
        report.update(
            by_kind={},
            backlog={"n_jobs": 0},
            intake={"paused": False},
            running_jobs=[],
            quarantine=[],
            failed_jobs=[],
            last_errors=[],
            block_windows=[],
            rejected_files={"counts": {}, "files": []},
            idle=True,
            note="no job queue yet: start the stream once",
        )
        return report
    counts = count_jobs(conn)
    report.update(counts)
    backlog = pending_backlog(conn, now=now)
    report["by_kind"] = count_jobs_by_kind(conn)
    report["backlog"] = {
        "n_jobs": counts["pending"] + counts["running"],
        "n_runnable_now": backlog.n_runnable,
        "oldest_pending_data_time_iso": backlog.oldest_data_time_iso,
        "oldest_pending_created_at": backlog.oldest_created_at,
    }
    flags = get_service_state(conn)
    intake = dict(flags.get("intake", {"paused": False}))
    hold = flags.get("intake_hold")  # the operator's (state.intake)
    if hold and hold.get("paused"):
        intake.update(paused=True, reason=f"held by an operator: {hold.get('reason')}")
    report["intake"] = intake
    for field, state in (
        ("running_jobs", "running"),
        ("quarantine", "quarantined"),
        ("failed_jobs", "failed"),
    ):
        report[field] = [
            # the columns of dsa110_contimg.tables.JOB_LISTINGS (payload: a dict)
            {c: getattr(j, c.removesuffix("_json")) for c in JOB_LISTINGS[state]}
            for j in list_jobs(conn, states=[state], limit=_N_LISTED)
        ]
    report["last_errors"] = list_job_events(conn, errors_only=True, limit=10)
    windows = [] if timing is None else _open_windows(conn, timing, now)
    report["block_windows"] = windows
    report["rejected_files"] = {
        "counts": count_rejected_files(conn),
        "files": list_rejected_files(conn, limit=_N_LISTED),
    }
    report["idle"] = not (counts["pending"] or counts["running"] or windows)
    return report


def read_queue_status(
    state_db: Path, *, now: datetime, timing: BlockTiming | None = None
) -> dict[str, object]:
    """Open ``state_db`` read-only and return `queue_status` (with its path)."""
    with closing(connect(state_db, readonly=True)) as conn:
        report = queue_status(conn, now=now, timing=timing)
    return {"state_db": describe_target(state_db), **report}
