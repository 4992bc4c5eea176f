"""Shared fixtures: offline astropy, opt-in slow tests, simulated tiny groups."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from astropy.utils import iers
from tests.servers.postgres import postgres_server, postgres_url  # noqa: F401

# Tests never use the network: astropy must not try to download IERS tables.
iers.conf.auto_download = False
iers.conf.auto_max_age = None

# Tests that import casatools/casatasks directly get the installation's CASA
# set-up too (site configuration, corrected observatory table), as the
# pipeline's own processes do: never a user-global ~/.casa/config.py.
try:
    from dsa110_contimg._casa import configure_casa_environment
    from dsa110_contimg._casa_data import ensure_casa_data

    configure_casa_environment()
    ensure_casa_data()
except ImportError:  # pragma: no cover - the casa extra is optional
    pass


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")
    parser.addoption(
        "--queue-backend",
        choices=("sqlite", "redis"),
        default="sqlite",
        help="queue.backend of the streams that test_streaming.py runs (redis: "
        "on a throwaway redis-server)",
    )


#: Free space below which the session warns before it starts: a whole run's
#: temporary directory peaked at 4.4 GB (the heaviest module's products plus
#: one test's, see ``tmp_path_retention_policy``), with margin.
MIN_FREE_DISK_GB = 6.0


def pytest_report_header(config: pytest.Config) -> str:
    """Say how much room the temporary directory has (a full disk fails every test)."""
    tmp = Path(tempfile.gettempdir())
    free_gb = shutil.disk_usage(tmp).free / 1e9
    line = f"temporary directory {tmp}: {free_gb:.1f} GB free"
    if free_gb < MIN_FREE_DISK_GB:
        line += (
            f" -- WARNING: below {MIN_FREE_DISK_GB:.0f} GB; tests that write MSs "
            "and images will fail with 'No space left on device'. Free space "
            "there or point TMPDIR at a larger disk."
        )
    return line


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    skip_slow = pytest.mark.skip(reason="slow: opt in with --run-slow")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(skip_slow)
        if "wsclean" in item.keywords and shutil.which("wsclean") is None:
            item.add_marker(pytest.mark.skip(reason="wsclean binary not installed"))


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.scaleout)]
)
def state_target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """A fresh state database on each backend: an SQLite file, a PostgreSQL URL.

    Pass it wherever a state-database path goes (``open_db``, ``connect``,
    ``paths.state_db``/``database.url``); the PostgreSQL case needs the
    server binaries (skipped without them, see ``tests/servers/postgres.py``).
    """
    if request.param == "sqlite":
        return tmp_path / "state.sqlite3"
    return request.getfixturevalue("postgres_url")


TINY_SPEC_KW = {
    "start_time": datetime(2023, 6, 1, 0, 0, 0, tzinfo=UTC),
    "n_groups": 1,
    "n_antennas": 24,
    "n_chan_per_subband": 2,
    "n_times": 6,
    "n_sources": 6,
    "min_flux_jy": 0.5,
    "max_flux_jy": 3.0,
    "field_radius_deg": 0.6,
    "seed": 7,
}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """A throwaway redis-server on loopback for the session (``scaleout`` tests)."""
    from tests.servers.redis import RedisServer

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (scripts/setup.sh installs it)")
    pytest.importorskip("redis", reason="redis-py missing: pip install '.[scaleout]'")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.scaleout)])
def queue_backend(request: pytest.FixtureRequest) -> str:
    """Name of the job-queue backend a parametrised queue test runs on."""
    return str(request.param)


@pytest.fixture
def make_queue(request: pytest.FixtureRequest, queue_backend: str):
    """Return ``make(conn)``: a `JobQueue` of ``queue_backend`` on ``conn``.

    Queues made in one test share a Redis key prefix (workers of one queue),
    different from other tests' (one server serves the session); they are
    closed afterwards.
    """
    import uuid

    from dsa110_contimg.state.queue import SqliteJobQueue

    made = []
    prefix = f"t{uuid.uuid4().hex[:10]}"

    def make(conn, **kw):
        if queue_backend == "sqlite":
            return SqliteJobQueue(conn)
        from dsa110_contimg.state.redis_queue import RedisJobQueue

        server = request.getfixturevalue("redis_server")
        q = RedisJobQueue(conn, url=server.url, prefix=prefix, **kw)
        made.append(q)
        return q

    yield make
    for q in made:
        q.close()


@pytest.fixture(scope="session")
def tiny_observation(tmp_path_factory: pytest.TempPathFactory):
    """One simulated testing-size group (session scoped: do not modify its files)."""
    from dsa110_contimg.simulation import ObservationSpec, simulate_observation

    out = tmp_path_factory.mktemp("tiny_obs")
    return simulate_observation(ObservationSpec(**TINY_SPEC_KW), out)


@pytest.fixture
def tiny_group_dir(tiny_observation, tmp_path: Path) -> Path:
    """A fresh copy of the tiny group's raw files, safe to damage."""
    dest = tmp_path / "incoming"
    dest.mkdir()
    for group in tiny_observation.groups:
        for path in group.files:
            shutil.copy2(path, dest / path.name)
    shutil.copytree(tiny_observation.output_dir / "truth", dest / "truth")
    return dest


class WebhookReceiver:
    """A loopback HTTP server that records the JSON bodies POSTed to it.

    ``fail_first`` answers that many requests with HTTP 500 first.
    """

    def __init__(self, fail_first: int = 0) -> None:
        import http.server
        import json
        import threading

        self.bodies: list[dict] = []
        self.n_requests = 0
        self.fail_first = fail_first
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.n_requests += 1
                if receiver.n_requests <= receiver.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def statuses(self) -> list[tuple[str, str]]:
        """(status, alertname) of each message received, in order."""
        return [(b["status"], b["groupLabels"]["alertname"]) for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver():
    """A `WebhookReceiver` on a free loopback port, shut down afterwards."""
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()
