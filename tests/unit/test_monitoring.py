"""Tests of HealthChecker and PipelineMetrics on temporary directories."""

from __future__ import annotations

import os
import shutil
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from dsa110_contimg.state import open_db, schema_version
from dsa110_contimg.utils.monitoring import (
    HealthCheck,
    HealthChecker,
    PipelineMetrics,
)

EXPECTED_CHECKS = [
    "directories",
    "disk_space",
    "wsclean",
    "casacore_data",
    "database",
    "python_packages",
]


def make_config(
    root: Path, *, wsclean_path: str | None = None, backend: str = "fake"
) -> SimpleNamespace:
    paths = SimpleNamespace(
        log_dir=root / "logs",
        incoming_dir=root / "incoming",
        ms_stage1_dir=root / "ms",
        cal_tables_dir=root / "caltables",
        images_dir=root / "images",
        mosaics_dir=root / "mosaics",
        products_dir=root / "products",
        state_db=root / "state" / "pipeline.sqlite3",
    )
    imaging = SimpleNamespace(wsclean_path=wsclean_path, backend=backend)
    return SimpleNamespace(paths=paths, imaging=imaging)


def by_name(checks: list[HealthCheck]) -> dict[str, HealthCheck]:
    return {check.name: check for check in checks}


def test_health_check_value_object() -> None:
    assert HealthCheck("x", "warning").is_healthy
    assert not HealthCheck("x", "unhealthy", "broken").is_healthy
    assert HealthCheck("x", "healthy").details == {}
    with pytest.raises(ValueError, match="status"):
        HealthCheck("x", "fine")  # type: ignore[arg-type]


