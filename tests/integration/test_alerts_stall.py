"""Acceptance: alerts fire and resolve when the input stalls.

Two runs of the shipped rules (``monitoring/alerts.yml``):

* the engine (the stream's evaluation path, `evaluate_alerts`) against a
  state database advanced minute by minute in simulated time: groups arrive
  every 5 minutes and are converted, then the input stops during the
  observing window (no data fires once, on the log and the webhook), resumes
  (resolved), then conversion stalls while data keeps arriving (backlog
  growing and processed/arrived < 0.8 fire, and resolve when it catches up);
* the stream itself (`run_stream_async`) with its alert task: no data fires
  and, when a group arrives, resolves, through a loopback webhook.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dsa110_contimg.services import run_stream_async
from dsa110_contimg.services.alerts import build_engine, evaluate_alerts, rules_file
from dsa110_contimg.state import open_db
from dsa110_contimg.state.jobs import (
    CONVERT_GROUP,
    JobSpec,
    claim_job,
    complete_job,
    enqueue_job,
)
from dsa110_contimg.utils.config import PipelineConfig

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _config(tmp_path: Path, **alerts: object) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "environment": "testing",
            "paths": {
                "data_dir": str(tmp_path),
                "incoming_dir": str(tmp_path / "incoming"),
                "ms_stage1_dir": str(tmp_path / "ms"),
                "images_dir": str(tmp_path / "images"),
                "mosaics_dir": str(tmp_path / "mosaics"),
                "cal_tables_dir": str(tmp_path / "cal"),
                "products_dir": str(tmp_path / "products"),
                "log_dir": str(tmp_path / "logs"),
                "state_db": str(tmp_path / "state.sqlite3"),
            },
            "alerts": alerts,
        }
    )


class _Pipeline:
    """The queue as the watcher and the converter would move it, in sim time."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.n = 0

    def arrive(self, now: datetime) -> None:
        key = (T0 + timedelta(minutes=5 * self.n)).replace(tzinfo=None).isoformat()
        enqueue_job(self.conn, JobSpec(CONVERT_GROUP, key, key), now=now)
        self.n += 1

    def convert_all(self, now: datetime) -> None:
        while True:
            job = claim_job(
                self.conn, worker="w", now=now, lease_s=600, kinds=[CONVERT_GROUP]
            )
            if job is None:
                return
            complete_job(self.conn, job.id, worker="w", now=now + timedelta(seconds=20))


def test_no_data_and_backlog_alerts_fire_once_and_resolve(
    tmp_path: Path, webhook_receiver, caplog
) -> None:
    config = _config(
        tmp_path,
        webhooks=[webhook_receiver.url],
        observing_windows_utc=["06:00-18:00"],
    )
    engine = build_engine(config)  # the shipped rules
    timeline: dict[int, list[tuple[str, str]]] = {}

    def disk(path):  # plenty of space: only the queue matters here
        return (10**12, 10**11, 9 * 10**11)

    with closing(open_db(Path(config.paths.state_db))) as conn:
        pipeline = _Pipeline(conn)
        with caplog.at_level(logging.INFO, logger="dsa110_contimg.services.alerts"):
            for minute in range(0, 330):
                now = T0 + timedelta(minutes=minute)
                stalled_input = 60 <= minute < 100
                stalled_processing = 120 <= minute < 260
                if minute % 5 == 0 and not stalled_input:
                    pipeline.arrive(now)
                if minute % 5 == 1 and not stalled_processing:
                    pipeline.convert_all(now)
                before = len(webhook_receiver.bodies)
                evaluate_alerts(config, engine=engine, now=now, disk_usage=disk)
                new = webhook_receiver.statuses()[before:]
                if new:
                    timeline[minute] = new
    # the last group arrived at 55 min: silent for more than 900 s from 71 min
    # (pending), for 5m -> fires at 76; data resumes at 100: resolved at once
    assert timeline.pop(76) == [("firing", "DSA110NoData")]
    assert timeline.pop(100) == [("resolved", "DSA110NoData")]
    # conversion stops after 116: at 125, 4 of the 6 groups that arrived in the
    # last hour were processed (0.67 < 0.8), for 15m -> fires at 140
    assert timeline.pop(140) == [("firing", "DSA110ProcessingBehindArrivals")]
    # the backlog reaches 11 (> 10) at 170, up from 8 at 155, for 15m -> 185
    assert timeline.pop(185) == [("firing", "DSA110BacklogGrowing")]
    # conversion resumes at 261 (jobs finish at 261:20): both resolve at 262
    assert timeline.pop(262) == [
        ("resolved", "DSA110BacklogGrowing"),
        ("resolved", "DSA110ProcessingBehindArrivals"),
    ]
    assert timeline == {}  # nothing else fired or resolved
    # each message once, on the webhook and in the log
    assert len(webhook_receiver.bodies) == 6
    logged = [r for r in caplog.records if r.getMessage().startswith("alert ")]
    assert [(r.getMessage(), r.alert) for r in logged] == [
        (f"alert {status}", name) for status, name in webhook_receiver.statuses()
    ]
    no_data = webhook_receiver.bodies[0]["alerts"][0]
    assert no_data["labels"] == {"alertname": "DSA110NoData", "severity": "critical"}
    assert no_data["annotations"]["summary"] == (
        "No data for 21m 0s during an observing window"  # 55 -> 76 min
    )


