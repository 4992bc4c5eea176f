"""Paged, read-only listings of the state database for the HTTP API.

Each function returns ``(rows, total)``: at most ``limit`` rows from
``offset`` on, in a stable order, and the number of rows the filter matches
without paging. Rows are dicts keyed by column name. The listings ordered by
id (jobs, job events, products) also page by key: ``before_id`` keeps only
rows with a smaller id (newest first), so the next page starts after the
last row seen however many rows were added meanwhile, and costs an index
range scan instead of skipping ``offset`` rows. Everything works on a
read-only connection (``state.db.connect(path, readonly=True)``).
"""

from __future__ import annotations

from collections.abc import Sequence

from dsa110_contimg.state.db import Connection
from dsa110_contimg.state.jobs.model import _COLUMNS as _JOB_COLUMNS
from dsa110_contimg.state.jobs.model import Job, _row_to_job

__all__ = [
    "Page",
    "block_summary",
    "list_blocks",
    "list_cal_solutions",
    "list_image_quality_page",
    "list_jobs_page",
    "list_job_events_page",
    "list_products_page",
    "list_rejected_page",
    "get_product",
    "get_cal_solution",
    "job_exists",
]

Page = tuple[list[dict[str, object]], int]
"""Rows of one page and the total the filter matches."""


def _check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        msg = f"limit and offset must be >= 0, got limit={limit}, offset={offset}"
        raise ValueError(msg)


def _dicts(cursor) -> list[dict[str, object]]:
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _where(filters: Sequence[tuple[str, object]]) -> tuple[str, list[object]]:
    clauses, params = [], []
    for clause, value in filters:
        if value is None:
            continue
        if isinstance(value, tuple | list):
            marks = ", ".join("?" for _ in value) or "NULL"
            clauses.append(clause.replace("?", f"({marks})"))
            params.extend(value)
        else:
            clauses.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _one(
    conn: Connection, columns: str, source: str, key: str, value: object
) -> dict[str, object] | None:
    """Return the one row of ``source`` whose ``key`` is ``value``, or None."""
    rows = _dicts(
        conn.execute(f"SELECT {columns} FROM {source} WHERE {key} = ?", (value,))
    )
    return rows[0] if rows else None


