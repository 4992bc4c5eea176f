"""The one table from exception class to HTTP status, and its handlers.

Every error an endpoint raises is a `dsa110_contimg.exceptions` class (or one
of the four below, which subclass them), or the database driver's error
(`state.db.DatabaseError`, 503); `ERROR_STATUS` maps it to
a status, most specific class first. The response body is
``{"error": <class name>, "detail": <message>, "status": <code>}``; a request
that fails validation (a bad query parameter) gets 422 with a ``detail``
naming the parameter.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from dsa110_contimg.exceptions import (
    CalibrationError,
    ConfigError,
    ExternalToolError,
    InputDataError,
    MissingDependencyError,
    PipelineError,
    ResourceError,
    StateError,
)
from dsa110_contimg.state.db import DatabaseError

__all__ = [
    "ERROR_STATUS",
    "ForbiddenError",
    "RateLimitedError",
    "NotFoundError",
    "UnavailableError",
    "install_error_handlers",
    "status_of",
]

log = logging.getLogger(__name__)


class NotFoundError(InputDataError):
    """The requested job, block, product, source or solution does not exist."""


class ForbiddenError(InputDataError):
    """The request is not allowed: a path outside the data directories, no token."""


class RateLimitedError(InputDataError):
    """A client sent more operator actions than ``web.action_rate_per_min``."""


class UnavailableError(StateError):
    """What the request needs is not there yet (no state database, no store)."""


ERROR_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (NotFoundError, 404),
    (ForbiddenError, 403),
    (RateLimitedError, 429),
    (UnavailableError, 503),
    (InputDataError, 400),
    (StateError, 409),
    (ResourceError, 503),
    (DatabaseError, 503),
    (MissingDependencyError, 501),
    (ExternalToolError, 502),
    (ConfigError, 500),
    (CalibrationError, 500),
    (PipelineError, 500),
)
"""Exception class -> HTTP status; the first class an error is an instance of wins."""


def status_of(error: BaseException) -> int:
    """Return the HTTP status of an error by `ERROR_STATUS` (500 when unlisted)."""
    for cls, status in ERROR_STATUS:
        if isinstance(error, cls):
            return status
    return 500


def _body(error: str, detail: object, status: int) -> dict[str, object]:
    return {"error": error, "detail": detail, "status": status}


async def _pipeline_error(request: Request, exc: Exception) -> JSONResponse:
    status = status_of(exc)
    if status >= 500:
        log.error(
            "request failed",
            extra={"path": request.url.path, "error": str(exc)},
            exc_info=exc,
        )
    headers = {"Retry-After": "60"} if status == 429 else None
    return JSONResponse(
        _body(type(exc).__name__, str(exc), status),
        status_code=status,
        headers=headers,
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "state database error", extra={"path": request.url.path, "error": str(exc)}
    )
    detail = (
        f"the state database could not be read ({exc}); it may be unmigrated "
        "(run dsa110-contimg db migrate) or damaged"
    )
    return JSONResponse(_body(type(exc).__name__, detail, 503), status_code=503)


def _location(loc: tuple) -> str:
    kinds = {"query": "query parameter", "path": "path parameter", "header": "header"}
    parts = list(loc)
    kind = kinds.get(str(parts[0]), str(parts[0])) if parts else "request"
    names = [str(p) for p in parts[1:] if not isinstance(p, int)]
    items = [str(p + 1) for p in parts[1:] if isinstance(p, int)]
    where = f"{kind} {'.'.join(names)!r}" if names else kind
    return where + (f" (value {', '.join(items)})" if items else "")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [f"{_location(e['loc'])}: {e['msg']}" for e in exc.errors()]
    body = _body("RequestValidationError", "; ".join(problems), 422)
    body["errors"] = [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors()
    ]
    return JSONResponse(body, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers of `ERROR_STATUS` and of request validation."""
    app.add_exception_handler(PipelineError, _pipeline_error)
    app.add_exception_handler(DatabaseError, _database_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
