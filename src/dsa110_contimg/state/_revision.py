"""Autogenerate the next Alembic revision from `state.schema_core.metadata`.

``dsa110-contimg db revision MESSAGE`` runs `revision`: Alembic's
``revision --autogenerate`` against a scratch SQLite database at the head.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from dsa110_contimg.exceptions import StateError
from dsa110_contimg.state import _alembic

__all__ = ["revision"]


def revision(message: str, *, location: Path | None = None) -> Path:
    """Write the next revision from `state.schema_core.metadata` (autogenerate).

    Alembic's ``revision --autogenerate``: a scratch SQLite database is
    migrated to the head, compared with the metadata, and what differs is
    written as ``versions/NNNN_<message>.py`` (``NNNN`` = head + 1), for a
    person to review (PostgreSQL specifics, data moves) and commit.

    Parameters
    ----------
    message : str
        What the revision changes (its docstring; the file name's slug).
    location : Path, optional
        The migrations directory (``state/migrations`` when omitted).

    Returns
    -------
    Path
        The new revision file.

    Raises
    ------
    StateError
        The metadata does not differ from the head: nothing to write.
    """
    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy.pool import StaticPool

    from dsa110_contimg.state._schema_diff import schema_differences
    from dsa110_contimg.state.db import open_db
    from dsa110_contimg.state.schema_core import metadata

    config = _alembic._config(location)
    rev_id = f"{int(_alembic.head_revision()) + 1:04d}"
    with tempfile.TemporaryDirectory(prefix="dsa110-revision-") as scratch:
        conn = open_db(Path(scratch) / "head.sqlite3")
        try:
            engine = create_engine(
                "sqlite://", creator=lambda: conn, poolclass=StaticPool
            )
            with engine.connect() as sa_connection:
                if not schema_differences(sa_connection, metadata):
                    msg = (
                        "state.schema_core.metadata equals the schema at revision "
                        f"{_alembic.head_revision()}: edit the metadata first, "
                        "then run "
                        "this again"
                    )
                    raise StateError(msg)
                config.attributes["connection"] = sa_connection
                with _alembic._RUN_LOCK:
                    script = command.revision(
                        config, message=message, autogenerate=True, rev_id=rev_id
                    )
        finally:
            conn.close()
    return Path(script.path)