def _page(
    conn: Connection,
    select: str,
    table: str,
    filters: Sequence[tuple[str, object]],
    order: str,
    limit: int,
    offset: int,
    keyset: tuple[str, object] = ("", None),
) -> Page:
    """One page; ``keyset`` (a clause, its value) narrows the rows, not the total."""
    _check_page(limit, offset)
    where, params = _where(filters)
    total = conn.execute(f"SELECT COUNT(*) FROM {table}{where}", params).fetchone()[0]
    where, params = _where([*filters, keyset])
    rows = _dicts(
        conn.execute(
            f"SELECT {select} FROM {table}{where} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )
    )
    return rows, int(total)


def list_jobs_page(
    conn: Connection,
    *,
    states: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    limit: int = 50,
    offset: int = 0,
    newest_first: bool = True,
    before_id: int | None = None,
) -> tuple[list[Job], int]:
    """Return one page of jobs (by id, newest first by default) and the total.

    ``before_id``: only jobs with a smaller id (newest first) or a larger one
    (``newest_first`` false); the total ignores it.
    """
    _check_page(limit, offset)
    filters = [("state IN ?", states), ("kind IN ?", kinds)]
    where, params = _where(filters)
    total = conn.execute(f"SELECT COUNT(*) FROM jobs{where}", params).fetchone()[0]
    where, params = _where(
        [*filters, ("id < ?" if newest_first else "id > ?", before_id)]
    )
    order = "id DESC" if newest_first else "id"
    rows = conn.execute(
        f"SELECT {_JOB_COLUMNS} FROM jobs{where} ORDER BY {order} LIMIT ? OFFSET ?",
        [*params, int(limit), int(offset)],
    ).fetchall()
    return [_row_to_job(r) for r in rows], int(total)


def list_job_events_page(
    conn: Connection,
    *,
    job_id: int | None = None,
    errors_only: bool = False,
    limit: int = 50,
    offset: int = 0,
    before_id: int | None = None,
) -> Page:
    """Return job events, newest first, with the job's kind and key.

    ``before_id``: only events with a smaller id (the total ignores it).
    """
    filters: list[tuple[str, object]] = [("e.job_id = ?", job_id)]
    if errors_only:
        filters.append(("e.error_class IS NOT NULL AND 1 = ?", 1))
    select = (
        "e.id, e.job_id, j.kind, j.key, e.from_state, e.to_state, e.reason, "
        "e.worker, e.error_class, e.created_at"
    )
    return _page(
        conn,
        select,
        "job_events e JOIN jobs j ON j.id = e.job_id",
        filters,
        "e.id DESC",
        limit,
        offset,
        ("e.id < ?", before_id),
    )


_PRODUCT_COLUMNS = "id, block_id, kind, path, group_id, created_at"


def list_products_page(
    conn: Connection,
    *,
    kinds: Sequence[str] | None = None,
    block_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
    before_id: int | None = None,
) -> Page:
    """Return products (newest first), optionally of some kinds or one block.

    ``before_id``: only products with a smaller id (the total ignores it).
    """
    return _page(
        conn,
        _PRODUCT_COLUMNS,
        "products",
        [("kind IN ?", kinds), ("block_id = ?", block_id)],
        "id DESC",
        limit,
        offset,
        ("id < ?", before_id),
    )


def job_exists(conn: Connection, job_id: int) -> bool:
    """Return whether a job with this id is in the queue."""
    row = conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return row is not None


def get_product(conn: Connection, product_id: int) -> dict[str, object] | None:
    """Return one product row by id, or None."""
    return _one(conn, _PRODUCT_COLUMNS, "products", "id", product_id)


_BLOCKS = (
    "(SELECT p.block_id AS block_id, COUNT(*) AS n_products, "
    "SUM(CASE WHEN p.kind = 'image' THEN 1 ELSE 0 END) AS n_images, "
    "SUM(CASE WHEN p.kind = 'mosaic' THEN 1 ELSE 0 END) AS n_mosaics, "
    "MIN(p.created_at) AS first_product_at, MAX(p.created_at) AS last_product_at, "
    "(SELECT m.success FROM block_metrics m WHERE m.block_id = p.block_id "
    "ORDER BY m.recorded_at DESC, m.id DESC LIMIT 1) AS success, "
    "(SELECT m.processing_time_s FROM block_metrics m WHERE m.block_id = p.block_id "
    "ORDER BY m.recorded_at DESC, m.id DESC LIMIT 1) AS processing_time_s "
    "FROM products p GROUP BY p.block_id)"
)


def list_blocks(conn: Connection, *, limit: int = 50, offset: int = 0) -> Page:
    """Return the blocks that have products, newest block id first.

    Rows: ``block_id``, ``n_products``, ``n_images``, ``n_mosaics``,
    ``first_product_at``, ``last_product_at`` and, from the newest
    ``block_metrics`` row, ``success`` (0/1 or None) and ``processing_time_s``.
    """
    return _page(conn, "*", _BLOCKS, [], "block_id DESC", limit, offset)


def block_summary(conn: Connection, block_id: str) -> dict[str, object] | None:
    """Return one block's `list_blocks` row, or None when it has no product."""
    return _one(conn, "*", _BLOCKS, "block_id", block_id)


_CAL_COLUMNS = (
    "id, calibrator, group_id, ms_path, bandpass_table, gain_table, refant, "
    "dec_strip_deg, transit_mjd, valid_from_mjd, valid_to_mjd, quality_json, "
    "solved_at, (SELECT COUNT(*) FROM cal_applications a WHERE a.solution_id = "
    "cal_solutions.id) AS n_applied"
)


def list_cal_solutions(
    conn: Connection,
    *,
    dec_strip_deg: float | None = None,
    valid_at_mjd: float | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page:
    """Return calibration solutions, newest transit first.

    Parameters
    ----------
    dec_strip_deg : float, optional
        Only this strip (matched within 1e-6 deg).
    valid_at_mjd : float, optional
        Only solutions whose validity window holds this MJD.
    """
    filters: list[tuple[str, object]] = []
    if dec_strip_deg is not None:
        filters.append(("ABS(dec_strip_deg - ?) < 1e-6", float(dec_strip_deg)))
    if valid_at_mjd is not None:
        filters += [
            ("valid_from_mjd <= ?", float(valid_at_mjd)),
            ("valid_to_mjd >= ?", float(valid_at_mjd)),
        ]
    return _page(
        conn,
        _CAL_COLUMNS,
        "cal_solutions",
        filters,
        "transit_mjd DESC, id DESC",
        limit,
        offset,
    )


def get_cal_solution(conn: Connection, solution_id: int) -> dict[str, object] | None:
    """Return one calibration solution by id (with ``n_applied``), or None."""
    return _one(conn, _CAL_COLUMNS, "cal_solutions", "id", solution_id)


def list_rejected_page(
    conn: Connection,
    *,
    include_resolved: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> Page:
    """Return raw files set aside by intake (newest change first)."""
    filters = [] if include_resolved else [("resolved_at IS NULL AND 1 = ?", 1)]
    return _page(
        conn,
        "id, path, kind, reason, group_id, size_bytes, first_seen_at, updated_at, "
        "resolved_at",
        "rejected_files",
        filters,
        "updated_at DESC, id DESC",
        limit,
        offset,
    )


def list_image_quality_page(
    conn: Connection,
    *,
    block_id: str | None = None,
    image_path: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page:
    """Return image quality records (newest first), without ``record_json``."""
    return _page(
        conn,
        "id, block_id, image_path, passed, reason, rms_jy, thermal_rms_jy, "
        "expected_rms_jy, rms_ratio, peak_jy, min_jy, dynamic_range, "
        "negative_ratio, peak_growth, hit_niter, n_attempts, created_at",
        "image_quality",
        [("block_id = ?", block_id), ("image_path = ?", image_path)],
        "id DESC",
        limit,
        offset,
    )
