"""Record which images went into which mosaic (``mosaic_members`` table).

Each function is one transaction on a connection from `state.db.open_db`.
Column names match ``state/schema/0004_mosaics.sql`` (``rejected`` from
``0007_image_quality.sql``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dsa110_contimg.state.db import Connection, to_iso_utc

__all__ = ["MEMBER_STATUSES", "list_mosaic_members", "record_mosaic_members"]

MEMBER_STATUSES = ("used", "missing", "corrupt", "empty", "incomplete", "rejected")
"""Allowed ``mosaic_members.status`` values."""

_UPSERT_MEMBER = """
INSERT INTO mosaic_members (block_id, mosaic_path, image_path, status, detail,
                            created_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (mosaic_path, image_path) DO UPDATE SET
    block_id = excluded.block_id,
    status = excluded.status,
    detail = excluded.detail,
    created_at = excluded.created_at
"""


def record_mosaic_members(
    conn: Connection,
    *,
    block_id: str,
    mosaic_path: str | Path,
    members: Iterable[tuple[str | Path, str, str]],
) -> None:
    """Insert or update the member rows of one mosaic.

    Parameters
    ----------
    conn : Connection
        Writable, migrated connection.
    block_id : str
        The processing block the mosaic belongs to.
    mosaic_path : str or Path
        The mosaic FITS file.
    members : iterable of (image_path, status, detail)
        Every image planned for the mosaic with its status (one of
        `MEMBER_STATUSES`) and a short reason when not used.

    Raises
    ------
    ValueError
        A status is not one of `MEMBER_STATUSES`.
    """
    now = to_iso_utc()
    rows = []
    for image_path, status, detail in members:
        if status not in MEMBER_STATUSES:
            msg = f"member status must be one of {MEMBER_STATUSES}, got {status!r}"
            raise ValueError(msg)
        rows.append(
            (block_id, str(mosaic_path), str(image_path), status, detail or None, now)
        )
    with conn:
        conn.executemany(_UPSERT_MEMBER, rows)


def list_mosaic_members(
    conn: Connection,
    *,
    block_id: str | None = None,
    image_path: str | Path | None = None,
) -> list[dict[str, object]]:
    """Return member rows, optionally of one block or one image, oldest first.

    Returns
    -------
    list of dict
        One dict per row with the ``mosaic_members`` column names as keys.
    """
    sql = (
        "SELECT id, block_id, mosaic_path, image_path, status, detail, created_at "
        "FROM mosaic_members"
    )
    clauses, params = [], []
    if block_id is not None:
        clauses.append("block_id = ?")
        params.append(block_id)
    if image_path is not None:
        clauses.append("image_path = ?")
        params.append(str(image_path))
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    cursor = conn.execute(sql + " ORDER BY id", params)
    columns = [description[0] for description in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
