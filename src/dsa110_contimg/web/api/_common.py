"""Dependencies the endpoint modules share: the context and page parameters."""

from __future__ import annotations

import base64
import bisect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

from fastapi import Depends, Query, Request

from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.state.browse import job_exists
from dsa110_contimg.web.context import AppContext
from dsa110_contimg.web.errors import NotFoundError
from dsa110_contimg.web.models import page

__all__ = [
    "Context",
    "PageParams",
    "decode_cursor",
    "encode_cursor",
    "Paging",
    "get_context",
    "listing",
    "not_found",
    "require_job",
    "slice_page",
]


def get_context(request: Request) -> AppContext:
    """Return the app's `AppContext`."""
    return request.app.state.context


Context = Annotated[AppContext, Depends(get_context)]


@dataclass(frozen=True, slots=True)
class PageParams:
    """``limit``, ``offset`` and the keyset cursor ``after`` of a listing."""

    limit: int
    offset: int
    after: tuple[Any, ...] | None = None


def encode_cursor(key: Sequence[Any]) -> str:
    """Return the opaque cursor (``next_cursor``) of a row's sort key."""
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, ...]:
    """Return the sort key a cursor of `encode_cursor` holds.

    Raises
    ------
    InputDataError
        ``cursor`` was not made by `encode_cursor` (400, naming the parameter).
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
        if not isinstance(key, list) or not key:
            raise ValueError(key)  # noqa: TRY301 (one message for every bad cursor)
        if not all(isinstance(k, int | float | str) for k in key):
            raise ValueError(key)  # noqa: TRY301
    except ValueError as err:
        msg = (
            f"query parameter 'after' = {cursor[:80]!r} is not a cursor; pass "
            "the next_cursor of the previous page unchanged"
        )
        raise InputDataError(msg) from err
    return tuple(key)


def _paging(
    request: Request,
    limit: Annotated[
        int, Query(ge=1, description="Rows per page (at most web.page_limit_max).")
    ] = 50,
    offset: Annotated[int, Query(ge=0, description="Rows to skip.")] = 0,
    after: Annotated[
        str | None,
        Query(
            max_length=1000,
            description="Keyset paging: the next_cursor of the previous page; "
            "the page starts after its last row (not with offset).",
        ),
    ] = None,
) -> PageParams:
    most = request.app.state.context.config.web.page_limit_max
    if limit > most:
        msg = f"query parameter 'limit' = {limit} exceeds web.page_limit_max = {most}"
        raise InputDataError(msg)
    if after is not None and offset:
        msg = (
            "query parameters 'after' and 'offset' page in two ways; give "
            "'after' (the previous page's next_cursor) or 'offset', not both"
        )
        raise InputDataError(msg)
    return PageParams(limit, offset, None if after is None else decode_cursor(after))


Paging = Annotated[PageParams, Depends(_paging)]


def not_found(what: str, hint: str = "") -> NoReturn:
    """Raise a `NotFoundError` (404) saying what is missing and where to look."""
    msg = f"{what} not found" + (f"; {hint}" if hint else "")
    raise NotFoundError(msg)


def _no_keyset() -> NoReturn:
    msg = (
        "query parameter 'after': this listing pages by offset only "
        "(its next_cursor is always null); use 'offset'"
    )
    raise InputDataError(msg)


def _bad_cursor() -> NoReturn:
    msg = (
        "query parameter 'after' is not a cursor of this listing; pass the "
        "next_cursor of the previous page of the same listing unchanged"
    )
    raise InputDataError(msg)


def _row_id(row: Any) -> int:
    return int(row["id"] if isinstance(row, dict) else row.id)


def listing(
    ctx: AppContext,
    paging: PageParams,
    lister: Callable[..., tuple[list[Any], int]],
    body: Callable[[Any], Any] | None = None,
    *,
    keyset: bool = False,
    **filters: object,
) -> dict[str, Any]:
    """Return one page of a `state.browse`-style lister as a `Page` body.

    ``lister(conn, **filters, limit=, offset=)`` returns ``(rows, total)``;
    ``body`` turns each row into its response item (the row itself if None).
    ``keyset``: the lister lists by id, newest first, and takes
    ``before_id``; the page then has a ``next_cursor`` (the last row's id)
    and honours ``after``.
    """
    extra: dict[str, object] = {}
    if paging.after is not None:
        if not keyset:
            _no_keyset()
        if len(paging.after) != 1 or not isinstance(paging.after[0], int):
            _bad_cursor()
        extra["before_id"] = paging.after[0]
    with ctx.read() as conn:
        rows, total = lister(
            conn, **filters, **extra, limit=paging.limit + 1, offset=paging.offset
        )
    more = len(rows) > paging.limit
    rows = rows[: paging.limit]
    items = rows if body is None else [body(r) for r in rows]
    cursor = encode_cursor([_row_id(rows[-1])]) if keyset and more else None
    return page(
        items,
        total,
        paging.limit,
        paging.offset,
        next_cursor=cursor,
        by_cursor=paging.after is not None,
    )


def slice_page(
    rows: Sequence[Any],
    paging: PageParams,
    key: Callable[[Any], tuple[Any, ...]] | None = None,
) -> dict[str, Any]:
    """Return the page of an already ordered list of items as a `Page` body.

    ``key``: each row's sort key (ascending in ``rows``' order); with it the
    page has a ``next_cursor`` and ``after`` starts after that key.
    """
    start = paging.offset
    if paging.after is not None:
        if key is None:
            _no_keyset()
        keys = [key(r) for r in rows]
        try:
            start = bisect.bisect_right(keys, tuple(paging.after))
        except TypeError:  # a cursor of another listing (other key types)
            _bad_cursor()
    chunk = list(rows[start : start + paging.limit])
    more = start + len(chunk) < len(rows)
    cursor = encode_cursor(key(chunk[-1])) if key is not None and more else None
    return page(
        chunk,
        len(rows),
        paging.limit,
        paging.offset,
        next_cursor=cursor,
        by_cursor=paging.after is not None,
    )


def require_job(conn: object, job_id: int) -> None:
    """Raise a 404 `NotFoundError` unless the queue holds job ``job_id``."""
    if not job_exists(conn, job_id):  # type: ignore[arg-type]
        not_found(f"job {job_id}", "list jobs with GET /api/jobs")
