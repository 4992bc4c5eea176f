"""Record subband groups and pipeline products in the state database.

Each function is one transaction on a connection from `state.db.open_db`.
Column names match the DB schema (``state/schema/0001_initial.sql``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from dsa110_contimg.state.db import Connection, to_iso_utc

__all__ = [
    "list_image_quality",
    "list_products",
    "list_products_since",
    "record_group",
    "record_image_quality",
    "record_product",
]

_QUALITY_COLUMNS = (
    "rms_jy",
    "thermal_rms_jy",
    "expected_rms_jy",
    "rms_ratio",
    "peak_jy",
    "min_jy",
    "dynamic_range",
    "negative_ratio",
    "peak_growth",
    "hit_niter",
)

_UPSERT_GROUP = """
INSERT INTO groups (
    group_id, start_time_iso, n_subbands, ms_path, status,
    error_class, error_message, updated_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (group_id) DO UPDATE SET
    start_time_iso = excluded.start_time_iso,
    n_subbands = excluded.n_subbands,
    ms_path = excluded.ms_path,
    status = excluded.status,
    error_class = excluded.error_class,
    error_message = excluded.error_message,
    updated_at = excluded.updated_at
"""

_UPSERT_PRODUCT = """
INSERT INTO products (block_id, kind, path, group_id, created_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (path) DO UPDATE SET
    block_id = excluded.block_id,
    kind = excluded.kind,
    group_id = excluded.group_id,
    created_at = excluded.created_at
"""


def record_group(
    conn: Connection,
    *,
    group_id: str,
    start_time_iso: str,
    n_subbands: int,
    ms_path: str | Path | None,
    status: str,
    error_class: str | None = None,
    error_message: str | None = None,
) -> None:
    """Insert or replace the row of one subband group.

    Parameters
    ----------
    conn : Connection
        Writable, migrated connection.
    group_id : str
        The group's identifier (its timestamp, per ``DSA110.md``).
    start_time_iso : str
        ISO-8601 start time of the group.
    n_subbands : int
        Number of subband files found for the group.
    ms_path : str or Path or None
        The converted MS, or None before conversion.
    status : str
        Processing status, e.g. ``"pending"``, ``"done"``, ``"failed"``.
    error_class, error_message : str, optional
        Exception class name and message of a failure; cleared when omitted.
    """
    if not group_id:
        msg = "group_id must be a non-empty string"
        raise ValueError(msg)
    if n_subbands < 0:
        msg = f"n_subbands must be >= 0, got {n_subbands}"
        raise ValueError(msg)
    row = (
        group_id,
        start_time_iso,
        n_subbands,
        None if ms_path is None else str(ms_path),
        status,
        error_class,
        error_message,
        to_iso_utc(),
    )
    with conn:
        conn.execute(_UPSERT_GROUP, row)


def record_product(
    conn: Connection,
    *,
    block_id: str,
    kind: str,
    path: str | Path,
    group_id: str | None = None,
) -> None:
    """Insert a product, or update the row that already has its path.

    Parameters
    ----------
    conn : Connection
        Writable, migrated connection.
    block_id : str
        The processing block that made the product.
    kind : str
        Product kind, e.g. ``"ms"``, ``"image"``, ``"mosaic"``.
    path : str or Path
        File or directory of the product; unique across the table.
    group_id : str, optional
        The subband group it came from, if any.

    Notes
    -----
    Re-recording a path (a rerun rewrote the product) replaces its block, kind
    and group and sets ``created_at`` to now.
    """
    if not str(path):
        msg = "path must be non-empty"
        raise ValueError(msg)
    row = (block_id, kind, str(path), group_id, to_iso_utc())
    with conn:
        conn.execute(_UPSERT_PRODUCT, row)


def list_products(
    conn: Connection, *, block_id: str | None = None
) -> list[dict[str, object]]:
    """Return product rows, oldest first.

    Parameters
    ----------
    conn : Connection
        Connection to a migrated database (read-only is fine).
    block_id : str, optional
        Only products of this block.

    Returns
    -------
    list of dict
        One dict per row with the ``products`` column names as keys.
    """
    sql = "SELECT id, block_id, kind, path, group_id, created_at FROM products"
    params: tuple[str, ...] = ()
    if block_id is not None:
        sql += " WHERE block_id = ?"
        params = (block_id,)
    return _dicts(conn.execute(sql + " ORDER BY id", params))


def list_products_since(conn: Connection, since_iso: str) -> list[dict[str, object]]:
    """Return product rows recorded at or after ``since_iso`` (UTC ISO text)."""
    return _dicts(
        conn.execute(
            "SELECT id, block_id, kind, path, group_id, created_at FROM products "
            "WHERE created_at >= ? ORDER BY id",
            (since_iso,),
        )
    )


def record_image_quality(
    conn: Connection, *, block_id: str, record: Mapping[str, object]
) -> None:
    """Insert or replace the quality-gate record of one image.

    Parameters
    ----------
    conn : Connection
        Writable connection migrated to schema 0005 or later.
    block_id : str
        The processing block that made the image.
    record : mapping
        `ImageQuality.to_dict` of the image (``image_path``, ``passed``,
        ``reasons``, the measurements and ``attempts``), as written to its
        ``-qa.json``; stored whole in ``record_json``.
    """
    path = str(record["image_path"])
    values = [record.get(k) for k in _QUALITY_COLUMNS]
    reasons = [str(r) for r in record.get("reasons") or []]  # type: ignore[union-attr]
    columns = ", ".join(_QUALITY_COLUMNS)
    marks = ", ".join("?" for _ in _QUALITY_COLUMNS)
    updates = ", ".join(
        f"{c} = excluded.{c}"
        for c in ("block_id", "passed", "reason", *_QUALITY_COLUMNS)
        + ("n_attempts", "record_json", "created_at")
    )
    sql = (
        f"INSERT INTO image_quality (block_id, image_path, passed, reason, {columns}, "
        f"n_attempts, record_json, created_at) VALUES (?, ?, ?, ?, {marks}, ?, ?, ?) "
        f"ON CONFLICT (image_path) DO UPDATE SET {updates}"
    )
    row = (
        block_id,
        path,
        int(bool(record.get("passed"))),
        "; ".join(reasons) or None,
        *values,
        1 + len(record.get("attempts") or []),  # type: ignore[arg-type]
        json.dumps(record),
        to_iso_utc(),
    )
    with conn:
        conn.execute(sql, row)


def list_image_quality(
    conn: Connection, *, block_id: str | None = None
) -> list[dict[str, object]]:
    """Return image quality rows (oldest first), optionally of one block."""
    sql = "SELECT * FROM image_quality"
    params: tuple[str, ...] = ()
    if block_id is not None:
        sql += " WHERE block_id = ?"
        params = (block_id,)
    return _dicts(conn.execute(sql + " ORDER BY id", params))


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, object]]:
    columns = [description[0] for description in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
