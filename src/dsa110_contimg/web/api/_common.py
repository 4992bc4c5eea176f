"""Dependencies the endpoint modules share: the context and page parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, NoReturn

from fastapi import Depends, Query, Request

from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.web.context import AppContext
from dsa110_contimg.web.errors import NotFoundError

__all__ = ["Context", "Paging", "PageParams", "get_context", "not_found"]


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
