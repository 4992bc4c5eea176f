"""Shared fixtures: offline astropy, opt-in slow tests, simulated tiny groups."""

from __future__ import annotations

import shutil
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
