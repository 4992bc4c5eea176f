"""Run the alert engine once (``dsa110-contimg alerts evaluate``) or periodically
inside the stream (`run_alerts_task`, next to the maintenance task).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from dsa110_contimg.services._intake import run_off_loop
from dsa110_contimg.services.alerts._engine import AlertEngine, Evaluation
from dsa110_contimg.services.alerts._figures import DiskUsage, collect_figures
from dsa110_contimg.services.alerts._notify import WebhookSender, deliver
from dsa110_contimg.services.alerts._rules import load_rules
from dsa110_contimg.state import open_db
from dsa110_contimg.utils.config import PipelineConfig

__all__ = ["build_engine", "evaluate_alerts", "run_alerts_task"]

log = logging.getLogger(__name__)


def build_engine(config: PipelineConfig) -> AlertEngine:
    """Load the rules of ``alerts.rules_path`` and wire the log and webhooks.

    Raises
    ------
    ConfigError
        The rule file is invalid (see `load_rules`).
    """
    cfg = config.alerts
    sender = (
        WebhookSender(
            list(cfg.webhooks),
            timeout_s=cfg.webhook_timeout_s,
            retries=cfg.webhook_retries,
            retry_delay_s=cfg.webhook_retry_delay_s,
        )
        if cfg.webhooks
        else None
    )
    return AlertEngine(load_rules(cfg.rules_path), lambda batch: deliver(batch, sender))


def evaluate_alerts(
    config: PipelineConfig,
    *,
    engine: AlertEngine | None = None,
    now: datetime | None = None,
    disk_usage: DiskUsage = shutil.disk_usage,
) -> Evaluation:
    """Evaluate the rules once on the state database and send the messages.

    Parameters
    ----------
    config : PipelineConfig
        ``paths.state_db``, ``alerts`` and the figures' settings.
    engine : AlertEngine, optional
        Default `build_engine` (``config``).
    now : datetime, optional
        Time of the evaluation; default the clock.
    disk_usage : callable, optional
        Free-space probe (replaced in tests).
    """
    engine = engine or build_engine(config)
    now = now or datetime.now(UTC)
    with closing(open_db(Path(config.paths.state_db))) as conn:
        figures = collect_figures(config, conn, now=now, disk_usage=disk_usage)
        return engine.evaluate(conn, figures, now=now)


async def run_alerts_task(
    config: PipelineConfig,
    stop: asyncio.Event,
    *,
    clock: Callable[[], datetime],
    engine: AlertEngine | None = None,
) -> None:
    """Evaluate the rules every ``alerts.interval_s`` until ``stop`` is set.

    The first evaluation runs at once; each runs in its own daemon thread
    (`run_off_loop`: database, disks, webhooks off the event loop). A failed
    evaluation is logged and the next one retries.
    """
    engine = engine or build_engine(config)
    log.info(
        "alert engine started",
        extra={
            "n_rules": len(engine.rules),
            "interval_s": config.alerts.interval_s,
            "n_webhooks": len(config.alerts.webhooks),
        },
    )
    while not stop.is_set():
        try:
            await run_off_loop(
                functools.partial(evaluate_alerts, config, engine=engine, now=clock())
            )
        except Exception:
            log.error("alert evaluation failed; retrying next interval", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), config.alerts.interval_s)
