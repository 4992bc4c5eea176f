"""Config section of the in-process alert engine (``services.alerts``)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from dsa110_contimg.utils.config._model import FROZEN

__all__ = ["AlertsConfig", "parse_window_utc"]

_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def parse_window_utc(text: str) -> tuple[int, int]:
    """Return a daily ``"HH:MM-HH:MM"`` UTC window as (start, end) minutes of day.

    An end before the start wraps past midnight (``"22:00-04:00"``).

    Raises
    ------
    ValueError
        If ``text`` is not ``HH:MM-HH:MM`` or the window is empty.
    """
    match = _WINDOW.match(text.strip())
    if match is None:
        msg = f"observing window {text!r} must be 'HH:MM-HH:MM' (UTC)"
        raise ValueError(msg)
    start = int(match[1]) * 60 + int(match[2])
    end = int(match[3]) * 60 + int(match[4])
    if start == end or end > 24 * 60:
        msg = f"observing window {text!r} is empty or ends after 24:00"
        raise ValueError(msg)
    return start, end


class AlertsConfig(BaseModel):
    """Alert rules evaluated inside the stream, and where their messages go."""

    model_config = FROZEN

    enabled: bool = Field(
        True, description="Evaluate the alert rules inside the stream (flag)."
    )
    interval_s: float = Field(
        60.0, gt=0, description="Evaluate the rules this often (seconds)."
    )
    rules_path: Path | None = Field(
        None,
        description="Prometheus rule file to evaluate; null = the shipped "
        "monitoring/alerts.yml (path).",
    )
    webhooks: list[str] = Field(
        default_factory=list,
        description="URLs that receive each firing and resolved message as an "
        "HTTP POST of Alertmanager-style JSON (URLs).",
    )
    webhook_timeout_s: float = Field(
        5.0, gt=0, description="Timeout of one webhook request (seconds)."
    )
    webhook_retries: int = Field(
        2, ge=0, description="Retries of a failed webhook request (count)."
    )
    webhook_retry_delay_s: float = Field(
        1.0,
        ge=0,
        description="Delay before the first retry; doubles with each (seconds).",
    )
    observing_windows_utc: list[str] = Field(
        default_factory=list,
        description="Daily 'HH:MM-HH:MM' UTC windows in which data must arrive "
        "(the no-data alert); empty = always observing (list of windows).",
    )

    @field_validator("webhooks")
    @classmethod
    def _check_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                msg = f"alerts.webhooks: {url!r} must be an http:// or https:// URL"
                raise ValueError(msg)
        return urls

    @field_validator("observing_windows_utc")
    @classmethod
    def _check_windows(cls, windows: list[str]) -> list[str]:
        for window in windows:
            parse_window_utc(window)
        return windows
