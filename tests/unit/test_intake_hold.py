"""The operator's hold on intake (`state.intake`), and the serve command.

Known truth: while the hold is set the intake gate is closed and the
watcher enqueues nothing, whatever the free disk; released, the same scan
enqueues the group. ``intake pause`` shows in ``status``.
"""

from __future__ import annotations

import json
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsa110_contimg.services._intake import IntakeGate
from dsa110_contimg.state import open_db
from dsa110_contimg.state.intake import intake_hold, set_intake_hold
from dsa110_contimg.state.jobs import list_jobs
from dsa110_contimg.utils.config_loader import load_pipeline_config

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_hold_closes_the_gate_and_release_opens_it(tmp_path) -> None:
    with closing(open_db(tmp_path / "s.sqlite3")) as conn:
        gate = IntakeGate(conn, [tmp_path], min_free_disk_gb=0)
        gate.update(NOW)
        assert gate.is_open
        set_intake_hold(conn, paused=True, reason="maintenance", now=NOW, by="test")
        assert gate.is_open, "read at the next publish, not before"
        gate.update(NOW)
        assert not gate.is_open and gate.held
        assert intake_hold(conn)["reason"] == "maintenance"
        set_intake_hold(conn, paused=False, reason="done", now=NOW)
        gate.update(NOW)
        assert gate.is_open


def test_held_watcher_enqueues_nothing(tiny_group_dir, tmp_path) -> None:
    from dsa110_contimg.services._runner import JobRunner
    from dsa110_contimg.services.hdf5_watcher import WatcherService

    config = load_pipeline_config(
        environment="testing",
        overrides={
            "paths.state_db": str(tmp_path / "state.sqlite3"),
            "watcher.settle_s": 0,
            "watcher.min_free_disk_gb": 0,
        },
        env={},
    )
    with closing(open_db(config.paths.state_db)) as conn:
        set_intake_hold(conn, paused=True, reason="hold", now=NOW)
        runner = JobRunner(conn, config.queue)
        gate = IntakeGate(conn, [tiny_group_dir], min_free_disk_gb=0)
        gate.update(NOW)
        service = WatcherService(config, runner, gate, incoming_dir=tiny_group_dir)
        for _ in range(3):
            service.scan_once(datetime.now(UTC))
        assert list_jobs(conn) == []
        set_intake_hold(conn, paused=False, reason="go", now=NOW)
        gate.update(NOW)
        for _ in range(3):
            service.scan_once(datetime.now(UTC))
        assert [j.kind for j in list_jobs(conn)] == ["convert_group"]


def test_intake_commands_show_in_status(tmp_path) -> None:
    from dsa110_contimg.cli import cli

    db = tmp_path / "state.sqlite3"
    common = ["--env", "testing", "--set", f"paths.state_db={db}"]
    result = CliRunner().invoke(cli, ["intake", "pause", *common, "--reason", "swap"])
    assert result.exit_code == 0, result.output
    status = CliRunner().invoke(cli, ["status", *common, "--json"])
    intake = json.loads(status.stdout)["intake"]
    assert intake["paused"] is True and "held by an operator: swap" in intake["reason"]
    CliRunner().invoke(cli, ["intake", "resume", *common])
    status = CliRunner().invoke(cli, ["status", *common, "--json"])
    assert json.loads(status.stdout)["intake"]["paused"] is False


def test_serve_binds_localhost_by_default(tmp_path, monkeypatch) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    from dsa110_contimg.cli import cli

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    common = ["--env", "testing", "--set", f"paths.state_db={tmp_path / 's.db'}"]
    result = CliRunner().invoke(cli, ["serve", *common])
    assert result.exit_code == 0, result.output
    app, kw = calls[-1]
    assert (kw["host"], kw["port"]) == ("127.0.0.1", 8080)
    assert app.openapi_url == "/api/openapi.json"
    result = CliRunner().invoke(
        cli, ["serve", *common, "--host", "0.0.0.0", "--port", "9100"]
    )
    assert result.exit_code == 0, result.output
    assert (calls[-1][1]["host"], calls[-1][1]["port"]) == ("0.0.0.0", 9100)
    assert not Path(tmp_path / "s.db").exists(), "serve creates no database"
