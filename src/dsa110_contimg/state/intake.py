"""The operator's hold on intake (pause / resume), a service flag.

An operator pauses intake (``POST /api/actions/intake/pause`` or
``dsa110-contimg intake pause``) by storing the ``intake_hold`` flag in the
``service_state`` table; the streaming services' intake gate reads it at every
scan and, while it is set, enqueues no new groups and starts no conversion,
exactly as the free-disk guard does. Resuming clears it.
"""

from __future__ import annotations

import json
from datetime import datetime

import sqlalchemy as sa

from dsa110_contimg.state import schema_core as core
from dsa110_contimg.state._core import Query
from dsa110_contimg.state.db import Connection
from dsa110_contimg.state.jobs.transitions import set_service_state

__all__ = ["INTAKE_HOLD", "intake_hold", "set_intake_hold"]

INTAKE_HOLD = "intake_hold"
"""Name of the service flag of the operator's hold."""

_S = core.service_state
_HOLD = Query(
    sa.select(_S.c.value_json, _S.c.updated_at).where(_S.c.name == sa.bindparam("name"))
)


def set_intake_hold(
    conn: Connection,
    *,
    paused: bool,
    reason: str,
    now: datetime,
    by: str = "operator",
) -> dict[str, object]:
    """Pause (``paused=True``) or resume intake; return the stored flag.

    Parameters
    ----------
    conn : Connection
        Writable, migrated state database.
    paused : bool
        True to hold intake, False to release the hold.
    reason : str
        Why (shown by ``status`` and the API).
    now : datetime
        Timezone-aware time of the change.
    by : str
        Who asked (e.g. ``"api:127.0.0.1"``).
    """
    value = {"paused": bool(paused), "reason": str(reason), "by": str(by)}
    set_service_state(conn, INTAKE_HOLD, value, now=now)
    return value


def intake_hold(conn: Connection) -> dict[str, object] | None:
    """Return the operator's hold flag (with ``updated_at``), or None if never set."""
    row = _HOLD.execute(conn, {"name": INTAKE_HOLD}).fetchone()
    if row is None:
        return None
    return {**json.loads(str(row[0])), "updated_at": row[1]}
