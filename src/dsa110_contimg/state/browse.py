"""Paged, read-only listings of the state database for the HTTP API.

Each function returns ``(rows, total)``: at most ``limit`` rows from
``offset`` on, in a stable order, and the number of rows the filter matches
without paging. Rows are dicts keyed by column name. The listings ordered by
id (jobs, job events, products) also page by key: ``before_id`` keeps only
rows with a smaller id (newest first), so the next page starts after the
last row seen however many rows were added meanwhile, and costs an index
range scan instead of skipping ``offset`` rows. Everything works on a
read-only connection (``state.db.connect(path, readonly=True)``).

The statements are SQLAlchemy Core on `state.schema_core`'s tables, one
`state._core.Query` per filter shape (which filters are set, how many values
each list has), compiled once per backend and cached.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from dsa110_contimg.state import schema_core as t
from dsa110_contimg.state._core import Query, const, in_list, in_params
from dsa110_contimg.state.db import Connection
from dsa110_contimg.state.jobs.model import Job, _row_to_job
from dsa110_contimg.state.jobs.queries import event_columns

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

_LIMIT = sa.bindparam("limit")
_OFFSET = sa.bindparam("offset")
_BEFORE = sa.bindparam("before_id")


def _check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        msg = f"limit and offset must be >= 0, got limit={limit}, offset={offset}"
        raise ValueError(msg)


def _dicts(cursor) -> list[dict[str, object]]:
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _paged(
    columns: Sequence,
    source,
    where: Sequence,
    order: Sequence,
    keyset: sa.ColumnElement | None = None,
) -> tuple[Query, Query]:
    """The ``COUNT(*)`` and the page (``LIMIT :limit OFFSET :offset``) queries.

    ``keyset`` (a clause on ``:before_id``) narrows the page, not the total.
    """
    count = sa.select(sa.func.count()).select_from(source).where(*where)
    page_where = [*where] if keyset is None else [*where, keyset]
    rows = (
        sa.select(*columns)
        .select_from(source)
        .where(*page_where)
        .order_by(*order)
        .limit(_LIMIT)
        .offset(_OFFSET)
    )
    return Query(count), Query(rows)


def _page(
    conn: Connection,
    queries: tuple[Query, Query],
    params: dict[str, object],
    limit: int,
    offset: int,
) -> tuple[Any, int]:
    """Run the count and the page; return the page's cursor and the total."""
    count, rows = queries
    total = count.execute(conn, params).fetchone()[0]
    cursor = rows.execute(conn, {**params, "limit": int(limit), "offset": int(offset)})
    return cursor, int(total)


def _n(values: Sequence[object] | None) -> int | None:
    return None if values is None else len(values)


@functools.lru_cache(maxsize=64)
def _jobs_queries(
    n_states: int | None, n_kinds: int | None, newest_first: bool, keyed: bool
) -> tuple[Query, Query]:
    where = []
    if n_states is not None:
        where.append(in_list(t.jobs.c.state, "state", n_states))
    if n_kinds is not None:
        where.append(in_list(t.jobs.c.kind, "kind", n_kinds))
    order = t.jobs.c.id.desc() if newest_first else t.jobs.c.id
    keyset = None
    if keyed:
        keyset = t.jobs.c.id < _BEFORE if newest_first else t.jobs.c.id > _BEFORE
    return _paged(t.jobs.c, t.jobs, where, [order], keyset)


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
    queries = _jobs_queries(
        _n(states), _n(kinds), bool(newest_first), before_id is not None
    )
    params = {
        **in_params("state", states or ()),
        **in_params("kind", kinds or ()),
        "before_id": before_id,
    }
    cursor, total = _page(conn, queries, params, limit, offset)
    return [_row_to_job(r) for r in cursor.fetchall()], total


