"""`stream` and batch `process` share one writer claim (issue 15, item 19).

Real processes on one state database: a `process` while a stream runs is
refused with the stream named, a second stream too, and a stream started
while a batch writer holds the database is refused with that writer named.
Before, only streams excluded each other (a host-local lock file) and
`process` took no lock at all.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dsa110_contimg.cli import cli
from dsa110_contimg.state import open_db
from dsa110_contimg.state.writer import hold_writer, writer_key
from dsa110_contimg.testing.layout import run_paths
from dsa110_contimg.utils.config_loader import find_config_dir

pytestmark = pytest.mark.integration


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    config = tmp_path / "stream.yaml"
    tree = {
        "paths": run_paths(tmp_path),
        "watcher": {"scan_interval_s": 0.5},
        "queue": {"lease_s": 10.0, "heartbeat_interval_s": 1.0},
    }
    config.write_text(yaml.safe_dump(tree))
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("name,ra_deg,dec_deg,flux_jy\nS1,10.0,16.3,1.0\n")
    (tmp_path / "incoming").mkdir()
    return {
        "base": tmp_path,
        "config": config,
        "catalog": catalog,
        "db": tmp_path / "pipeline.sqlite3",
    }


def _args(layout) -> list[str]:
    return [
        "--env",
        "testing",
        "--config",
        str(layout["config"]),
        "--incoming-dir",
        str(layout["base"] / "incoming"),
        "--catalog",
        str(layout["catalog"]),
    ]


def _start_stream(layout, name: str) -> tuple[subprocess.Popen, Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA110")}
    env["DSA110_CONFIG_DIR"] = str(find_config_dir(env={}))
    out = layout["base"] / f"{name}.out"
    with open(out, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dsa110_contimg.services", *_args(layout)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=layout["base"],
            env=env,
            start_new_session=True,
        )
    return proc, out


def _holder(db: Path) -> str | None:
    if not db.exists():
        return None
    with closing(open_db(db)) as conn:
        row = conn.execute(
            "SELECT owner FROM claims WHERE key = ? AND expires_at > ?",
            (writer_key(db), time.time()),
        ).fetchone()
    return None if row is None else row[0]


def test_process_while_a_stream_runs_is_refused_and_vice_versa(layout) -> None:
    host = socket.gethostname()
    stream, out = _start_stream(layout, "first")
    try:
        deadline = time.monotonic() + 90
        while (owner := _holder(layout["db"])) is None:
            assert stream.poll() is None, out.read_text(errors="replace")
            assert time.monotonic() < deadline, "the stream never took the claim"
            time.sleep(0.3)
        assert owner.startswith(f"{host}:{stream.pid}:") and owner.endswith(" stream")

        result = CliRunner().invoke(cli, ["process", *_args(layout)])
        assert result.exit_code != 0
        assert "WriterBusyError" in result.output, result.output
        assert f"`stream` on host {host}, pid {stream.pid}, since" in result.output

        second, second_out = _start_stream(layout, "second")
        assert second.wait(90) != 0
        text = second_out.read_text(errors="replace")
        assert f"`stream` on host {host}, pid {stream.pid}" in text, text
        assert stream.poll() is None, "the first stream keeps running"
    finally:
        stream.send_signal(signal.SIGTERM)
        stream.wait(60)
    assert _holder(layout["db"]) is None, "released at a clean stop"

    # vice versa: a batch writer holds the database, a stream is refused
    with hold_writer(layout["db"], "process", ttl_s=30):
        refused, refused_out = _start_stream(layout, "refused")
        assert refused.wait(90) != 0
    text = refused_out.read_text(errors="replace")
    assert f"`process` on host {host}, pid {os.getpid()}, since" in text, text
