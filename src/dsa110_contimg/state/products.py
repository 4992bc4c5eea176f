"""Record subband groups and pipeline products in the state database.

Each function is one transaction on a connection from `state.db.open_db`.
Column names match the DB schema (``state/schema/0001_initial.sql``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa

from dsa110_contimg.state import schema_core as core
from dsa110_contimg.state._core import Query, upsert
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

_GROUP_COLUMNS = (
    "group_id",
    "start_time_iso",
    "n_subbands",
    "ms_path",
    "status",
    "error_class",
    "error_message",
    "updated_at",
)
_UPSERT_GROUP = Query(upsert(core.groups, _GROUP_COLUMNS, ("group_id",)))
_UPSERT_PRODUCT = Query(
    upsert(
        core.products,
        ("block_id", "kind", "path", "group_id", "created_at"),
        ("path",),
    )
)
_UPSERT_QUALITY = Query(
    upsert(
        core.image_quality,
        (
            "block_id",
            "image_path",
            "passed",
            "reason",
            *_QUALITY_COLUMNS,
            "n_attempts",
            "record_json",
            "created_at",
        ),
        ("image_path",),
    )
)
_P = core.products
_PRODUCT_COLUMNS = (_P.c.id, _P.c.block_id, _P.c.kind, _P.c.path, _P.c.group_id)
_PRODUCTS = sa.select(*_PRODUCT_COLUMNS, _P.c.created_at)
_LIST_PRODUCTS = Query(_PRODUCTS.order_by(_P.c.id))
_LIST_PRODUCTS_OF = Query(
    _PRODUCTS.where(_P.c.block_id == sa.bindparam("block_id")).order_by(_P.c.id)
)
_LIST_PRODUCTS_SINCE = Query(
    _PRODUCTS.where(_P.c.created_at >= sa.bindparam("since")).order_by(_P.c.id)
)
_Q = core.image_quality
_LIST_QUALITY = Query(sa.select(_Q).order_by(_Q.c.id))
_LIST_QUALITY_OF = Query(
    sa.select(_Q).where(_Q.c.block_id == sa.bindparam("block_id")).order_by(_Q.c.id)
)


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
        _UPSERT_GROUP.execute(conn, dict(zip(_GROUP_COLUMNS, row, strict=True)))


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
    row = {
        "block_id": block_id,
        "kind": kind,
        "path": str(path),
        "group_id": group_id,
        "created_at": to_iso_utc(),
    }
    with conn:
        _UPSERT_PRODUCT.execute(conn, row)


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
    if block_id is None:
        return _dicts(_LIST_PRODUCTS.execute(conn))
    return _dicts(_LIST_PRODUCTS_OF.execute(conn, {"block_id": block_id}))


def list_products_since(conn: Connection, since_iso: str) -> list[dict[str, object]]:
    """Return product rows recorded at or after ``since_iso`` (UTC ISO text)."""
    return _dicts(_LIST_PRODUCTS_SINCE.execute(conn, {"since": since_iso}))


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
    reasons = [str(r) for r in record.get("reasons") or []]  # type: ignore[union-attr]
    row = {
        "block_id": block_id,
        "image_path": str(record["image_path"]),
        "passed": int(bool(record.get("passed"))),
        "reason": "; ".join(reasons) or None,
        **{k: record.get(k) for k in _QUALITY_COLUMNS},
        "n_attempts": 1 + len(record.get("attempts") or []),  # type: ignore[arg-type]
        "record_json": json.dumps(record),
        "created_at": to_iso_utc(),
    }
    with conn:
        _UPSERT_QUALITY.execute(conn, row)


def list_image_quality(
    conn: Connection, *, block_id: str | None = None
) -> list[dict[str, object]]:
    """Return image quality rows (oldest first), optionally of one block."""
    if block_id is None:
        return _dicts(_LIST_QUALITY.execute(conn))
    return _dicts(_LIST_QUALITY_OF.execute(conn, {"block_id": block_id}))


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, object]]:
    columns = [description[0] for description in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
