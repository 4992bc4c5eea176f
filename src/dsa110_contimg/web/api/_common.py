"""Dependencies the endpoint modules share: the context and page parameters."""

from __future__ import annotations

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
    """``limit`` and ``offset`` of a listing."""

    limit: int
    offset: int


def _paging(
    request: Request,
    limit: Annotated[
        int, Query(ge=1, description="Rows per page (at most web.page_limit_max).")
    ] = 50,
    offset: Annotated[int, Query(ge=0, description="Rows to skip.")] = 0,
) -> PageParams:
    most = request.app.state.context.config.web.page_limit_max
    if limit > most:
        msg = f"query parameter 'limit' = {limit} exceeds web.page_limit_max = {most}"
        raise InputDataError(msg)
    return PageParams(limit, offset)


Paging = Annotated[PageParams, Depends(_paging)]


def not_found(what: str, hint: str = "") -> NoReturn:
    """Raise a `NotFoundError` (404) saying what is missing and where to look."""
    msg = f"{what} not found" + (f"; {hint}" if hint else "")
    raise NotFoundError(msg)


def listing(
    ctx: AppContext,
    paging: PageParams,
    lister: Callable[..., tuple[list[Any], int]],
    body: Callable[[Any], Any] | None = None,
    **filters: object,
) -> dict[str, Any]:
    """Return one page of a `state.browse`-style lister as a `Page` body.

    ``lister(conn, **filters, limit=, offset=)`` returns ``(rows, total)``;
    ``body`` turns each row into its response item (the row itself if None).
    """
    with ctx.read() as conn:
        rows, total = lister(conn, **filters, limit=paging.limit, offset=paging.offset)
    items = rows if body is None else [body(r) for r in rows]
    return page(items, total, paging.limit, paging.offset)


def slice_page(rows: Sequence[Any], paging: PageParams) -> dict[str, Any]:
    """Return the page of an already ordered list of items as a `Page` body."""
    chunk = list(rows[paging.offset : paging.offset + paging.limit])
    return page(chunk, len(rows), paging.limit, paging.offset)


def require_job(conn: object, job_id: int) -> None:
    """Raise a 404 `NotFoundError` unless the queue holds job ``job_id``."""
    if not job_exists(conn, job_id):  # type: ignore[arg-type]
        not_found(f"job {job_id}", "list jobs with GET /api/jobs")
