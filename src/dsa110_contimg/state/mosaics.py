"""Record which images went into which mosaic (``mosaic_members`` table).

Each function is one transaction on a connection from `state.db.open_db`.
Column names match ``state/schema/0004_mosaics.sql`` (``rejected`` from
``0007_image_quality.sql``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa

from dsa110_contimg.state import schema_core as core
from dsa110_contimg.state._core import Query, upsert
from dsa110_contimg.state.db import Connection, to_iso_utc

__all__ = ["MEMBER_STATUSES", "list_mosaic_members", "record_mosaic_members"]

MEMBER_STATUSES = ("used", "missing", "corrupt", "empty", "incomplete", "rejected")
"""Allowed ``mosaic_members.status`` values."""

_COLUMNS = ("block_id", "mosaic_path", "image_path", "status", "detail", "created_at")
_M = core.mosaic_members
_UPSERT_MEMBER = Query(upsert(_M, _COLUMNS, ("mosaic_path", "image_path")))


@functools.lru_cache(maxsize=4)
def _list_query(by_block: bool, by_image: bool) -> Query:
    where = []
    if by_block:
        where.append(_M.c.block_id == sa.bindparam("block_id"))
    if by_image:
        where.append(_M.c.image_path == sa.bindparam("image_path"))
    return Query(
        sa.select(
            _M.c.id,
            _M.c.block_id,
            _M.c.mosaic_path,
            _M.c.image_path,
            _M.c.status,
            _M.c.detail,
            _M.c.created_at,
        )
        .where(*where)
        .order_by(_M.c.id)
    )


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
        row = (block_id, str(mosaic_path), str(image_path), status, detail or None, now)
        rows.append(dict(zip(_COLUMNS, row, strict=True)))
    with conn:
        _UPSERT_MEMBER.executemany(conn, rows)


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
    params = {"block_id": block_id, "image_path": None}
    if image_path is not None:
        params["image_path"] = str(image_path)
    query = _list_query(block_id is not None, image_path is not None)
    cursor = query.execute(conn, params)
    columns = [description[0] for description in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
