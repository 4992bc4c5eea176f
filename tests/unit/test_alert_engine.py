"""The in-process alert engine: figures from the state database, ``for:``,
de-duplication, resolved messages, silences, webhooks and the CLI."""

from __future__ import annotations

import json
import logging
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsa110_contimg.cli import build_cli
from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.services.alerts import (
    AlertEngine,
    WebhookSender,
    collect_figures,
    deliver,
    is_observing,
    load_rules,
)
from dsa110_contimg.state import open_db
from dsa110_contimg.state.alert_inputs import read_alert_inputs
from dsa110_contimg.state.alerts import add_silence, list_tracked_alerts, remove_silence
from dsa110_contimg.state.calibration import SqliteSolutionRegistry
from dsa110_contimg.state.jobs import (
    CONVERT_GROUP,
    PROCESS_BLOCK,
    JobSpec,
    claim_job,
    complete_job,
    enqueue_job,
    record_failure,
)
from dsa110_contimg.utils.config import PipelineConfig

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FREE_DISK = lambda path: (1000, 500, 500)  # noqa: E731 - total, used, free


@pytest.fixture
def conn(tmp_path: Path):
    with closing(open_db(tmp_path / "state.sqlite3")) as c:
        yield c


def _config(tmp_path: Path, **alerts: object) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "paths": {
                "data_dir": str(tmp_path),
                "incoming_dir": str(tmp_path / "incoming"),
                "state_db": str(tmp_path / "state.sqlite3"),
            },
            "alerts": alerts,
        }
    )


def _arrive(conn, at: datetime, i: int) -> int:
    job, _ = enqueue_job(
        conn,
        JobSpec(CONVERT_GROUP, f"g{i:03d}", to_iso_utc_naive(at)),
        now=at,
    )
    return job.id


def to_iso_utc_naive(at: datetime) -> str:
    return at.replace(tzinfo=None).isoformat(timespec="seconds")


def _convert(conn, at: datetime, duration_s: float = 60.0) -> None:
    job = claim_job(conn, worker="w", now=at, lease_s=600, kinds=[CONVERT_GROUP])
    assert job is not None
    complete_job(conn, job.id, worker="w", now=at + timedelta(seconds=duration_s))


def _figures(config, conn, now):
    return collect_figures(config, conn, now=now, disk_usage=FREE_DISK)


# ------------------------------------------------------------------- figures


def test_figures_from_the_queue(conn) -> None:
    # 12 groups in the hour, 10 converted at 60 s each, 2 waiting; 1 failure
    for i in range(12):
        _arrive(conn, T0 + timedelta(minutes=5 * i), i)
    for i in range(10):
        _convert(conn, T0 + timedelta(minutes=5 * i, seconds=10), duration_s=60)
    job, _ = enqueue_job(
        conn, JobSpec(PROCESS_BLOCK, "b1", "2026-03-01T12:00:00"), now=T0
    )
    claimed = claim_job(conn, worker="w", now=T0, lease_s=600, kinds=[PROCESS_BLOCK])
    record_failure(
        conn,
        claimed.id,
        InputDataError("bad"),
        worker="w",
        now=T0 + timedelta(minutes=1),
        backoff_base_s=1,
        backoff_max_s=1,
    )
    now = T0 + timedelta(minutes=58)
    inputs = read_alert_inputs(conn, now=now, group_duration_s=300, n_workers=2)
    assert inputs.groups_arrived_last_hour == 12
    assert inputs.groups_processed_last_hour == 10
    assert inputs.backlog_groups == 2
    # 15 min ago (12:43): groups 0..8 enqueued, 0..8 converted by 12:41
    assert inputs.backlog_groups_before == 0
    assert inputs.jobs_finished_last_hour[(PROCESS_BLOCK, "quarantined")] == 1
    assert inputs.jobs_finished_last_hour[(CONVERT_GROUP, "done")] == 10
    assert inputs.job_errors_last_hour == {(PROCESS_BLOCK, "InputDataError"): 1}
    # 10 x 60 s of work for 10 x 300 s of data (seconds of work per second
    # of data, as the API reports it; the rule divides by the 2 workers)
    assert inputs.realtime_factor == pytest.approx(600 / (10 * 300))
    assert inputs.n_workers == 2
    assert inputs.last_arrival_at == T0 + timedelta(minutes=55)


