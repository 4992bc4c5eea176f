"""Evaluate the alert rules against the figures: pending, firing, resolved.

Each evaluation (`AlertEngine.evaluate`) computes the instances whose
condition holds and moves the alerts tracked in the state database:

* a new instance is *pending* from that moment; once its condition has held
  for the rule's ``for:`` it is *firing* and one firing message is sent;
* a firing alert sends nothing more while it stays firing (de-duplication,
  across restarts too: the state is in the database);
* when the condition clears, a pending alert is forgotten and a firing one
  sends one resolved message (if its firing message was sent);
* an alert matched by an active silence fires without a message; if it is
  still firing when the silence expires or is removed, the firing message is
  sent then.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from dsa110_contimg.services.alerts._figures import Figures
from dsa110_contimg.services.alerts._notify import Notification
from dsa110_contimg.services.alerts._rules import AlertRule
from dsa110_contimg.state.alerts import (
    Silence,
    TrackedAlert,
    alert_fingerprint,
    delete_tracked_alert,
    list_silences,
    list_tracked_alerts,
    upsert_tracked_alert,
)
from dsa110_contimg.state.db import Connection, to_iso_utc

__all__ = ["AlertEngine", "Evaluation", "render_template"]

_VALUE = re.compile(r"\{\{\s*\$value\s*(?:\|\s*([a-zA-Z]+)\s*)?\}\}")
_LABEL = re.compile(r"\{\{\s*\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
_BIG = ("k", "M", "G", "T", "P", "E", "Z", "Y")
_SMALL = ("m", "u", "n", "p", "f", "a", "z", "y")


def _go_float(value: float) -> str:
    # Go's %v of a float64, what Prometheus prints for a bare {{ $value }}
    if math.isnan(value) or math.isinf(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _scaled(value: float) -> tuple[float, str]:
    prefix = ""
    if abs(value) >= 1:
        for p in _BIG:
            if abs(value) < 1000:
                break
            prefix, value = p, value / 1000
    else:
        for p in _SMALL:
            if abs(value) >= 1:
                break
            prefix, value = p, value * 1000
    return value, prefix


def _humanize(value: float) -> str:
    if value == 0 or math.isnan(value) or math.isinf(value):
        return f"{value:.4g}"
    scaled, prefix = _scaled(value)
    return f"{scaled:.4g}{prefix}"


def _humanize_duration(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return f"{value:.4g}"
    if value == 0:
        return f"{value:.4g}s"
    if abs(value) < 1:
        scaled, prefix = _scaled(value)
        return f"{scaled:.4g}{prefix}s"
    sign, value = ("-", -value) if value < 0 else ("", value)
    total = int(value)
    days, hours = total // 86400, total // 3600 % 24
    minutes, seconds = total // 60 % 60, total % 60
    if days:
        return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
    if hours:
        return f"{sign}{hours}h {minutes}m {seconds}s"
    if minutes:
        return f"{sign}{minutes}m {seconds}s"
    return f"{sign}{value:.4g}s"


_FUNCTIONS = {
    None: _go_float,
    "humanize": _humanize,
    "humanizePercentage": lambda v: f"{v * 100:.4g}%",
    "humanizeDuration": _humanize_duration,
}


def render_template(text: str, labels: dict[str, str], value: float) -> str:
    """Fill an annotation as Prometheus does, for the forms the rules use.

    ``{{ $labels.NAME }}``, ``{{ $value }}`` and ``{{ $value | F }}`` with F
    one of ``humanize``, ``humanizePercentage``, ``humanizeDuration``.

    Raises
    ------
    ValueError
        For another template function.
    """

    def fill(match: re.Match[str]) -> str:
        function = _FUNCTIONS.get(match[1])
        if function is None:
            msg = f"annotation template function {match[1]!r} is not supported"
            raise ValueError(msg)
        return function(float(value))

    text = _VALUE.sub(fill, text)
    return _LABEL.sub(lambda m: labels.get(m[1], ""), text)


@dataclass
class Evaluation:
    """What one evaluation found and sent.

    Attributes
    ----------
    firing, pending : list of TrackedAlert
        The alerts in each state after it.
    silenced : list of str
        Fingerprints of firing alerts muted by a silence.
    notifications : list of Notification
        The messages it sent (firing and resolved).
    """

    firing: list[TrackedAlert] = field(default_factory=list)
    pending: list[TrackedAlert] = field(default_factory=list)
    silenced: list[str] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Seen:
    """An instance whose condition holds at this evaluation."""

    fingerprint: str
    labels: dict[str, str]
    value: float
    stamp: str
    now: datetime


class AlertEngine:
    """Track the alerts of ``rules`` in the state database and notify.

    Parameters
    ----------
    rules : sequence of AlertRule
        From `load_rules`.
    notify : callable
        Receives each evaluation's list of `Notification` (log, webhooks).
    """

    def __init__(
        self,
        rules: Sequence[AlertRule],
        notify: Callable[[list[Notification]], object],
    ) -> None:
        self.rules = list(rules)
        self._notify = notify

    def _message(
        self,
        rule: AlertRule,
        status: str,
        alert: TrackedAlert,
        *,
        ends_at: str | None = None,
    ) -> Notification:
        labels = {"alertname": rule.name, **alert.labels}
        value = float(alert.value or 0.0)
        annotations = {
            k: render_template(v, labels, value) for k, v in rule.annotations.items()
        }
        return Notification(
            status,
            rule.name,
            rule.severity,
            labels,
            annotations,
            value,
            alert.active_since,
            ends_at,
            alert.fingerprint,
        )

    def evaluate(
        self, conn: Connection, figures: Figures, *, now: datetime
    ) -> Evaluation:
        """Evaluate every rule at ``now``, store the alerts, send the messages.

        Parameters
        ----------
        conn : Connection
            Writable, migrated state database.
        figures : Figures
            From `collect_figures` at ``now``.
        now : datetime
            Time of this evaluation (timezone-aware).
        """
        stamp = to_iso_utc(now)
        tracked = {a.fingerprint: a for a in list_tracked_alerts(conn)}
        silences = list_silences(conn, now=now)
        result = Evaluation()
        seen: set[str] = set()
        by_name = {rule.name: rule for rule in self.rules}
        for rule in self.rules:
            for instance_labels, value in rule.instances(figures):
                labels = {**instance_labels, **rule.labels}
                fp = alert_fingerprint(rule.name, labels)
                seen.add(fp)
                alert = self._advance(
                    rule,
                    tracked.get(fp),
                    _Seen(fp, labels, value, stamp, now),
                    silences=silences,
                    result=result,
                )
                upsert_tracked_alert(conn, alert, now=now)
                (result.firing if alert.state == "firing" else result.pending).append(
                    alert
                )
        for fp, old in tracked.items():
            if fp in seen:
                continue
            rule = by_name.get(old.alertname)
            if old.state == "firing" and old.notified_at is not None and rule:
                result.notifications.append(
                    self._message(rule, "resolved", old, ends_at=stamp)
                )
            delete_tracked_alert(conn, fp)
        if result.notifications:
            self._notify(result.notifications)
        return result

    def _advance(
        self,
        rule: AlertRule,
        old: TrackedAlert | None,
        seen: _Seen,
        *,
        silences: list[Silence],
        result: Evaluation,
    ) -> TrackedAlert:
        """Move one instance on: pending -> firing after ``for:``; notify once."""
        stamp = seen.stamp
        active_since = stamp if old is None else old.active_since
        fired_at = None if old is None else old.fired_at
        notified_at = None if old is None else old.notified_at
        if fired_at is None:
            started = datetime.fromisoformat(active_since)
            if (seen.now - started).total_seconds() >= rule.for_s:
                fired_at = stamp
        muted = any(s.matches(rule.name, seen.labels) for s in silences)
        send = fired_at is not None and notified_at is None and not muted
        if fired_at is not None and muted:
            result.silenced.append(seen.fingerprint)
        if send:
            notified_at = stamp
        alert = TrackedAlert(
            seen.fingerprint,
            rule.name,
            seen.labels,
            "pending" if fired_at is None else "firing",
            seen.value,
            active_since,
            fired_at,
            notified_at,
        )
        if send:
            result.notifications.append(self._message(rule, "firing", alert))
        return alert