def test_no_data_outside_the_observing_window_stays_quiet(
    tmp_path: Path, webhook_receiver
) -> None:
    config = _config(
        tmp_path,
        webhooks=[webhook_receiver.url],
        observing_windows_utc=["00:00-06:00"],  # T0 is 08:00: not observing
    )
    engine = build_engine(config)
    with closing(open_db(Path(config.paths.state_db))) as conn:
        _Pipeline(conn).arrive(T0)
    for minute in range(0, 60, 5):
        evaluate_alerts(
            config,
            engine=engine,
            now=T0 + timedelta(minutes=minute),
            disk_usage=lambda p: (100, 10, 90),
        )
    assert webhook_receiver.bodies == []


def test_the_stream_runs_the_alert_engine(tmp_path: Path, webhook_receiver) -> None:
    # the shipped rules with a short for: so that it fires in real time
    rules = tmp_path / "alerts.yml"
    text = rules_file().read_text(encoding="utf-8")
    marker = "      - alert: DSA110NoData\n"
    head, tail = text.split(marker)
    rules.write_text(
        head + marker + tail.replace("for: 5m", "for: 0s", 1), encoding="utf-8"
    )
    config = _config(
        tmp_path, webhooks=[webhook_receiver.url], interval_s=0.2, rules_path=str(rules)
    )
    now = datetime.now(UTC)
    with closing(open_db(Path(config.paths.state_db))) as conn:
        key = (now - timedelta(hours=1)).replace(tzinfo=None).isoformat()
        job, _ = enqueue_job(
            conn, JobSpec(CONVERT_GROUP, key, key), now=now - timedelta(hours=1)
        )
        claimed = claim_job(
            conn, worker="w", now=now - timedelta(hours=1), lease_s=60,
            kinds=[CONVERT_GROUP],
        )  # fmt: skip
        complete_job(conn, claimed.id, worker="w", now=now - timedelta(minutes=59))

    arrived = threading.Event()

    async def main() -> None:
        stop = asyncio.Event()
        with ThreadPoolExecutor(1) as pool:
            task = asyncio.create_task(
                run_stream_async(
                    config, stop=stop, executor=pool, services=("ms_processor",)
                )
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while loop.time() < deadline and not stop.is_set():
                await asyncio.sleep(0.1)
                statuses = webhook_receiver.statuses()
                if statuses == [("firing", "DSA110NoData")] and not arrived.is_set():
                    with closing(open_db(Path(config.paths.state_db))) as conn:
                        t = datetime.now(UTC)
                        key = t.replace(tzinfo=None).isoformat()
                        enqueue_job(conn, JobSpec(CONVERT_GROUP, key, key), now=t)
                    arrived.set()
                if len(statuses) >= 2:
                    stop.set()
            stop.set()
            await asyncio.wait_for(task, 30)

    asyncio.run(main())
    assert webhook_receiver.statuses() == [
        ("firing", "DSA110NoData"),
        ("resolved", "DSA110NoData"),
    ]


def test_the_stream_alerts_when_real_input_stalls(
    tmp_path: Path, webhook_receiver, tiny_observation
) -> None:
    """The whole stream (watcher, conversion, fake imager) on two simulated
    groups: the first arrives, then nothing (no data fires once), then the
    second (resolved). The rule file is the shipped one with the no-data
    threshold and ``for:`` shortened to fit a test."""
    import shutil

    from tests.conftest import TINY_SPEC_KW

    from dsa110_contimg.simulation import ObservationSpec, simulate_observation
    from dsa110_contimg.state.jobs import list_jobs

    later = TINY_SPEC_KW["start_time"] + timedelta(minutes=10)  # another group
    second = simulate_observation(
        ObservationSpec(**{**TINY_SPEC_KW, "start_time": later}), tmp_path / "sim"
    )
    groups = [tiny_observation.groups[0], second.groups[0]]
    sky_path = tiny_observation.sky_path
    rules = tmp_path / "alerts.yml"
    text = rules_file().read_text(encoding="utf-8")
    marker = "      - alert: DSA110NoData\n"
    head, tail = text.split(marker)
    tail = tail.replace("> 900", "> 3", 1).replace("for: 5m", "for: 0s", 1)
    rules.write_text(head + marker + tail, encoding="utf-8")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    config = _config(
        tmp_path, webhooks=[webhook_receiver.url], interval_s=0.3, rules_path=str(rules)
    )
    config = config.model_copy(
        update={
            "imaging": config.imaging.model_copy(
                update={"backend": "fake", "fake_sky_path": sky_path}
            ),
            "queue": config.queue.model_copy(update={"shutdown_grace_s": 1.0}),
            "watcher": config.watcher.model_copy(
                update={"settle_s": 0.2, "scan_interval_s": 0.5, "min_free_disk_gb": 0}
            ),
        }
    )

    def deliver(group) -> None:
        for path in group.files:
            shutil.copy2(path, incoming / path.name)

    def conversions() -> list[str]:
        with closing(open_db(Path(config.paths.state_db))) as conn:
            return [j.state for j in list_jobs(conn, kinds=[CONVERT_GROUP])]

    async def main() -> list[str]:
        stop = asyncio.Event()
        steps = []
        with ThreadPoolExecutor(1) as pool:
            task = asyncio.create_task(
                run_stream_async(
                    config,
                    stop=stop,
                    incoming_dir=incoming,
                    catalog_path=sky_path,
                    executor=pool,
                )
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 50
            deliver(groups[0])
            while loop.time() < deadline:
                await asyncio.sleep(0.1)
                statuses = webhook_receiver.statuses()
                states = conversions()
                if not steps and states:
                    steps.append("first group enqueued")
                # the input stays stalled until the first group is converted
                if len(steps) == 1 and statuses and states == ["done"]:
                    steps.append("no data fired, first group converted")
                    deliver(groups[1])
                if len(steps) == 2 and len(statuses) >= 2:
                    steps.append("resolved")
                    break
            stop.set()
            await asyncio.wait_for(task, 30)
        return steps

    steps = asyncio.run(main())
    assert steps == [
        "first group enqueued",
        "no data fired, first group converted",
        "resolved",
    ]
    assert webhook_receiver.statuses() == [
        ("firing", "DSA110NoData"),
        ("resolved", "DSA110NoData"),
    ]
    summary = webhook_receiver.bodies[0]["alerts"][0]["annotations"]["summary"]
    assert summary.startswith("No data for ") and "observing window" in summary
    with closing(open_db(Path(config.paths.state_db))) as conn:
        assert len(list_jobs(conn, kinds=[CONVERT_GROUP])) == 2