def test_backlog_then_is_what_was_waiting_then(conn) -> None:
    for i in range(5):
        _arrive(conn, T0 + timedelta(minutes=i), i)
    _convert(conn, T0 + timedelta(minutes=10), duration_s=30)
    at = T0 + timedelta(minutes=20)
    inputs = read_alert_inputs(
        conn,
        now=at,
        group_duration_s=300,
        n_workers=1,
        growth_window=timedelta(minutes=15),
    )
    assert (inputs.backlog_groups, inputs.backlog_groups_before) == (4, 5)


def test_calibration_age_of_the_strips_in_use(conn) -> None:
    now = datetime.now(UTC)
    registry = SqliteSolutionRegistry(conn)
    mjd_now = now.timestamp() / 86400.0 + 40587.0
    used = registry.register(
        calibrator="3C286", group_id="a", ms_path=Path("a.ms"),
        tables=[Path("a.b"), Path("a.g")], refant="1", dec_strip_deg=33.0,
        transit_mjd=mjd_now - 0.5, validity_hours=12, quality={},
    )  # fmt: skip
    registry.register(
        calibrator="3C48",
        group_id="b",
        ms_path=Path("b.ms"),
        tables=[Path("b.b"), Path("b.g")],
        refant="1",
        dec_strip_deg=71.6,
        transit_mjd=mjd_now - 3,
        validity_hours=12,
        quality={},
    )  # fmt: skip, never applied: not in use
    registry.record_application(ms_path=Path("x.ms"), solution_id=used.id)
    inputs = read_alert_inputs(conn, now=now, group_duration_s=300, n_workers=1)
    assert list(inputs.calibration_age_s) == [33.0]
    assert inputs.calibration_age_s[33.0] == pytest.approx(43200, abs=1)


@pytest.mark.parametrize(
    ("windows", "hhmm", "expected"),
    [
        ([], "03:00", True),
        (["08:00-16:00"], "12:00", True),
        (["08:00-16:00"], "16:00", False),
        (["22:00-04:00"], "23:30", True),
        (["22:00-04:00"], "03:59", True),
        (["22:00-04:00"], "12:00", False),
    ],
)
def test_observing_windows(windows, hhmm, expected) -> None:
    hour, minute = map(int, hhmm.split(":"))
    assert is_observing(windows, T0.replace(hour=hour, minute=minute)) is expected


def test_observing_window_syntax_is_checked() -> None:
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        PipelineConfig.model_validate({"alerts": {"observing_windows_utc": ["8-16"]}})
    with pytest.raises(ValueError, match="http"):
        PipelineConfig.model_validate({"alerts": {"webhooks": ["ftp://x"]}})


# -------------------------------------------------------------------- engine


class _Outbox:
    def __init__(self) -> None:
        self.messages = []

    def __call__(self, batch) -> None:
        self.messages.extend(batch)

    def statuses(self) -> list[tuple[str, str]]:
        return [(m.status, m.alertname) for m in self.messages]


def _engine(names: set[str]) -> tuple[AlertEngine, _Outbox]:
    outbox = _Outbox()
    rules = [r for r in load_rules() if r.name in names]
    return AlertEngine(rules, outbox), outbox


