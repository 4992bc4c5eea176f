"""The HTML pages: the operator dashboard and the science browser.

Server-rendered Jinja2 templates (``web/templates``) with one small script
and style sheet (``web/static``, served at ``/static``) that draw the plots
as SVG and poll the JSON API; nothing is loaded from another host, so the
pages work with no network.

``/`` the dashboard; ``/images`` the image and mosaic listing;
``/images/{id}`` and ``/mosaics/{id}`` an image or mosaic (zoomable preview,
catalogue overlay, header, download); ``/sources/{name}`` a source (light
curve, cutouts, statistics, ESE fit); ``/variability`` the eta-V plot and
the candidates table; ``/coverage`` the observed sky per strip.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["router", "STATIC_DIR", "TEMPLATE_DIR", "static_files"]

TEMPLATE_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")

router = APIRouter(include_in_schema=False)


def _templates():
    from fastapi.templating import Jinja2Templates

    return Jinja2Templates(directory=str(TEMPLATE_DIR))


_TEMPLATES = None


def _render(request: Request, name: str, **context) -> HTMLResponse:
    global _TEMPLATES
    if _TEMPLATES is None:
        _TEMPLATES = _templates()
    poll = request.query_params.get("poll")
    try:
        poll_s = min(max(float(poll), 0.5), 600.0) if poll else 5.0
    except ValueError:
        poll_s = 5.0
    return _TEMPLATES.TemplateResponse(
        request, name, {"poll_s": poll_s, "page": name.removesuffix(".html"), **context}
    )


def static_files() -> StaticFiles:
    """Return the ``/static`` mount (script, style sheet)."""
    return StaticFiles(directory=str(STATIC_DIR))


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request) -> HTMLResponse:
    """The operator dashboard."""
    return _render(request, "dashboard.html", title="Pipeline dashboard")


@router.get("/images", response_class=HTMLResponse)
def image_list(request: Request) -> HTMLResponse:
    """Images and mosaics, newest first."""
    return _render(request, "images.html", title="Images and mosaics")


@router.get("/images/{product_id}", response_class=HTMLResponse)
def image_page(request: Request, product_id: int) -> HTMLResponse:
    """One image: preview with zoom and catalogue overlay, header, download."""
    return _render(
        request,
        "image.html",
        title=f"Image {product_id}",
        product_id=product_id,
        api="images",
    )


@router.get("/mosaics/{product_id}", response_class=HTMLResponse)
def mosaic_page(request: Request, product_id: int) -> HTMLResponse:
    """One mosaic, as an image page."""
    return _render(
        request,
        "image.html",
        title=f"Mosaic {product_id}",
        product_id=product_id,
        api="mosaics",
    )


@router.get("/sources/{source_name}", response_class=HTMLResponse)
def source_page(request: Request, source_name: str) -> HTMLResponse:
    """One source: light curve, statistics and ESE fit, cutouts per epoch."""
    return _render(
        request, "source.html", title=f"Source {source_name}", source_name=source_name
    )


@router.get("/variability", response_class=HTMLResponse)
def variability_page(request: Request) -> HTMLResponse:
    """The eta-V plot and the sortable, filterable candidates table."""
    return _render(request, "variability.html", title="Variability")


@router.get("/coverage", response_class=HTMLResponse)
def coverage_page(request: Request) -> HTMLResponse:
    """The sky observed, per declination strip."""
    return _render(request, "coverage.html", title="Sky coverage")
