"""Alembic migrations of the state database: in-place upgrades, both backends."""

from __future__ import annotations

import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from dsa110_contimg.exceptions import StateError
from dsa110_contimg.state import _alembic
from dsa110_contimg.state import db as state_db
from dsa110_contimg.state.db import (
    DatabaseError,
    connect,
    open_db,
    schema_version,
    table_exists,
)


def _numbered_only(target, monkeypatch: pytest.MonkeyPatch, upto: int | None = None):
    """Make a database the way the numbered SQL files alone made it."""
    monkeypatch.setattr(_alembic, "upgrade", lambda conn: None)
    if upto is not None:
        known = state_db._load_migrations()
        monkeypatch.setattr(
            state_db,
            "_load_migrations",
            lambda: [m for m in known if m.version <= upto],
        )
    with closing(open_db(target)) as conn:
        assert not table_exists(conn, "alembic_version")
        yield_version = schema_version(conn)
    monkeypatch.undo()
    return yield_version


def _fill(conn) -> None:
    conn.execute(
        "INSERT INTO jobs (kind, key, state, data_time_iso, max_attempts, "
        "not_before_at, created_at, updated_at) VALUES "
        "('convert_group', 'g1', 'done', 't', 3, 't', 't', 't')"
    )
    conn.execute(
        "INSERT INTO products (block_id, kind, path, created_at) "
        "VALUES ('b1', 'ms', '/data/a.ms', 't')"
    )
    conn.execute(
        "INSERT INTO claims (key, owner, token, expires_at, updated_at) VALUES "
        "('ms:a', 'hostA:12:t', 5, 1.5, 't'), ('ms:b', NULL, 2, 0, 't')"
    )
    conn.commit()


def test_a_database_made_by_the_numbered_files_is_upgraded_in_place(
    state_target, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _numbered_only(state_target, monkeypatch) == 8
    with closing(connect(state_target)) as conn:
        _fill(conn)
    with closing(open_db(state_target)) as conn:  # Alembic: baseline, then 0009, 0010
        assert _alembic.current_revision(conn) == _alembic.head_revision() == "0011"
        assert schema_version(conn) == 8
        job = conn.execute("SELECT kind, key, state, max_attempts FROM jobs").fetchall()
        assert [tuple(r) for r in job] == [("convert_group", "g1", "done", 3)]
        assert conn.execute("SELECT path FROM products").fetchone()[0] == "/data/a.ms"
        claims = conn.execute(
            "SELECT key, owner, host, token, expires_at FROM claims ORDER BY key"
        ).fetchall()
        assert [tuple(r) for r in claims] == [
            ("ms:a", "hostA:12:t", "hostA", 5, 1.5),
            ("ms:b", None, None, 2, 0.0),
        ]
        # new rows get ids after the old ones
        conn.execute(
            "INSERT INTO products (block_id, kind, path, created_at) "
            "VALUES ('b2', 'ms', '/data/b.ms', 't')"
        )
        conn.commit()
        ids = [r[0] for r in conn.execute("SELECT id FROM products ORDER BY id")]
        assert ids == [1, 2]
    with closing(open_db(state_target)) as conn:  # idempotent
        assert conn.execute("SELECT count(*) FROM claims").fetchone()[0] == 2


def test_an_older_numbered_database_is_brought_to_the_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "old.sqlite3"
    assert _numbered_only(db, monkeypatch, upto=5) == 5
    with closing(connect(db)) as conn:
        _fill(conn)
    with closing(open_db(db)) as conn:
        assert schema_version(conn) == 8
        assert _alembic.current_revision(conn) == "0011"
        assert table_exists(conn, "deletions")  # from 0008
        host = conn.execute("SELECT host FROM claims WHERE key = 'ms:a'").fetchone()
        assert host[0] == "hostA"


def test_the_head_read_from_file_names_is_alembics_head() -> None:
    _alembic.head_revision.cache_clear()
    assert _alembic.head_revision() == _alembic._script().get_current_head()
    revisions = {
        r.revision: r.down_revision for r in _alembic._script().walk_revisions()
    }
    assert revisions == {
        "0008": None,
        "0009": "0008",
        "0010": "0009",
        "0011": "0010",
    }


def test_an_unknown_alembic_revision_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    with closing(open_db(db)) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0999'")
        conn.commit()
    with pytest.raises(StateError, match="revision 0999"):
        open_db(db)


def test_concurrent_upgraders_apply_each_revision_once(
    state_target, monkeypatch: pytest.MonkeyPatch
) -> None:
    _numbered_only(state_target, monkeypatch)
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            open_db(state_target).close()
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=upgrade) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with closing(open_db(state_target)) as conn:
        assert _alembic.current_revision(conn) == "0011"


_UPGRADER = r"""
import sys, time
from dsa110_contimg.state import _alembic
from dsa110_contimg.state.db import open_db
_alembic._script()  # Alembic imported before the start line
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
open_db(sys.argv[1]).close()
"""