def test_for_duration_dedup_and_resolved(tmp_path: Path, conn) -> None:
    config = _config(tmp_path)
    engine, outbox = _engine({"DSA110BacklogCritical"})  # > 30 for 5m
    for i in range(31):
        _arrive(conn, T0, i)
    states = []
    for minute in (0, 2, 4, 5, 6, 30):
        now = T0 + timedelta(minutes=minute)
        result = engine.evaluate(conn, _figures(config, conn, now), now=now)
        states.append((len(result.pending), len(result.firing)))
    assert states == [(1, 0), (1, 0), (1, 0), (0, 1), (0, 1), (0, 1)]
    assert outbox.statuses() == [("firing", "DSA110BacklogCritical")]
    message = outbox.messages[0]
    assert message.labels == {
        "alertname": "DSA110BacklogCritical",
        "severity": "critical",
    }
    assert message.annotations["summary"] == "Conversion backlog is 31 groups"
    assert message.starts_at.startswith("2026-03-01T12:00:00")
    # the backlog drains: one resolved message, the alert forgotten
    for _ in range(5):
        _convert(conn, T0 + timedelta(minutes=31), duration_s=1)
    for minute in (33, 40):
        now = T0 + timedelta(minutes=minute)
        engine.evaluate(conn, _figures(config, conn, now), now=now)
    assert outbox.statuses() == [
        ("firing", "DSA110BacklogCritical"),
        ("resolved", "DSA110BacklogCritical"),
    ]
    assert outbox.messages[1].ends_at.startswith("2026-03-01T12:33:00")
    assert list_tracked_alerts(conn) == []


def test_a_condition_that_clears_while_pending_sends_nothing(tmp_path, conn) -> None:
    config = _config(tmp_path)
    engine, outbox = _engine({"DSA110BacklogCritical"})
    for i in range(31):
        _arrive(conn, T0, i)
    engine.evaluate(conn, _figures(config, conn, T0), now=T0)
    _convert(conn, T0 + timedelta(minutes=1), duration_s=1)
    now = T0 + timedelta(minutes=2)
    result = engine.evaluate(conn, _figures(config, conn, now), now=now)
    assert (result.pending, result.firing, outbox.messages) == ([], [], [])


def test_dedup_survives_a_restart(tmp_path, conn) -> None:
    config = _config(tmp_path)
    for i in range(31):
        _arrive(conn, T0, i)
    first, outbox = _engine({"DSA110BacklogCritical"})
    for minute in (0, 6):
        now = T0 + timedelta(minutes=minute)
        first.evaluate(conn, _figures(config, conn, now), now=now)
    second, outbox2 = _engine({"DSA110BacklogCritical"})  # a new process
    now = T0 + timedelta(minutes=7)
    result = second.evaluate(conn, _figures(config, conn, now), now=now)
    assert len(result.firing) == 1
    assert len(outbox.messages) == 1 and outbox2.messages == []


def test_silence_mutes_until_it_ends(tmp_path, conn) -> None:
    config = _config(tmp_path)
    engine, outbox = _engine({"DSA110BacklogCritical", "DSA110IntakePaused"})
    for i in range(31):
        _arrive(conn, T0, i)
    silence = add_silence(
        conn,
        "DSA110BacklogCritical",
        matchers={"severity": "critical"},
        comment="known: catching up after maintenance",
        created_by="operator",
        now=T0,
        expires_at=T0 + timedelta(minutes=20),
    )
    for minute in (0, 6, 10):
        now = T0 + timedelta(minutes=minute)
        result = engine.evaluate(conn, _figures(config, conn, now), now=now)
    assert len(result.firing) == 1 and len(result.silenced) == 1
    assert outbox.messages == []
    now = T0 + timedelta(minutes=21)  # expired, still firing: sent now, once
    engine.evaluate(conn, _figures(config, conn, now), now=now)
    engine.evaluate(conn, _figures(config, conn, now + timedelta(minutes=1)), now=now)
    assert outbox.statuses() == [("firing", "DSA110BacklogCritical")]
    # a silence whose matcher does not match mutes nothing; removal ends one
    other = add_silence(
        conn,
        "DSA110BacklogCritical",
        matchers={"severity": "warning"},
        comment="x",
        created_by="o",
        now=now,
        expires_at=now + timedelta(hours=1),
    )
    assert not other.matches("DSA110BacklogCritical", {"severity": "critical"})
    assert remove_silence(conn, silence.id, now=now).removed_at is not None


