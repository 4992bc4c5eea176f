"""Queries of the block planner (services/ms_processor): which conversion jobs
to look at, and the members of one block window.

Every query here is answered from an index (``idx_jobs_claim``,
``idx_jobs_kind_updated``, ``idx_jobs_kind_time``), so a planning pass costs
what the recent and not-yet-settled windows hold, not what the whole history
holds. The planner's watermark (data older than it lies in settled windows)
is kept in ``service_state`` under `PLANNER_STATE`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from dsa110_contimg.state import schema_core as core
from dsa110_contimg.state._core import Query, const
from dsa110_contimg.state.db import Connection, to_iso_utc
from dsa110_contimg.state.jobs import (
    CONVERT_GROUP,
    get_service_state,
    set_service_state,
)

__all__ = [
    "PLANNER_STATE",
    "MemberRow",
    "active_group_rows",
    "active_group_times",
    "group_times_since",
    "latest_group_time",
    "window_members",
    "planner_watermark",
    "set_planner_watermark",
    "known_group_times",
    "listed_group_files",
]

PLANNER_STATE = "block_planner"
"""``service_state`` name of the planner's watermark."""


_J = core.jobs
_KIND = _J.c.kind == sa.bindparam("kind")


def _active(*columns: sa.ColumnElement) -> Query:
    """``columns`` of the conversion jobs pending or running, or changed since."""
    return Query(
        sa.union(
            sa.select(*columns).where(
                _J.c.state.in_([const("pending"), const("running")]), _KIND
            ),
            sa.select(*columns).where(_KIND, _J.c.updated_at >= sa.bindparam("since")),
        )
    )


_ACTIVE_TIMES = _active(_J.c.data_time_iso)
_ACTIVE_ROWS = _active(_J.c.id, _J.c.data_time_iso, _J.c.state, _J.c.finished_at)
_TIMES = Query(sa.select(_J.c.data_time_iso).where(_KIND))
_TIMES_SINCE = Query(
    sa.select(_J.c.data_time_iso).where(
        _KIND, _J.c.data_time_iso >= sa.bindparam("since")
    )
)
_LATEST = Query(sa.select(sa.func.max(_J.c.data_time_iso)).where(_KIND))
_WINDOW = Query(
    sa.select(
        _J.c.key,
        _J.c.data_time_iso,
        _J.c.state,
        _J.c.result_json,
        _J.c.finished_at,
        _J.c.priority,
    )
    .where(
        _KIND,
        _J.c.data_time_iso >= sa.bindparam("start"),
        _J.c.data_time_iso < sa.bindparam("end"),
    )
    .order_by(_J.c.data_time_iso)
)
_KNOWN_TIMES = Query(
    sa.union(
        sa.select(_J.c.data_time_iso).where(_KIND),
        sa.select(core.groups.c.start_time_iso),
    )
)
_LISTED = Query(sa.select(_J.c.data_time_iso, _J.c.payload_json).where(_KIND))


@dataclass(frozen=True, slots=True)
class MemberRow:
    """A conversion job as one block window sees it."""

    key: str
    data_time_iso: str
    state: str
    ms_path: str | None
    finished_at: str | None
    priority: int


def active_group_times(conn: Connection, *, updated_since: datetime) -> set[str]:
    """Data times of conversion jobs pending or running, or changed since a time."""
    params = {"kind": CONVERT_GROUP, "since": to_iso_utc(updated_since)}
    rows = _ACTIVE_TIMES.execute(conn, params)
    return {str(r[0]) for r in rows}


def active_group_rows(
    conn: Connection, *, updated_since: datetime
) -> list[tuple[str, str, str | None]]:
    """(data time, state, finished_at) of the conversion jobs `active_group_times`
    selects, from the same indexes."""
    params = {"kind": CONVERT_GROUP, "since": to_iso_utc(updated_since)}
    rows = _ACTIVE_ROWS.execute(conn, params)
    return [(str(r[1]), str(r[2]), None if r[3] is None else str(r[3])) for r in rows]


def group_times_since(conn: Connection, since: datetime | None) -> set[str]:
    """Data times of conversion jobs at or after ``since`` (all when None)."""
    if since is None:
        rows = _TIMES.execute(conn, {"kind": CONVERT_GROUP})
    else:
        params = {"kind": CONVERT_GROUP, "since": to_iso_utc(since)}
        rows = _TIMES_SINCE.execute(conn, params)
    return {str(r[0]) for r in rows}


def latest_group_time(conn: Connection) -> str | None:
    """The latest conversion job's data time (ISO), or None when there is none."""
    row = _LATEST.execute(conn, {"kind": CONVERT_GROUP}).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def window_members(conn: Connection, start: datetime, end: datetime) -> list[MemberRow]:
    """Conversion jobs whose data time lies in ``[start, end)``, oldest first."""
    params = {"kind": CONVERT_GROUP, "start": to_iso_utc(start), "end": to_iso_utc(end)}
    rows = _WINDOW.execute(conn, params).fetchall()
    out = []
    for key, data_time, state, result_json, finished_at, priority in rows:
        result = json.loads(result_json) if result_json else {}
        ms_path = result.get("ms_path") if isinstance(result, dict) else None
        out.append(
            MemberRow(
                str(key),
                str(data_time),
                str(state),
                None if ms_path is None else str(ms_path),
                None if finished_at is None else str(finished_at),
                int(priority),
            )
        )
    return out


def planner_watermark(conn: Connection) -> datetime | None:
    """Data time before which every block window is settled (None: not known yet)."""
    value = get_service_state(conn).get(PLANNER_STATE, {}).get("settled_before_iso")
    return None if value is None else datetime.fromisoformat(str(value))


def set_planner_watermark(
    conn: Connection, settled_before: datetime, *, now: datetime
) -> None:
    """Store the planner's watermark (see `planner_watermark`)."""
    set_service_state(
        conn,
        PLANNER_STATE,
        {"settled_before_iso": to_iso_utc(settled_before)},
        now=now,
    )


def known_group_times(conn: Connection) -> list[datetime]:
    """Start times of every group the queue has seen: conversion jobs and the
    ``groups`` table (which keeps a row after retention deleted the job), so the
    watcher never decides a group twice."""
    rows = _KNOWN_TIMES.execute(conn, {"kind": CONVERT_GROUP})
    return sorted({datetime.fromisoformat(str(r[0])) for r in rows})


def listed_group_files(conn: Connection) -> dict[datetime, frozenset[str]]:
    """Names of the raw files each conversion job lists, by group start time.

    The ``files`` and ``duplicates`` of every ``convert_group`` job's payload
    (file names, not paths, so a restart with the incoming directory spelled
    another way lists the same files). The watcher compares them with the
    directory after a restart: a file of a decided group that its job does
    not list arrived while the stream was down (a late subband).
    """
    rows = _LISTED.execute(conn, {"kind": CONVERT_GROUP})
    out: dict[datetime, frozenset[str]] = {}
    for stamp, payload_json in rows:
        try:
            payload = json.loads(str(payload_json or "{}"))
        except ValueError:
            continue  # unreadable payload: the group's files stay the baseline
        files = payload.get("files") if isinstance(payload, dict) else None
        if not isinstance(files, dict):
            continue
        names = [*files.values(), *(payload.get("duplicates") or [])]
        out[datetime.fromisoformat(str(stamp))] = frozenset(
            str(n).rsplit("/", 1)[-1] for n in names
        )
    return out
