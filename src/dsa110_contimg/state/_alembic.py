"""Alembic migrations of the state database, run programmatically.

No ``alembic.ini`` is needed: `upgrade` builds the Alembic configuration
from the ``state/migrations`` package. The baseline revision ``0008`` is the
last numbered schema file (``state/schema/0008_retention.sql``); `db.migrate`
applies the numbered files first, so a database made by them (or an older
one) is brought to the baseline and Alembic upgrades it in place from there.
Concurrent upgraders are serialized (SQLite: ``BEGIN IMMEDIATE``;
PostgreSQL: an advisory lock), so each revision runs once.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
from importlib import resources
from pathlib import Path
from typing import Any

from dsa110_contimg.exceptions import StateError
from dsa110_contimg.state._postgres import PgConnection, engine_for

Connection = sqlite3.Connection | PgConnection  # as state.db.Connection

__all__ = ["BASELINE", "current_revision", "head_revision", "upgrade"]

BASELINE = "0008"
"""The Alembic revision equal to the newest numbered schema file."""

_MIGRATION_LOCK_KEY = 0x0D5A111

_REVISION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.py$")


_RUN_LOCK = threading.Lock()
"""Alembic's ``context`` is a process-global proxy: one run at a time."""


def _config(location: Path | None = None):
    from alembic.config import Config

    config = Config()
    if location is None:
        location = Path(str(resources.files("dsa110_contimg.state") / "migrations"))
    config.set_main_option("script_location", str(location))
    # versions/NNNN_slug.py, as head_revision reads them
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    return config


@functools.cache
def _script():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


@functools.cache
def head_revision() -> str:
    """The newest Alembic revision this code knows.

    Read from the file names (``versions/NNNN_name.py`` holds revision
    ``NNNN``, each revising the one before), so the common case, a database
    already at the head, needs no Alembic import (about 0.5 s per process).
    `tests/unit/test_state_migrations.py` checks it equals Alembic's head.
    """
    versions = resources.files("dsa110_contimg.state").joinpath("migrations/versions")
    numbers = [
        match[1]
        for entry in versions.iterdir()
        if (match := _REVISION_FILE.match(entry.name)) is not None
    ]
    return max(numbers)


def current_revision(conn: Connection) -> str | None:
    """The database's Alembic revision, None before the first upgrade."""
    if isinstance(conn, PgConnection):
        sql = (
            "SELECT 1 FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = 'alembic_version'"
        )
    else:
        sql = "SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'"
    if conn.execute(sql).fetchone() is None:
        return None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


def _run(sa_connection: Any) -> None:
    from alembic import command

    config = _config()
    config.attributes["connection"] = sa_connection
    with _RUN_LOCK:
        command.upgrade(config, "head")


def upgrade(conn: Connection) -> str:
    """Upgrade ``conn``'s database to the Alembic head; return the revision.

    Parameters
    ----------
    conn : Connection
        A writable connection with no open transaction, at the numbered
        baseline (`db.migrate` calls this after the numbered files).

    Raises
    ------
    StateError
        The database has a revision this code does not know (newer code
        wrote it).
    """
    head = head_revision()
    current = current_revision(conn)
    if current == head:
        return head
    known = {rev.revision for rev in _script().walk_revisions()}  # imports alembic
    if current is not None and current not in known:
        msg = (
            f"state database {_where(conn)} has Alembic "
            f"revision {current}, unknown to this dsa110-contimg (head {head}); "
            "upgrade dsa110-contimg or use a database this version created"
        )
        raise StateError(msg)
    if isinstance(conn, PgConnection):
        _upgrade_postgres(conn.url)
    else:
        _upgrade_sqlite(conn)
    return head


def _where(conn: Connection) -> str:
    if isinstance(conn, PgConnection):
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", conn.url)
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row is not None and row[2] else ":memory:"


def _upgrade_sqlite(conn: sqlite3.Connection) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import StaticPool

    # the caller's connection (an in-memory database has no other), its
    # BEGIN IMMEDIATE held across the whole upgrade: one upgrader at a time.
    # SQLAlchemy's first-connect set-up ends in a rollback, so the lock is
    # taken after it; the transaction is begun outside Alembic, which would
    # otherwise commit after each revision (SQLite has no transactional DDL
    # in its eyes) and let another process run the next revision again.
    engine = create_engine("sqlite://", creator=lambda: conn, poolclass=StaticPool)
    with engine.connect() as sa_connection:
        if sa_connection.in_transaction():
            sa_connection.rollback()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if current_revision(conn) == head_revision():
                conn.rollback()
                return
            with sa_connection.begin():
                _run(sa_connection)
        except BaseException:
            conn.rollback()
            raise
    if conn.in_transaction:
        conn.commit()


def _upgrade_postgres(url: str) -> None:
    from sqlalchemy import text

    with engine_for(url).connect() as sa_connection:
        sa_connection.execute(text(f"SELECT pg_advisory_lock({_MIGRATION_LOCK_KEY})"))
        sa_connection.commit()
        try:
            _run(sa_connection)
            sa_connection.commit()
        finally:
            sa_connection.execute(
                text(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK_KEY})")
            )
            sa_connection.commit()