def test_messages_go_to_the_log_and_the_webhook(
    tmp_path, conn, webhook_receiver, caplog
) -> None:
    config = _config(tmp_path)
    rules = [r for r in load_rules() if r.name == "DSA110IntakePaused"]
    sender = WebhookSender([webhook_receiver.url], timeout_s=5, retries=0)
    engine = AlertEngine(rules, lambda batch: deliver(batch, sender))
    from dsa110_contimg.state.jobs import set_service_state

    set_service_state(conn, "intake", {"paused": True}, now=T0)
    with caplog.at_level(logging.INFO, logger="dsa110_contimg.services.alerts"):
        for minute in (0, 1, 2):
            now = T0 + timedelta(minutes=minute)
            engine.evaluate(conn, _figures(config, conn, now), now=now)
        set_service_state(conn, "intake", {"paused": False}, now=now)
        now = T0 + timedelta(minutes=3)
        engine.evaluate(conn, _figures(config, conn, now), now=now)
    assert webhook_receiver.statuses() == [
        ("firing", "DSA110IntakePaused"),
        ("resolved", "DSA110IntakePaused"),
    ]
    body = webhook_receiver.bodies[0]
    assert body["version"] == "4" and body["receiver"] == "dsa110-contimg"
    assert body["alerts"][0]["labels"]["severity"] == "critical"
    assert body["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert webhook_receiver.bodies[1]["alerts"][0]["endsAt"].startswith(
        "2026-03-01T12:03"
    )
    logged = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("ERROR", "alert firing") in logged  # critical
    assert ("INFO", "alert resolved") in logged


def test_webhook_retries_then_gives_up(webhook_receiver, caplog) -> None:
    from dsa110_contimg.services.alerts import Notification

    note = Notification("firing", "X", "warning", {}, {}, 1.0, "t", None, "f")
    webhook_receiver.fail_first = 2
    sleeps: list[float] = []
    sender = WebhookSender(
        [webhook_receiver.url], timeout_s=5, retries=2, retry_delay_s=0.5,
        sleep=sleeps.append,
    )  # fmt: skip
    assert sender.send(note) == {webhook_receiver.url: True}
    assert webhook_receiver.n_requests == 3 and sleeps == [0.5, 1.0]
    # a receiver that is down: the configured tries, then an error logged
    caplog.clear()
    dead = WebhookSender(
        ["http://127.0.0.1:9/alerts"], timeout_s=1, retries=1, retry_delay_s=0,
        sleep=lambda s: None,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        assert dead.send(note) == {"http://127.0.0.1:9/alerts": False}
    assert [r.getMessage() for r in caplog.records].count("alert webhook failed") == 2
    assert "alert webhook gave up" in [r.getMessage() for r in caplog.records]


# ----------------------------------------------------------------------- CLI


def test_cli_silence_list_unsilence(tmp_path, monkeypatch) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        json.dumps(
            {"paths": {"data_dir": str(tmp_path), "state_db": str(tmp_path / "s.db")}}
        ),
        encoding="utf-8",
    )
    cli = build_cli()
    runner = CliRunner()
    base = ["--config", str(config_file)]
    result = runner.invoke(
        cli,
        ["alerts", "silence", "DSA110NoData", *base, "--duration", "1h",
         "--comment", "correlator maintenance", "--by", "ops"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "silence #1 on DSA110NoData" in result.output
    result = runner.invoke(cli, ["alerts", "list", *base, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [s["alert"] for s in report["silences"]] == ["DSA110NoData"]
    assert report["silences"][0]["comment"] == "correlator maintenance"
    assert {r["alert"] for r in report["rules"]} >= {"DSA110NoData"}
    result = runner.invoke(cli, ["alerts", "unsilence", "1", *base])
    assert result.exit_code == 0 and "silence #1 removed" in result.output
    result = runner.invoke(cli, ["alerts", "list", *base, "--json"])
    assert json.loads(result.output)["silences"] == []
    result = runner.invoke(
        cli, ["alerts", "silence", "NoSuchAlert", *base, "--comment", "x"]
    )
    assert result.exit_code != 0 and "no alert rule named" in result.output
    result = runner.invoke(cli, ["alerts", "unsilence", "42", *base])
    assert result.exit_code != 0 and "no silence with id 42" in result.output


def test_cli_evaluate_once(tmp_path) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        json.dumps(
            {"paths": {"data_dir": str(tmp_path), "state_db": str(tmp_path / "s.db")}}
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        build_cli(), ["alerts", "evaluate", "--config", str(config_file)]
    )
    assert result.exit_code == 0, result.output
    assert "0 firing" in result.output
