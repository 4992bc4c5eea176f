"""Where alert messages go: the log, and webhooks (Alertmanager-style JSON).

Each firing or resolved transition is one `Notification`; `deliver` logs it
and POSTs it to every configured webhook with a timeout and retries, in the
JSON shape of Alertmanager's webhook receiver (``version: "4"``), so any
receiver written for Alertmanager accepts it.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Notification", "WebhookSender", "deliver"]

log = logging.getLogger(__name__)

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class Notification:
    """One alert message.

    Attributes
    ----------
    status : {"firing", "resolved"}
        Which transition.
    alertname, severity : str
        The rule's name and severity.
    labels : dict
        All labels (``alertname`` and ``severity`` included).
    annotations : dict
        Rendered ``summary``, ``description``...
    value : float
        The figure that crossed the threshold (last seen, for resolved).
    starts_at : str
        When the condition began (UTC ISO).
    ends_at : str or None
        When it cleared (resolved only).
    fingerprint : str
        Identity of the alert (name and labels).
    """

    status: str
    alertname: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    value: float
    starts_at: str
    ends_at: str | None
    fingerprint: str

    def to_payload(self) -> dict[str, object]:
        """Return the Alertmanager-webhook JSON body of this message."""
        alert = {
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at,
            "endsAt": self.ends_at or _ZERO_TIME,
            "generatorURL": "",
            "fingerprint": self.fingerprint,
            "value": self.value,
        }
        return {
            "version": "4",
            "receiver": "dsa110-contimg",
            "status": self.status,
            "groupKey": self.fingerprint,
            "truncatedAlerts": 0,
            "groupLabels": {"alertname": self.alertname},
            "commonLabels": self.labels,
            "commonAnnotations": self.annotations,
            "externalURL": "",
            "alerts": [alert],
        }


@dataclass
class WebhookSender:
    """POST messages to webhooks, with a timeout and retries.

    Parameters
    ----------
    urls : sequence of str
        Receivers (``alerts.webhooks``).
    timeout_s : float
        Timeout of each request (s).
    retries : int
        Further tries after a failure (connection error, timeout, non-2xx).
    retry_delay_s : float
        Delay before the first retry; doubles with each (s).
    sleep : callable
        ``time.sleep`` (replaced in tests).
    """

    urls: Sequence[str]
    timeout_s: float = 5.0
    retries: int = 2
    retry_delay_s: float = 1.0
    sleep: Callable[[float], None] = field(default=time.sleep)

    def _opener(self, url: str) -> urllib.request.OpenerDirector:
        host = urllib.parse.urlsplit(url).hostname or ""
        if host in _LOOPBACK:  # never through a proxy from the environment
            return urllib.request.build_opener(urllib.request.ProxyHandler({}))
        return urllib.request.build_opener()

    def post(self, url: str, body: bytes) -> bool:
        """POST ``body`` to ``url``; return whether a 2xx answer came back."""
        request = urllib.request.Request(
            url,
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        delay = self.retry_delay_s
        for attempt in range(self.retries + 1):
            try:
                with self._opener(url).open(request, timeout=self.timeout_s) as answer:
                    if 200 <= answer.status < 300:
                        return True
                    problem = f"HTTP {answer.status}"
            except urllib.error.HTTPError as err:
                problem = f"HTTP {err.code}"
            except (urllib.error.URLError, OSError, TimeoutError) as err:
                problem = str(getattr(err, "reason", err))
            log.warning(
                "alert webhook failed",
                extra={"url": url, "attempt": attempt + 1, "error": problem},
            )
            if attempt < self.retries:
                self.sleep(delay)
                delay *= 2
        log.error(
            "alert webhook gave up",
            extra={"url": url, "attempts": self.retries + 1},
        )
        return False

    def send(self, notification: Notification) -> dict[str, bool]:
        """POST one message to every URL; return ``{url: delivered}``."""
        body = json.dumps(notification.to_payload(), sort_keys=True).encode("utf-8")
        return {url: self.post(url, body) for url in self.urls}


def deliver(
    notifications: Sequence[Notification], sender: WebhookSender | None
) -> list[dict[str, bool]]:
    """Log each message, then send it to the webhooks (if any)."""
    results = []
    for n in notifications:
        if n.status == "firing":
            level = logging.ERROR if n.severity == "critical" else logging.WARNING
        else:
            level = logging.INFO
        log.log(
            level,
            f"alert {n.status}",
            extra={
                "alert": n.alertname,
                "summary": n.annotations.get("summary", ""),
                "alert_status": n.status,
                "severity": n.severity,
                "labels": n.labels,
                "value": n.value,
                "fingerprint": n.fingerprint,
            },
        )
        results.append({} if sender is None else sender.send(n))
    return results
