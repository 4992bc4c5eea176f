"""SQLite connections and numbered schema migrations for the pipeline state DB.

The schema lives in ``state/schema/NNNN_name.sql`` files. `migrate` applies the
ones a database lacks (a number skipped on one branch and added later is
applied when it arrives), in order, inside one ``BEGIN IMMEDIATE`` transaction, and
records each in the ``schema_version`` table. Timestamps are UTC ISO-8601 text
written by `to_iso_utc`, so they sort and compare as strings.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from dsa110_contimg.exceptions import ResourceError, StateError

__all__ = [
    "BUSY_TIMEOUT_S",
    "Connection",
    "DatabaseError",
    "connect",
    "database_file",
    "latest_schema_version",
    "migrate",
    "open_db",
    "probe_schema_version",
    "schema_version",
    "to_iso_utc",
]

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 30.0
"""Seconds a connection waits for a lock held by another writer."""

Connection = sqlite3.Connection
"""The type of a state-database connection everywhere outside this module.

Code outside ``state/`` names this alias, never the driver, so another backend
(PostgreSQL for issue 17) plugs in here.
"""

DatabaseError = sqlite3.Error
"""The base class of the database driver's errors (locked, I/O, corrupt...)."""

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class _Migration:
    version: int
    name: str
    sql: str


def to_iso_utc(when: datetime | None = None) -> str:
    """Format a time as the UTC ISO-8601 text stored in ``*_at`` columns.

    Parameters
    ----------
    when : datetime, optional
        A timezone-aware time; the current time when omitted.

    Returns
    -------
    str
        E.g. ``"2025-01-02T03:04:05.000000+00:00"``; always microseconds and
        ``+00:00``, so stored values compare correctly as strings.

    Raises
    ------
    ValueError
        If ``when`` is naive (its timezone would be a guess).
    """
    if when is None:
        when = datetime.now(UTC)
    elif when.tzinfo is None or when.utcoffset() is None:
        msg = f"datetime {when!r} is naive; pass a timezone-aware time (e.g. UTC)"
        raise ValueError(msg)
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def connect(path: Path, *, readonly: bool = False) -> Connection:
    """Open an SQLite connection with the pipeline's settings.

    Parameters
    ----------
    path : Path
        Database file. For a writable connection its parent directory is
        created when missing.
    readonly : bool, optional
        Open with ``mode=ro`` and ``query_only`` (for the API and reports).
        The file must already exist.

    Returns
    -------
    Connection
        WAL journal, foreign keys on, a busy timeout of `BUSY_TIMEOUT_S` and
        `sqlite3.Row` rows. The caller closes it.

    Raises
    ------
    StateError
        If ``readonly`` and the database does not exist, if ``path`` cannot
        be a database file (a parent is a regular file, it is a directory),
        or if the file is not an SQLite database (corrupt or foreign).
    ResourceError
        The disk is full or the directory not writable.
    """
    path = Path(path)
    try:
        return _connect(path, readonly=readonly)
    except sqlite3.DatabaseError as err:
        text = str(err).lower()
        if "disk" in text and "full" in text:
            msg = f"state database {path}: {err}; free space there, then retry"
            raise ResourceError(msg) from err
        if "not a database" in text or "malformed" in text:
            msg = (
                f"state database {path} is not a usable SQLite database ({err}); "
                "it is corrupt or another file: move it aside and restore a backup, "
                "or point paths.state_db at a new file"
            )
        else:
            msg = (
                f"state database {path} cannot be opened ({err}); check that "
                "paths.state_db names a file in a writable directory"
            )
        raise StateError(msg) from err
    except (NotADirectoryError, FileExistsError, IsADirectoryError) as err:
        msg = (
            f"state database {path} cannot be created ({err}); a component of "
            "paths.state_db is a regular file or the path is a directory: "
            "choose another path"
        )
        raise StateError(msg) from err
    except PermissionError as err:
        msg = f"state database {path}: {err}; make its directory writable"
        raise ResourceError(msg) from err


def _connect(path: Path, *, readonly: bool) -> Connection:
    if path.is_dir():
        msg = f"state database {path} is a directory; paths.state_db must name a file"
        raise StateError(msg)
    if readonly:
        if not path.is_file():
            msg = (
                f"state database {path} does not exist; create it first "
                "(dsa110-contimg db migrate, or state.db.open_db)"
            )
            raise StateError(msg)
        uri = f"{path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        # reads the file header: a corrupt or foreign file fails here, by name
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if readonly:
            conn.execute("PRAGMA query_only = ON")
        else:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                # e.g. network filesystems; still correct, only less concurrent
                log.warning("wal unavailable", extra={"path": str(path), "mode": mode})
            conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def _load_migrations() -> list[_Migration]:
    schema_dir = resources.files("dsa110_contimg.state").joinpath("schema")
    migrations = []
    for entry in schema_dir.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            continue
        sql = entry.read_text(encoding="utf-8")
        migrations.append(_Migration(int(match[1]), match[2], sql))
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions) or (versions and versions[0] < 1):
        msg = (
            f"schema files in {schema_dir} must be numbered 0001, 0002, ... "
            f"without duplicates; found versions {versions}"
        )
        raise StateError(msg)
    return migrations


