"""The FastAPI application of ``dsa110-contimg serve``.

`create_app` builds one app from a configuration: the JSON API under
``/api/`` (`web.api`), the HTML pages (`web.pages`: dashboard at ``/``, the
science browser) with their script and style at ``/static``, the Prometheus
exposition at ``/metrics`` (`web.prometheus`, its own registry), the OpenAPI schema at
``/api/openapi.json`` (no interactive docs page: Swagger UI would load its
script from a CDN, and the server works with no internet), the error
table of `web.errors`, the body-size limit and the actions' rate limit of
`web.security`. The state database is only ever opened read-only, except for
the single writable connection of an operator action.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from fastapi import FastAPI
from fastapi.responses import Response

from dsa110_contimg.utils.config import PipelineConfig
from dsa110_contimg.web.api import build_router
from dsa110_contimg.web.cache import ResponseCacheMiddleware
from dsa110_contimg.web.context import AppContext
from dsa110_contimg.web.errors import install_error_handlers
from dsa110_contimg.web.prometheus import build_registry, exposition
from dsa110_contimg.web.security import BodyLimitMiddleware, RateLimiter

__all__ = ["create_app", "API_VERSION"]

API_VERSION = "1"
"""Version of the JSON API (the OpenAPI ``info.version``)."""

_PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def create_app(
    config: PipelineConfig,
    *,
    clock: Callable[[], datetime] | None = None,
    environ: Mapping[str, str] | None = None,
    rate_clock: Callable[[], float] | None = None,
    cache_s: float = 0.0,
) -> FastAPI:
    """Return the HTTP API application for a configuration.

    Parameters
    ----------
    config : PipelineConfig
        The loaded configuration; ``paths`` says where the state database
        and the products are, ``web`` the token variable and the limits.
    clock : callable, optional
        Returns the current timezone-aware time (default UTC now; tests pass
        a fixed one so the figures are known).
    environ : mapping, optional
        Where the operator token is read (default ``os.environ``).
    rate_clock : callable, optional
        Monotonic seconds for the rate limit (replaced in tests).
    cache_s : float
        Serve the dashboard's JSON (`web.cache.CACHED_PATHS`) from memory for
        up to this many seconds (``serve`` passes `web.cache.TTL_S`; 0, the
        default, caches nothing).

    Returns
    -------
    FastAPI
        Serve it with uvicorn (``dsa110-contimg serve``) or test it in
        process with ``fastapi.testclient.TestClient``.
    """
    context = AppContext(
        config=config,
        clock=clock or (lambda: datetime.now(UTC)),
        environ=os.environ if environ is None else environ,
    )
    app = FastAPI(
        title="DSA-110 continuum pipeline API",
        version=API_VERSION,
        description=(
            "Read-only views of the pipeline state (queue, figures, products, "
            "sources, light curves, variability, calibration) and the operator "
            "actions (bearer token). Errors are "
            "`{error, detail, status}`; listings are pages "
            "`{items, total, limit, offset, next_offset}`."
        ),
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = context
    limiter_kwargs = {} if rate_clock is None else {"clock": rate_clock}
    app.state.rate_limiter = RateLimiter(
        config.web.action_rate_per_min, **limiter_kwargs
    )
    registry = build_registry(context)
    app.state.registry = registry
    install_error_handlers(app)
    app.include_router(build_router())
    from dsa110_contimg.web.pages import router as pages_router
    from dsa110_contimg.web.pages import static_files

    app.include_router(pages_router)
    app.mount("/static", static_files(), name="static")

    @app.get("/metrics", include_in_schema=True, tags=["prometheus"])
    def metrics() -> Response:
        """The Prometheus exposition (text format), read at each scrape."""
        return Response(exposition(registry), media_type=_PROMETHEUS_TYPE)

    app.add_middleware(BodyLimitMiddleware, max_bytes=config.web.max_body_bytes)
    if cache_s:
        app.add_middleware(ResponseCacheMiddleware, ttl_s=cache_s)
    return app
