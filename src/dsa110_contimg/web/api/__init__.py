"""The JSON endpoints under ``/api/``, one router per topic.

`web.api.pipeline` (health, figures, queue, jobs, quarantine, intake),
`web.api.actions` (operator actions, token required), `web.api.products`
(blocks, images, mosaics, previews, downloads) and `web.api.science`
(sources, light curves, variability, calibration) and `web.api.browser`
(catalogue overlay, cutouts, Vs/m and the ESE curve for the science pages).
"""

from fastapi import APIRouter

from dsa110_contimg.web.api import actions, browser, pipeline, products, science

__all__ = ["build_router"]


def build_router() -> APIRouter:
    """Return the ``/api`` router with every topic's endpoints."""
    router = APIRouter(prefix="/api")
    for module in (pipeline, actions, products, browser, science):
        router.include_router(module.router)
    return router