def _applied_versions(conn: Connection) -> set[int]:
    return {int(r[0]) for r in conn.execute("SELECT version FROM schema_version")}


def latest_schema_version() -> int:
    """Return the newest schema version this code knows (0 when none)."""
    migrations = _load_migrations()
    return migrations[-1].version if migrations else 0


def schema_version(conn: Connection) -> int:
    """Return the schema version recorded in a database (0 when unmigrated)."""
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if has_table is None:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def database_file(conn: Connection) -> str | None:
    """Return the file of ``conn``'s main database, or None when it has none.

    None for an in-memory database (only one connection can see it).
    """
    for row in conn.execute("PRAGMA database_list"):
        if row[1] == "main":
            return str(row[2]) or None
    return None


def _db_file(conn: Connection) -> str:
    return database_file(conn) or ":memory:"


def _check_not_newer(conn: Connection, current: int, latest: int) -> None:
    if current > latest:
        msg = (
            f"state database {_db_file(conn)} has schema version {current}, but this "
            f"dsa110-contimg knows versions up to {latest}; upgrade dsa110-contimg "
            "or point paths.state_db at a database this version created"
        )
        raise StateError(msg)


def _split_statements(sql: str) -> list[str]:
    # sqlite3.complete_statement understands literals and trigger bodies
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


def migrate(conn: Connection) -> int:
    """Apply the schema files a database lacks and return its schema version.

    Pending migrations run in one ``BEGIN IMMEDIATE`` transaction, so a failure
    leaves the database unchanged and concurrent processes apply each file once.

    Parameters
    ----------
    conn : Connection
        A writable connection from `connect`, not inside a transaction.

    Returns
    -------
    int
        The schema version after migrating (`latest_schema_version`).

    Raises
    ------
    StateError
        If the database has a newer schema version than this code knows.
    """
    if conn.in_transaction:
        msg = "migrate() needs a connection with no open transaction"
        raise ValueError(msg)
    migrations = _load_migrations()
    latest = migrations[-1].version if migrations else 0
    conn.execute(_CREATE_VERSION_TABLE)
    current = schema_version(conn)
    _check_not_newer(conn, current, latest)
    if {m.version for m in migrations} <= _applied_versions(conn):
        return current
    conn.execute("BEGIN IMMEDIATE")
    try:
        # another process may have migrated while we waited for the lock
        current = schema_version(conn)
        _check_not_newer(conn, current, latest)
        applied = _applied_versions(conn)
        for migration in migrations:  # every file not yet applied, gaps too
            if migration.version in applied:
                continue
            for statement in _split_statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, name, applied_at) "
                "VALUES (?, ?, ?)",
                (migration.version, migration.name, to_iso_utc()),
            )
            log.info(
                "schema migrated",
                extra={"version": migration.version, "migration": migration.name},
            )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return latest


def open_db(path: Path) -> Connection:
    """Connect to the state database and bring its schema up to date.

    Parameters
    ----------
    path : Path
        Database file; created with its parent directory when missing.

    Returns
    -------
    Connection
        A writable, migrated connection. The caller closes it.

    Raises
    ------
    StateError
        If the database has a newer schema version than this code knows.
    """
    conn = connect(path)
    try:
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _open_for_reading(path: Path) -> Connection:
    """Open a SQLite file without writing anything beside it.

    A read-only reader of a WAL database creates ``-wal``/``-shm`` files
    unless they exist (a writer is active: read through them) or the file is
    opened ``immutable`` (no writer: nothing to miss).
    """
    wal = path.with_name(path.name + "-wal")
    flags = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?{flags}", uri=True, timeout=5)
    conn.execute("PRAGMA query_only = ON")
    return conn


def probe_schema_version(path: Path) -> int:
    """Read the schema version of an existing database file, changing nothing.

    Unlike `connect` (``readonly``) no ``-wal``/``-shm`` file is created beside
    a database no writer has open, so a health check leaves no trace.

    Parameters
    ----------
    path : Path
        An existing database file.

    Returns
    -------
    int
        Its schema version (0 when unmigrated).

    Raises
    ------
    DatabaseError, OSError
        The file cannot be opened or read as an SQLite database.
    """
    conn = _open_for_reading(Path(path))
    try:
        conn.execute("SELECT 1").fetchone()
        return schema_version(conn)
    finally:
        conn.close()