def test_upgraders_in_separate_processes_apply_each_revision_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Services starting together on a version-8 SQLite database all succeed.

    Alembic commits after each revision when it owns the transaction (SQLite:
    no transactional DDL), which let a second process in between two
    revisions of the first: it ran ``0009`` again ("duplicate column name:
    host"). Threads of one process cannot show it (one Alembic run at a time).
    """
    import subprocess
    import sys

    for run in range(3):
        db = tmp_path / f"s{run}.sqlite3"
        _numbered_only(db, monkeypatch)
        start = time.time() + 4.0
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _UPGRADER, str(db), repr(start)],
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, errors
        with closing(open_db(db)) as conn:
            assert _alembic.current_revision(conn) == _alembic.head_revision()
            assert table_exists(conn, "alert_state")


def _sqlite_schema(path: Path) -> tuple[dict, set]:
    with closing(connect(path)) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%'"
            )
        ]
        columns = {
            t: [
                (r[1], r[2].split("(")[0].strip().upper())
                for r in conn.execute(f"PRAGMA table_info({t})")
            ]
            for t in tables
        }
        indexes = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' "
                "AND name NOT LIKE 'sqlite_autoindex%'"
            )
        }
    return columns, indexes


_PG_TYPES = {
    "bigint": "INTEGER",
    "integer": "INTEGER",
    "text": "TEXT",
    "double precision": "REAL",
    "character varying": "VARCHAR",
}


@pytest.mark.scaleout
def test_postgresql_made_by_alembic_has_the_sqlite_tables_and_columns(
    tmp_path: Path, postgres_url: str
) -> None:
    sqlite_path = tmp_path / "s.sqlite3"
    open_db(sqlite_path).close()
    columns, indexes = _sqlite_schema(sqlite_path)
    with closing(open_db(postgres_url)) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, data_type "
            "FROM information_schema.columns WHERE table_schema = current_schema() "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
        pg_indexes = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
            )
        }
    pg_columns: dict[str, list] = {}
    for table, column, kind in rows:
        pg_columns.setdefault(table, []).append((column, _PG_TYPES[kind]))
    assert pg_columns == columns
    assert "claims" in pg_columns and ("host", "TEXT") in pg_columns["claims"]
    assert pg_indexes == indexes


@pytest.mark.scaleout
def test_a_postgresql_outage_is_ridden_out_with_backoff(tmp_path: Path) -> None:
    """Stop PostgreSQL for a while: a statement between transactions waits and
    reconnects; a transaction cut in the middle fails retryable, nothing half-done.
    """
    pytest.importorskip("psycopg")
    from tests.servers.postgres import PostgresServer, find_bindir

    from dsa110_contimg.state._postgres import DatabaseUnavailableError

    if find_bindir() is None:
        pytest.skip("PostgreSQL binaries not installed")
    server = PostgresServer().init().start()
    try:
        url = server.create_database()
        conn = open_db(url)
        conn.execute(
            "INSERT INTO products (block_id, kind, path, created_at) "
            "VALUES ('b', 'ms', '/a', 't')"
        )
        conn.commit()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO products (block_id, kind, path, created_at) "
            "VALUES ('b', 'ms', '/half', 't')"
        )
        server.stop()
        with pytest.raises(DatabaseUnavailableError) as excinfo:
            conn.execute("SELECT 1")
        assert excinfo.value.retryable and not conn.in_transaction
        assert isinstance(excinfo.value, DatabaseError)  # runners ride it out
        restart = threading.Timer(3.0, server.start)
        restart.start()
        t0 = time.monotonic()
        rows = conn.execute("SELECT path FROM products ORDER BY id").fetchall()
        waited = time.monotonic() - t0
        restart.join()
        assert [r[0] for r in rows] == ["/a"], "the cut transaction left nothing"
        assert 2.5 < waited < 30
        conn.close()
    finally:
        server.cleanup()


@pytest.mark.scaleout
def test_held_claims_survive_a_postgresql_restart() -> None:
    """The renewing thread rides out a short outage; the claim stays held."""
    pytest.importorskip("psycopg")
    from tests.servers.postgres import PostgresServer, find_bindir

    from dsa110_contimg.state.claims import hold_claims

    if find_bindir() is None:
        pytest.skip("PostgreSQL binaries not installed")
    server = PostgresServer().init().start()
    try:
        url = server.create_database()
        with hold_claims(url, ["ms:x"], ttl_s=6.0) as held:
            server.stop()
            time.sleep(3.0)  # a renewal (every 2 s) waits for the server
            server.start()
            time.sleep(6.0)  # longer than the TTL: only renewals keep it
        with closing(open_db(url)) as conn:
            row = conn.execute(
                "SELECT owner, token FROM claims WHERE key = 'ms:x'"
            ).fetchone()
        assert row[0] is None and row[1] == held[0].token  # released, not lost
    finally:
        server.cleanup()


@pytest.mark.scaleout
def test_postgresql_connections_are_pooled_and_never_wait(postgres_url: str) -> None:
    open_db(postgres_url).close()
    conns = [connect(postgres_url) for _ in range(20)]  # above the pool size
    pids = {c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in conns}
    assert len(pids) == 20
    for c in conns:
        c.close()
    with closing(connect(postgres_url)) as again:
        assert again.execute("SELECT pg_backend_pid()").fetchone()[0] in pids