def test_check_all_health_on_fresh_directories(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    checks = HealthChecker(
        min_free_disk_gb=0, warn_free_disk_fraction=0
    ).check_all_health(config)
    assert [check.name for check in checks] == EXPECTED_CHECKS
    results = by_name(checks)
    assert results["directories"].status == "healthy"
    assert results["directories"].error_message is None
    assert str(tmp_path / "images") in results["directories"].details["missing"]
    assert results["disk_space"].status == "healthy"
    # health reads, never writes: nothing was created
    assert list(tmp_path.iterdir()) == []
    assert results["database"].status == "warning"
    assert "db migrate" in results["database"].error_message
    with closing(open_db(config.paths.state_db)):
        pass
    database = HealthChecker().check_database(config)
    assert database.status == "healthy"
    assert database.details["schema_version"] >= 1
    # wsclean is not required by the "fake" backend
    assert results["wsclean"].is_healthy
    for check in checks:
        assert check.status in {"healthy", "warning", "unhealthy"}


def test_health_leaves_existing_tree_unchanged(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    for name in ("log_dir", "images_dir", "mosaics_dir"):
        getattr(config.paths, name).mkdir(parents=True)
    with closing(open_db(config.paths.state_db)):
        pass
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    checks = by_name(HealthChecker(min_free_disk_gb=0).check_all_health(config))
    assert checks["database"].status == "healthy"
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


def test_readonly_directory_is_unhealthy(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can write to a read-only directory")
    config = make_config(tmp_path)
    config.paths.images_dir.mkdir()
    config.paths.images_dir.chmod(0o500)
    try:
        check = HealthChecker().check_directories(config)
    finally:
        config.paths.images_dir.chmod(0o700)
    assert check.status == "unhealthy"
    assert "not writable" in check.error_message


def test_uncreatable_directory_is_unhealthy(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    config = make_config(tmp_path)
    config.paths.images_dir = blocker / "sub"
    check = HealthChecker().check_directories(config)
    assert check.status == "unhealthy"
    assert not check.is_healthy
    assert str(blocker / "sub") in check.error_message
    assert "paths.images_dir" in check.error_message
    assert "fix:" in check.error_message
    # the other directories are not blamed
    assert str(tmp_path / "mosaics") not in check.error_message


def test_disk_space_thresholds(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    usage = shutil.disk_usage(tmp_path)
    free_gb = usage.free / 1e9
    low = HealthChecker(min_free_disk_gb=free_gb * 10 + 1).check_disk_space(config)
    assert low.status == "unhealthy"
    assert "GB free" in low.error_message
    assert "paths.images_dir" in low.error_message
    warn = HealthChecker(min_free_disk_gb=0, warn_free_disk_fraction=1.0)
    assert warn.check_disk_space(config).status == "warning"
    ok = HealthChecker(min_free_disk_gb=0, warn_free_disk_fraction=0.0)
    assert ok.check_disk_space(config).status == "healthy"


def test_wsclean_missing_is_unhealthy_when_backend_needs_it(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, wsclean_path="/nonexistent/wsclean", backend="wsclean"
    )
    check = HealthChecker().check_wsclean(config)
    assert check.status == "unhealthy"
    assert "apt-get install wsclean" in check.error_message
    assert "/nonexistent/wsclean" in check.error_message


def test_wsclean_missing_is_a_warning_for_other_backends(tmp_path: Path) -> None:
    config = make_config(tmp_path, wsclean_path="/nonexistent/wsclean", backend="fake")
    assert HealthChecker().check_wsclean(config).status == "warning"


def test_wsclean_version_from_stub_binary(tmp_path: Path) -> None:
    stub = tmp_path / "wsclean"
    stub.write_text("#!/bin/sh\necho 'WSClean version 9.9 (stub)'\n")
    stub.chmod(0o755)
    config = make_config(tmp_path, wsclean_path=str(stub), backend="wsclean")
    check = HealthChecker().check_wsclean(config)
    assert check.status == "healthy"
    assert check.details["version"] == "WSClean version 9.9 (stub)"
    assert check.details["path"] == str(stub)


def test_casacore_data_from_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("casacore.tables")
    measures = tmp_path / "measures"
    (measures / "ephemerides").mkdir(parents=True)
    (measures / "geodetic").mkdir()
    monkeypatch.setenv("CASACORE_DATA", str(measures))
    check = HealthChecker().check_casacore_data(make_config(tmp_path))
    assert check.status == "healthy"
    assert check.details["measures_dir"] == str(measures)


def test_unexpected_exception_becomes_unhealthy(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    config.imaging = None  # attribute access will raise AttributeError
    checks = by_name(HealthChecker().check_all_health(config))
    assert checks["wsclean"].status == "unhealthy"
    assert "AttributeError" in checks["wsclean"].error_message


def test_database_newer_schema_is_unhealthy(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    with closing(open_db(config.paths.state_db)) as conn, conn:
        version = schema_version(conn)
        conn.execute(
            "INSERT INTO schema_version (version, name, applied_at) "
            "VALUES (?, 'future', '2099-01-01T00:00:00.000000+00:00')",
            (version + 1,),
        )
    check = HealthChecker().check_database(config)
    assert check.status == "unhealthy"
    assert "schema version" in check.error_message


def test_database_not_sqlite_is_unhealthy_and_untouched(tmp_path: Path) -> None:
    """A foreign file at paths.state_db: named, with the fix, and left as it was."""
    config = make_config(tmp_path)
    db = Path(config.paths.state_db)
    db.parent.mkdir(parents=True)
    db.write_bytes(b"not a database at all" * 100)
    check = HealthChecker().check_database(config)
    assert check.status == "unhealthy"
    assert f"state database {db} cannot be opened" in check.error_message
    assert "paths.state_db" in check.error_message
    assert sorted(p.name for p in db.parent.iterdir()) == [db.name]


def test_seed_path_reexports_the_moved_classes() -> None:
    from dsa110_contimg.services import health
    from dsa110_contimg.state import metrics
    from dsa110_contimg.utils import monitoring

    assert monitoring.HealthChecker is health.HealthChecker
    assert monitoring.PipelineMetrics is metrics.PipelineMetrics


def test_python_packages_reports_versions(tmp_path: Path) -> None:
    pytest.importorskip("casacore.tables")
    check = HealthChecker().check_python_packages(make_config(tmp_path))
    assert check.status == "healthy"
    assert set(check.details["versions"]) == {"pyuvdata", "casacore.tables", "astropy"}


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.scaleout)]
)
def metrics_db(request, tmp_path: Path):
    """A metrics database on each backend (a nested SQLite file, a PostgreSQL URL)."""
    if request.param == "sqlite":
        return tmp_path / "metrics" / "pipeline.sqlite3"
    return request.getfixturevalue("postgres_url")


def test_metrics_rates_windows_and_persistence(metrics_db) -> None:
    db_path = metrics_db
    metrics = PipelineMetrics(db_path)
    metrics.record_block_processing("b1", True, 100.0, 5, 5)
    metrics.record_block_processing("b2", True, 200.0, 4, 4)
    metrics.record_block_processing(
        "b3", False, 30.0, 0, 0, error_message="ImagingError: wsclean exited 1"
    )
    metrics.record_block_processing(
        "old",
        True,
        999.0,
        1,
        1,
        recorded_at=datetime.now(UTC) - timedelta(hours=48),
    )

    recent = metrics.get_recent_metrics(hours=24)
    assert [row["block_id"] for row in recent] == ["b3", "b2", "b1"]
    assert recent[0]["success"] is False
    assert recent[0]["error_message"] == "ImagingError: wsclean exited 1"
    assert recent[1]["processing_time"] == recent[1]["processing_time_s"] == 200.0
    assert metrics.get_success_rate(hours=24) == pytest.approx(2 / 3)
    assert metrics.get_average_processing_time(hours=24) == pytest.approx(110.0)
    assert len(metrics.get_recent_metrics(hours=72)) == 4
    assert metrics.get_success_rate(hours=72) == pytest.approx(3 / 4)

    reopened = PipelineMetrics(str(db_path))
    assert [row["block_id"] for row in reopened.get_recent_metrics()] == [
        "b3",
        "b2",
        "b1",
    ]
    assert reopened.get_success_rate() == pytest.approx(2 / 3)


def test_metrics_empty_window_and_bad_input(tmp_path: Path) -> None:
    metrics = PipelineMetrics(tmp_path / "m.sqlite3")
    assert metrics.get_recent_metrics() == []
    assert metrics.get_success_rate() == 0.0
    assert metrics.get_average_processing_time() == 0.0
    with pytest.raises(ValueError, match="hours"):
        metrics.get_success_rate(hours=0)
    with pytest.raises(ValueError, match="processing_time"):
        metrics.record_block_processing("b", True, -1.0, 0, 0)
    with pytest.raises(ValueError, match="naive"):
        metrics.record_block_processing(
            "b",
            True,
            1.0,
            0,
            0,
            recorded_at=datetime(2025, 1, 1),  # naive on purpose
        )


def test_metrics_default_path_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "env" / "metrics.sqlite3"
    monkeypatch.setenv("DSA110_METRICS_DB", str(target))
    assert PipelineMetrics().db_path == target
    assert target.is_file()
    monkeypatch.delenv("DSA110_METRICS_DB")
    monkeypatch.chdir(tmp_path)
    assert PipelineMetrics().db_path == tmp_path / "data" / "pipeline.sqlite3"