@functools.lru_cache(maxsize=16)
def _events_queries(
    by_job: bool, errors_only: bool, keyed: bool
) -> tuple[Query, Query]:
    e, j = t.job_events.alias("e"), t.jobs.alias("j")
    where = []
    if by_job:
        where.append(e.c.job_id == sa.bindparam("job_id"))
    if errors_only:
        where.append(e.c.error_class.is_not(None))
    columns = event_columns(e, j)
    source = e.join(j, j.c.id == e.c.job_id)
    keyset = e.c.id < _BEFORE if keyed else None
    return _paged(columns, source, where, [e.c.id.desc()], keyset)


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
    _check_page(limit, offset)
    queries = _events_queries(
        job_id is not None, bool(errors_only), before_id is not None
    )
    params = {"job_id": job_id, "before_id": before_id}
    cursor, total = _page(conn, queries, params, limit, offset)
    return _dicts(cursor), total


@functools.lru_cache(maxsize=64)
def _products_queries(
    n_kinds: int | None, by_block: bool, keyed: bool
) -> tuple[Query, Query]:
    p = t.products
    where = []
    if n_kinds is not None:
        where.append(in_list(p.c.kind, "kind", n_kinds))
    if by_block:
        where.append(p.c.block_id == sa.bindparam("block_id"))
    keyset = p.c.id < _BEFORE if keyed else None
    return _paged(p.c, p, where, [p.c.id.desc()], keyset)


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
    _check_page(limit, offset)
    queries = _products_queries(_n(kinds), block_id is not None, before_id is not None)
    params = {
        **in_params("kind", kinds or ()),
        "block_id": block_id,
        "before_id": before_id,
    }
    cursor, total = _page(conn, queries, params, limit, offset)
    return _dicts(cursor), total


_JOB_EXISTS = Query(sa.select(const(1)).where(t.jobs.c.id == sa.bindparam("id")))


def job_exists(conn: Connection, job_id: int) -> bool:
    """Return whether a job with this id is in the queue."""
    return _JOB_EXISTS.execute(conn, {"id": job_id}).fetchone() is not None


_PRODUCT = Query(sa.select(t.products).where(t.products.c.id == sa.bindparam("value")))


def _one(conn: Connection, query: Query, value: object) -> dict[str, object] | None:
    """The one row ``query`` finds for its parameter ``value``, or None."""
    rows = _dicts(query.execute(conn, {"value": value}))
    return rows[0] if rows else None


def get_product(conn: Connection, product_id: int) -> dict[str, object] | None:
    """Return one product row by id, or None."""
    return _one(conn, _PRODUCT, product_id)


def _blocks() -> sa.Subquery:
    """One row per block that has products (`list_blocks`'s columns)."""
    p, m = t.products, t.block_metrics

    def newest(column: sa.Column) -> sa.ScalarSelect:
        return (
            sa.select(column)
            .where(m.c.block_id == p.c.block_id)
            .order_by(m.c.recorded_at.desc(), m.c.id.desc())
            .limit(const(1))
            .scalar_subquery()
        )

    def n_of(kind: str) -> sa.ColumnElement:
        return sa.func.sum(sa.case((p.c.kind == const(kind), const(1)), else_=const(0)))

    return (
        sa.select(
            p.c.block_id.label("block_id"),
            sa.func.count().label("n_products"),
            n_of("image").label("n_images"),
            n_of("mosaic").label("n_mosaics"),
            sa.func.min(p.c.created_at).label("first_product_at"),
            sa.func.max(p.c.created_at).label("last_product_at"),
            newest(m.c.success).label("success"),
            newest(m.c.processing_time_s).label("processing_time_s"),
        )
        .group_by(p.c.block_id)
        .subquery("b")
    )


_BLOCKS = _blocks()
_BLOCKS_PAGE = _paged(_BLOCKS.c, _BLOCKS, [], [_BLOCKS.c.block_id.desc()])
_BLOCK = Query(sa.select(_BLOCKS).where(_BLOCKS.c.block_id == sa.bindparam("value")))


