"""Tests of the state layer: connections, migrations, groups, products."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from dsa110_contimg.exceptions import StateError
from dsa110_contimg.state import (
    connect,
    latest_schema_version,
    list_products,
    migrate,
    open_db,
    record_group,
    record_product,
    schema_version,
    to_iso_utc,
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "state.sqlite3"


def test_connect_settings(db_path: Path) -> None:
    with closing(connect(db_path)) as conn:
        assert db_path.parent.is_dir()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        assert conn.row_factory is sqlite3.Row


def test_migrate_records_version_and_is_idempotent(db_path: Path) -> None:
    with closing(connect(db_path)) as conn:
        assert schema_version(conn) == 0
        assert migrate(conn) == latest_schema_version() >= 1
        assert migrate(conn) == latest_schema_version()
        rows = conn.execute("SELECT * FROM schema_version ORDER BY version").fetchall()
        versions = [row["version"] for row in rows]
        assert versions == sorted(set(versions)) and versions[0] == 1
        assert versions[-1] == latest_schema_version()
        assert rows[0]["name"] == "initial"
        applied_at = datetime.fromisoformat(rows[0]["applied_at"])
        assert applied_at.utcoffset() == timedelta(0)
        tables = {
            row["name"]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        assert {"block_metrics", "groups", "products", "schema_version"} <= tables
    # a second process opening the same file sees the same version
    with closing(open_db(db_path)) as conn:
        assert schema_version(conn) == latest_schema_version()
        assert not conn.in_transaction


def test_newer_database_raises_state_error(state_target) -> None:
    db_path = state_target
    with closing(open_db(db_path)) as conn, conn:
        conn.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
            (latest_schema_version() + 1, "from_the_future", to_iso_utc()),
        )
    with pytest.raises(StateError, match="upgrade dsa110-contimg"):
        open_db(db_path)
    with closing(connect(db_path)) as conn, pytest.raises(StateError):
        migrate(conn)


def test_readonly_connection(db_path: Path) -> None:
    with pytest.raises(StateError, match="does not exist"):
        connect(db_path, readonly=True)
    with closing(open_db(db_path)) as conn:
        record_product(conn, block_id="b1", kind="ms", path="/data/a.ms")
    with closing(connect(db_path, readonly=True)) as conn:
        assert len(list_products(conn)) == 1
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("DELETE FROM products")


def test_record_and_list_products_upserts_by_path(state_target) -> None:
    db_path = state_target
    with closing(open_db(db_path)) as conn:
        record_product(conn, block_id="b1", kind="ms", path=Path("/data/a.ms"))
        record_product(conn, block_id="b1", kind="image", path="/data/a.fits")
        record_product(conn, block_id="b2", kind="ms", path="/data/b.ms", group_id="g2")
        # rerun of block b1 rewrites a.ms under a new block id
        record_product(conn, block_id="b3", kind="ms", path="/data/a.ms", group_id="g1")
        products = list_products(conn)
        assert [p["path"] for p in products] == [
            "/data/a.ms",
            "/data/a.fits",
            "/data/b.ms",
        ]
        assert products[0]["block_id"] == "b3"
        assert products[0]["group_id"] == "g1"
        assert set(products[0]) == {
            "id",
            "block_id",
            "kind",
            "path",
            "group_id",
            "created_at",
        }
        assert [p["path"] for p in list_products(conn, block_id="b1")] == [
            "/data/a.fits"
        ]
        assert list_products(conn, block_id="nope") == []
        assert not conn.in_transaction


def test_record_group_upserts(state_target) -> None:
    db_path = state_target
    with closing(open_db(db_path)) as conn:
        record_group(
            conn,
            group_id="2025-01-01T00:00:00",
            start_time_iso="2025-01-01T00:00:00",
            n_subbands=16,
            ms_path=None,
            status="pending",
        )
        record_group(
            conn,
            group_id="2025-01-01T00:00:00",
            start_time_iso="2025-01-01T00:00:00",
            n_subbands=16,
            ms_path=Path("/ms/2025-01-01T00:00:00.ms"),
            status="failed",
            error_class="InputDataError",
            error_message="sb07 truncated",
        )
        rows = conn.execute("SELECT * FROM groups").fetchall()
        assert len(rows) == 1
        assert rows[0]["status"] == "failed"
        assert rows[0]["ms_path"] == "/ms/2025-01-01T00:00:00.ms"
        assert rows[0]["error_class"] == "InputDataError"
        assert rows[0]["updated_at"].endswith("+00:00")


def test_to_iso_utc() -> None:
    eastern = timezone(timedelta(hours=-5))
    when = datetime(2025, 1, 1, 7, 0, tzinfo=eastern)
    assert to_iso_utc(when) == "2025-01-01T12:00:00.000000+00:00"
    assert to_iso_utc().endswith("+00:00")
    assert datetime.fromisoformat(to_iso_utc()) <= datetime.now(UTC)
    with pytest.raises(ValueError, match="naive"):
        to_iso_utc(datetime(2025, 1, 1))  # naive on purpose


def test_failed_migration_rolls_back(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dsa110_contimg.state import db as state_db

    with closing(open_db(db_path)):
        pass
    known = state_db._load_migrations()
    broken = state_db._Migration(
        known[-1].version + 1,
        "broken",
        "CREATE TABLE half_done (x INTEGER);\nCREATE TABLE oops (;\n",
    )
    monkeypatch.setattr(state_db, "_load_migrations", lambda: [*known, broken])
    with pytest.raises(sqlite3.OperationalError):
        open_db(db_path)
    monkeypatch.undo()
    with closing(connect(db_path)) as conn:
        assert schema_version(conn) == known[-1].version
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "half_done" not in names


def test_migration_added_below_the_newest_is_applied(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A number left free on one branch and filled later is still applied."""
    from dsa110_contimg.state import db as state_db

    known = state_db._load_migrations()
    newest = known[-1].version
    gap = state_db._Migration(newest + 1, "gap_filled", "CREATE TABLE filled (x);")
    after = state_db._Migration(newest + 2, "after", "CREATE TABLE after_gap (x);")
    monkeypatch.setattr(state_db, "_load_migrations", lambda: [*known, after])
    with closing(open_db(db_path)) as conn:
        assert schema_version(conn) == newest + 2
    monkeypatch.setattr(state_db, "_load_migrations", lambda: [*known, gap, after])
    with closing(open_db(db_path)) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
    assert "filled" in names and newest + 1 in versions


def test_image_quality_rows_store_flags_and_floats(state_target) -> None:
    """``hit_niter`` arrives as a bool (an INTEGER column on both backends)."""
    from dsa110_contimg.state.products import list_image_quality, record_image_quality

    record = {
        "image_path": "/img/a-image.fits",
        "passed": True,
        "reasons": [],
        "rms_jy": 1.25e-4,
        "hit_niter": True,
        "attempts": [{}],
    }
    with closing(open_db(state_target)) as conn:
        record_image_quality(conn, block_id="b1", record=record)
        record_image_quality(conn, block_id="b1", record={**record, "hit_niter": False})
        (row,) = list_image_quality(conn, block_id="b1")
    assert row["passed"] == 1 and row["hit_niter"] == 0 and row["n_attempts"] == 2
    assert row["rms_jy"] == 1.25e-4
