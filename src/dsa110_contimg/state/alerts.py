"""The alert engine's state: tracked alerts and silences (Alembic revision 0010).

`services.alerts` decides; this module only stores. An alert is identified
by its fingerprint (a hash of its name and labels). A silence mutes the
alerts of one name whose labels include all of its matchers, until it
expires or is removed (``dsa110-contimg alerts unsilence``). The reads are
SQLAlchemy Core (`state._core.Query`), the writes too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from dsa110_contimg.exceptions import StateError
from dsa110_contimg.state import schema_core as t
from dsa110_contimg.state._core import Query, params_of, upsert
from dsa110_contimg.state.db import Connection, to_iso_utc

__all__ = [
    "Silence",
    "TrackedAlert",
    "add_silence",
    "alert_fingerprint",
    "delete_tracked_alert",
    "list_silences",
    "list_tracked_alerts",
    "remove_silence",
    "upsert_tracked_alert",
]


def alert_fingerprint(alertname: str, labels: Mapping[str, str]) -> str:
    """Return a stable 16-hex-digit identity of an alert (name and labels)."""
    text = json.dumps({"alertname": alertname, **labels}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class TrackedAlert:
    """One row of ``alert_state``: an alert whose condition holds.

    Attributes
    ----------
    fingerprint : str
        `alert_fingerprint` of name and labels.
    alertname : str
        The rule's ``alert`` name.
    labels : dict
        The instance's labels (without ``alertname`` and ``severity``).
    state : {"pending", "firing"}
        Pending until the rule's ``for:`` has passed.
    value : float or None
        The figure that crossed the threshold, at the last evaluation.
    active_since : str
        When the condition was first seen true (UTC ISO).
    fired_at : str or None
        When it became firing.
    notified_at : str or None
        When its firing message was sent (None while silenced or pending).
    """

    fingerprint: str
    alertname: str
    labels: dict[str, str]
    state: str
    value: float | None
    active_since: str
    fired_at: str | None
    notified_at: str | None


@dataclass(frozen=True, slots=True)
class Silence:
    """One row of ``alert_silences``."""

    id: int
    alertname: str
    matchers: dict[str, str]
    comment: str
    created_by: str
    created_at: str
    expires_at: str
    removed_at: str | None

    def matches(self, alertname: str, labels: Mapping[str, str]) -> bool:
        """Whether this silence mutes the alert ``alertname`` with ``labels``."""
        if self.alertname not in ("*", alertname):
            return False
        return all(labels.get(k) == v for k, v in self.matchers.items())

    def is_active(self, now: datetime) -> bool:
        """Whether it is neither removed nor expired at ``now``."""
        return self.removed_at is None and self.expires_at > to_iso_utc(now)


_TRACKED = Query(
    sa.select(*(c for c in t.alert_state.c if c.name != "updated_at")).order_by(
        t.alert_state.c.alertname, t.alert_state.c.fingerprint
    )
)
_SILENCES = sa.select(t.alert_silences).order_by(t.alert_silences.c.id)
_ALL_SILENCES = Query(_SILENCES)
_SILENCE = Query(_SILENCES.where(t.alert_silences.c.id == sa.bindparam("id")))
_ALERT_COLUMNS = (
    "fingerprint",
    "alertname",
    "labels_json",
    "state",
    "value",
    "active_since",
    "fired_at",
    "notified_at",
    "updated_at",
)
_UPSERT_ALERT = Query(
    upsert(
        t.alert_state,
        _ALERT_COLUMNS,
        ("fingerprint",),
        ("state", "value", "fired_at", "notified_at", "updated_at"),
    )
)
_DELETE_ALERT = Query(
    sa.delete(t.alert_state).where(
        t.alert_state.c.fingerprint == sa.bindparam("fingerprint")
    )
)
_SILENCE_COLUMNS = (
    "alertname",
    "matchers_json",
    "comment",
    "created_by",
    "created_at",
    "expires_at",
)
_ADD_SILENCE = Query(
    sa.insert(t.alert_silences)
    .values(params_of(_SILENCE_COLUMNS))
    .returning(t.alert_silences.c.id)
)
_REMOVE_SILENCE = Query(
    sa.update(t.alert_silences)
    .where(
        t.alert_silences.c.id == sa.bindparam("silence_id"),
        t.alert_silences.c.removed_at.is_(None),
    )
    .values(removed_at=sa.bindparam("now"))
)


def list_tracked_alerts(conn: Connection) -> list[TrackedAlert]:
    """Return every tracked alert, by name then fingerprint."""
    rows = _TRACKED.execute(conn).fetchall()
    return [
        TrackedAlert(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], r[6], r[7])
        for r in rows
    ]


def upsert_tracked_alert(
    conn: Connection, alert: TrackedAlert, *, now: datetime
) -> None:
    """Insert or replace one tracked alert (its own transaction)."""
    row = (
        alert.fingerprint,
        alert.alertname,
        json.dumps(alert.labels, sort_keys=True),
        alert.state,
        alert.value,
        alert.active_since,
        alert.fired_at,
        alert.notified_at,
        to_iso_utc(now),
    )
    with conn:
        _UPSERT_ALERT.execute(conn, dict(zip(_ALERT_COLUMNS, row, strict=True)))


def delete_tracked_alert(conn: Connection, fingerprint: str) -> None:
    """Forget an alert whose condition cleared."""
    with conn:
        _DELETE_ALERT.execute(conn, {"fingerprint": fingerprint})


def add_silence(
    conn: Connection,
    alertname: str,
    *,
    matchers: Mapping[str, str],
    comment: str,
    created_by: str,
    now: datetime,
    expires_at: datetime,
) -> Silence:
    """Store a silence and return it.

    Raises
    ------
    ValueError
        If it expires at or before ``now``, or ``alertname`` is empty.
    """
    if not alertname:
        msg = "a silence needs an alert name (or '*' for every alert)"
        raise ValueError(msg)
    if expires_at <= now:
        msg = f"silence expiry {expires_at.isoformat()} is not after now"
        raise ValueError(msg)
    with conn:
        row = (
            alertname,
            json.dumps(dict(matchers), sort_keys=True),
            comment,
            created_by,
            to_iso_utc(now),
            to_iso_utc(expires_at),
        )
        params = dict(zip(_SILENCE_COLUMNS, row, strict=True))
        (silence_id,) = _ADD_SILENCE.execute(conn, params).fetchone()
    return _silence(conn, int(silence_id))


def _silence(conn: Connection, silence_id: int) -> Silence:
    row = _SILENCE.execute(conn, {"id": silence_id}).fetchone()
    if row is None:
        msg = (
            f"no silence with id {silence_id}; list them with "
            "'dsa110-contimg alerts list'"
        )
        raise StateError(msg)
    return _row_to_silence(row)


def _row_to_silence(row) -> Silence:
    return Silence(
        int(row[0]), row[1], json.loads(row[2]), row[3], row[4], row[5], row[6], row[7]
    )


def remove_silence(conn: Connection, silence_id: int, *, now: datetime) -> Silence:
    """End a silence now; `StateError` when no silence has that id."""
    _silence(conn, silence_id)
    with conn:
        _REMOVE_SILENCE.execute(
            conn, {"now": to_iso_utc(now), "silence_id": silence_id}
        )
    return _silence(conn, silence_id)


def list_silences(conn: Connection, *, now: datetime | None = None) -> list[Silence]:
    """Return the silences, oldest first; only those active at ``now`` if given."""
    silences = [_row_to_silence(r) for r in _ALL_SILENCES.execute(conn).fetchall()]
    if now is None:
        return silences
    return [s for s in silences if s.is_active(now)]