def list_blocks(conn: Connection, *, limit: int = 50, offset: int = 0) -> Page:
    """Return the blocks that have products, newest block id first.

    Rows: ``block_id``, ``n_products``, ``n_images``, ``n_mosaics``,
    ``first_product_at``, ``last_product_at`` and, from the newest
    ``block_metrics`` row, ``success`` (0/1 or None) and ``processing_time_s``.
    """
    _check_page(limit, offset)
    cursor, total = _page(conn, _BLOCKS_PAGE, {}, limit, offset)
    return _dicts(cursor), total


def block_summary(conn: Connection, block_id: str) -> dict[str, object] | None:
    """Return one block's `list_blocks` row, or None when it has no product."""
    return _one(conn, _BLOCK, block_id)


def _cal_columns() -> list:
    s, a = t.cal_solutions, t.cal_applications
    n_applied = (
        sa.select(sa.func.count())
        .where(a.c.solution_id == s.c.id)
        .scalar_subquery()
        .label("n_applied")
    )
    return [*s.c, n_applied]


_CAL_COLUMNS = _cal_columns()
_CAL = Query(
    sa.select(*_CAL_COLUMNS).where(t.cal_solutions.c.id == sa.bindparam("value"))
)


@functools.lru_cache(maxsize=4)
def _cal_queries(by_strip: bool, by_time: bool) -> tuple[Query, Query]:
    s = t.cal_solutions
    where = []
    if by_strip:
        delta = sa.func.abs(s.c.dec_strip_deg - sa.bindparam("dec_strip_deg"))
        where.append(delta < const(1e-6))
    if by_time:
        where += [
            s.c.valid_from_mjd <= sa.bindparam("valid_at_mjd"),
            s.c.valid_to_mjd >= sa.bindparam("valid_at_mjd"),
        ]
    return _paged(_CAL_COLUMNS, s, where, [s.c.transit_mjd.desc(), s.c.id.desc()])


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
    _check_page(limit, offset)
    queries = _cal_queries(dec_strip_deg is not None, valid_at_mjd is not None)
    params = {
        "dec_strip_deg": None if dec_strip_deg is None else float(dec_strip_deg),
        "valid_at_mjd": None if valid_at_mjd is None else float(valid_at_mjd),
    }
    cursor, total = _page(conn, queries, params, limit, offset)
    return _dicts(cursor), total


def get_cal_solution(conn: Connection, solution_id: int) -> dict[str, object] | None:
    """Return one calibration solution by id (with ``n_applied``), or None."""
    return _one(conn, _CAL, solution_id)


def _rejected_queries(include_resolved: bool) -> tuple[Query, Query]:
    r = t.rejected_files
    where = [] if include_resolved else [r.c.resolved_at.is_(None)]
    return _paged(r.c, r, where, [r.c.updated_at.desc(), r.c.id.desc()])


_REJECTED = {flag: _rejected_queries(flag) for flag in (False, True)}


def list_rejected_page(
    conn: Connection,
    *,
    include_resolved: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> Page:
    """Return raw files set aside by intake (newest change first)."""
    _check_page(limit, offset)
    cursor, total = _page(conn, _REJECTED[bool(include_resolved)], {}, limit, offset)
    return _dicts(cursor), total


@functools.lru_cache(maxsize=4)
def _quality_queries(by_block: bool, by_image: bool) -> tuple[Query, Query]:
    q = t.image_quality
    where = []
    if by_block:
        where.append(q.c.block_id == sa.bindparam("block_id"))
    if by_image:
        where.append(q.c.image_path == sa.bindparam("image_path"))
    columns = [c for c in q.c if c.name != "record_json"]
    return _paged(columns, q, where, [q.c.id.desc()])


def list_image_quality_page(
    conn: Connection,
    *,
    block_id: str | None = None,
    image_path: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page:
    """Return image quality records (newest first), without ``record_json``."""
    _check_page(limit, offset)
    queries = _quality_queries(block_id is not None, image_path is not None)
    params = {"block_id": block_id, "image_path": image_path}
    cursor, total = _page(conn, queries, params, limit, offset)
    return _dicts(cursor), total
